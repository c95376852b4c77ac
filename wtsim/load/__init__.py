"""``wtsim load``: the same scenario and the same oracle, on real Redis and SQL, beside the prediction.

The simulator claims that the race a notebook shows is the race the real
cache has, because both run the same policy code. A load run measures it:
:func:`run_load` drives a scenario in real time with the asyncio driver
(:mod:`wtsim.aio`), injects its faults for real (:mod:`wtsim.proxy`), records
every request (:mod:`wtsim.load.history`), judges the history with the
simulator's oracle (:mod:`wtsim.oracle`) and simulates the same scenario with
the servers' measured times (:mod:`wtsim.load.calibrate`), so prediction and
measurement are printed side by side.

Modules: :mod:`~wtsim.load.run` (the run), :mod:`~wtsim.load.calibrate`,
:mod:`~wtsim.load.history`, :mod:`~wtsim.load.table` (the run's own table),
:mod:`~wtsim.load.servers` (a private ``redis-server``),
:mod:`~wtsim.load.command` (the ``wtsim load`` command).
"""

from .calibrate import Calibration
from .history import Record, read_history, write_history
from .run import LoadRun, LoadTooHigh, run_load

__all__ = ["Calibration", "LoadRun", "LoadTooHigh", "Record", "read_history", "run_load", "write_history"]
