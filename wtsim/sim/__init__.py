"""wtsim.sim: the library's caching policies in simulated time, under load and faults.

The simulator never re-implements a policy. It runs the generators of
:mod:`wtsim.policies` (the code :class:`wtsim.WriteThroughCache` runs) through
a SimPy driver that charges round trips and service times, queues at the
database's connection pool, injects faults, and applies every op to an
in-memory world that doubles as the consistency oracle::

    from wtsim.sim import Scenario, Fault, run, sweep

    res = run(Scenario(read_rate=5000, write_rate=50, zipf_alpha=1.0, prefill=True))
    res.hit_ratio, res.db_queries_per_s, res.stale_reads

    outage = Scenario(versioned=False, outage_repair=False,
                      faults=(Fault("cache-down", start_s=3, end_s=5),))

Modules: :mod:`~wtsim.sim.scenario` (what to simulate), :mod:`~wtsim.sim.spec`
(how a scenario field is declared), :mod:`~wtsim.sim.workload` (arrivals and
keys), :mod:`~wtsim.sim.faults`, :mod:`~wtsim.sim.world` (the table, the
cache, the oracle), :mod:`~wtsim.sim.driver` (ops in SimPy time),
:mod:`~wtsim.sim.metrics` (the Result), :mod:`~wtsim.sim.run`,
:mod:`~wtsim.sim.sweep` (many runs, in parallel), :mod:`~wtsim.sim.trace` (replaying a
recorded workload), :mod:`~wtsim.sim.cluster` (sweeps on Dask), :mod:`~wtsim.sim.bench`.
"""

from .faults import FAULT_KINDS, Fault
from .metrics import Result
from .run import run
from ..policies import POLICIES
from .scenario import Scenario, load_scenario, parse_override, scenario_names
from .sweep import sweep
from .workload import Burst, Request

__all__ = [
    "FAULT_KINDS",
    "POLICIES",
    "Burst",
    "Fault",
    "Request",
    "Result",
    "Scenario",
    "load_scenario",
    "parse_override",
    "run",
    "scenario_names",
    "sweep",
]
