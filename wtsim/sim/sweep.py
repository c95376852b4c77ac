"""Many runs: a scenario varied over a grid of field values, run in parallel.

Rules of this module:

* The grid is the cartesian product of ``vary``'s lists, in the order given
  (the last field varies fastest). Every point is built and checked before
  anything runs, so a bad value fails at once, not after an hour.
* Results come back in the grid's order, whatever order they finish in.
* Runs are independent and each carries its own seed, so a sweep gives the same
  numbers on one core, on many, or on a cluster.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import logging
import sys
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from .metrics import Result
from .run import run
from .scenario import Scenario

log = logging.getLogger("wtsim.sim.sweep")


def grid(scenario: Scenario, vary: Mapping[str, Sequence[Any]]) -> list[Scenario]:
    """The scenarios of the cartesian product of ``vary``, each named after its point."""
    names = list(vary)
    for name in names:
        if isinstance(vary[name], (str, bytes)) or not isinstance(vary[name], Sequence) or not vary[name]:
            raise ValueError(f"vary[{name!r}] must be a non-empty list of values, got {vary[name]!r}")
    points = []
    for values in itertools.product(*(vary[name] for name in names)):
        label = " ".join(f"{name}={value}" for name, value in zip(names, values))
        changes = dict(zip(names, values))
        changes.setdefault("name", f"{scenario.name} [{label}]" if label else scenario.name)
        points.append(scenario.replace(**changes))
    return points


def sweep(
    scenario: Scenario,
    vary: Mapping[str, Sequence[Any]],
    executor: concurrent.futures.Executor | None = None,
    jobs: int | None = None,
    progress: bool = True,
) -> list[Result]:
    """Run ``scenario`` at every point of the grid ``vary``; the results in grid order.

    ``sweep(article, {"zipf_alpha": [0.6, 0.8, 1.0], "ttl_s": [None, 60]})`` runs six scenarios.

    Where the runs happen:

    * ``executor``: any :class:`concurrent.futures.Executor`. Runs are submitted
      with ``executor.submit(run, scenario)``, so an executor that spreads work
      over a cluster works unchanged, e.g. Dask's
      ``distributed.Client(...).get_executor()``. The caller owns it (it is
      not shut down here). :class:`Scenario` and :class:`Result` are plain
      dataclasses, which every executor can ship between processes.
    * otherwise, with ``jobs > 1``: a :class:`~concurrent.futures.ProcessPoolExecutor`
      of ``jobs`` processes, created and shut down here;
    * otherwise in this process, one run after another.

    ``progress`` shows a tqdm bar on stderr when it is a terminal.
    """
    points = grid(scenario, vary)
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be an integer >= 1 or None, got {jobs!r}")
    show = progress and sys.stderr.isatty()
    bar = tqdm(total=len(points), desc=scenario.name, unit="run", disable=not show, file=sys.stderr)
    try:
        if executor is not None:
            return _on(executor, points, bar)
        if jobs is not None and jobs > 1 and len(points) > 1:
            with concurrent.futures.ProcessPoolExecutor(max_workers=min(jobs, len(points))) as pool:
                return _on(pool, points, bar)
        results = []
        for point in points:
            results.append(run(point))
            bar.update()
        return results
    finally:
        bar.close()


def _on(executor: concurrent.futures.Executor, points: list[Scenario], bar: tqdm) -> list[Result]:
    futures = {executor.submit(run, point): i for i, point in enumerate(points)}
    results: list[Result | None] = [None] * len(points)
    try:
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            bar.update()
    except BaseException:
        for future in futures:
            future.cancel()
        raise
    log.debug("sweep of %d points done", len(points))
    return results  # type: ignore[return-value]
