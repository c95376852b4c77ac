"""Sweeps on Dask: an executor on a local cluster or on a running scheduler (``pip install "wtsim[dask]"``).

:func:`dask_executor` is a context manager giving a
:class:`concurrent.futures.Executor` (``distributed.Client.get_executor()``) for
:func:`~wtsim.sim.sweep.sweep`'s ``executor``:

* ``"local"``: a :class:`distributed.LocalCluster` of ``workers`` processes, one
  thread each (a run is pure Python: threads would only share the GIL), started
  here and closed on exit;
* ``"tcp://HOST:8786"`` (any address a scheduler listens on): a client of that
  cluster, closed on exit; the cluster stays up.

Dask is imported here only, when called: ``import wtsim`` never imports it.
Each run ships its :class:`~wtsim.sim.scenario.Scenario` to a worker and gets
its :class:`~wtsim.sim.metrics.Result` back (Dask serialises both); the workers
need the same wtsim installed. A run carries its seed, so the results equal a
serial sweep's.
"""

from __future__ import annotations

import concurrent.futures
import logging
from contextlib import contextmanager
from typing import Iterator

INSTALL = 'Dask is not installed: pip install "wtsim[dask]"'
CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a scheduler before giving up."""
LOCAL = "local"


@contextmanager
def dask_executor(address: str, workers: int = 2,
                  timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[concurrent.futures.Executor]:
    """An executor on Dask: ``"local"`` (a LocalCluster of ``workers`` processes) or a scheduler's address.

    ValueError, in one line, when Dask is missing, the address is empty or no scheduler answers
    within ``timeout_s``.
    """
    if not isinstance(address, str) or not address.strip():
        raise ValueError(f"--dask takes 'local' or a scheduler address such as tcp://HOST:8786, got {address!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ValueError(INSTALL) from None
    address = address.strip()
    cluster = None
    try:
        if address == LOCAL:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster, timeout=f"{timeout_s}s")
        else:
            client = Client(address, timeout=f"{timeout_s}s")
    except (OSError, TimeoutError, RuntimeError) as exc:  # OSError("Timed out trying to connect ..."), or
        if cluster is not None:                              # RuntimeError: a local worker did not start
            cluster.close()
        where = "start the local cluster" if address == LOCAL else f"connect to a Dask scheduler at {address}"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"--dask: could not {where} within {timeout_s:g} s ({reason})") from None
    except ValueError as exc:  # an address distributed cannot parse
        raise ValueError(f"--dask {address}: {str(exc).splitlines()[0]}") from None
    try:
        yield client.get_executor()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
