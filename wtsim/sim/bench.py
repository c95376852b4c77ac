"""``wtsim bench sim``: how close the simulator runs to a bare SimPy loop.

Two event loops on the same number of requests, in one process, timed alike:

* **the simulator** on the article's example (10,000 reads/s, 100 writes/s,
  10,000 keys, Zipf 1.0, warm cache): each request runs the library's
  write-through generator through the simulated driver and the oracle;
* **the bare loop**: the least a simulated request can be, one Poisson
  arrival, one SimPy process, one cache round trip as a single timeout.

The ratio is simulator requests/s over bare requests/s (1.0: the policy, the
world and the metrics are free). Times are the CPU time of this process
(``time.process_time``) spent in each side's event loop. Building the
simulator's world (its prefilled cache) and folding its records into a
:class:`~wtsim.sim.metrics.Result` happen once a run, not once a request, as
the bare loop's arrival gaps are drawn before its clock starts: both are timed
apart and shown, not counted in the ratio.

How it is timed: ``pairs`` pairs of runs of ``block`` requests each, the side
that goes first in turns, and the ratio is the median of the pairs' ratios.
On a shared machine the speed of the same code drifts by a third from one
second to the next; short pairs see the same drift on both sides, and the
median ignores the pairs a burst of other work fell on.

Where the time goes (cProfile): the bare loop is four SimPy events per
request (arrival, process start, round trip, process end). The simulator's
cache hit is two (arrival, round trip): arrivals are a chain of timeout
callbacks and a request resumes its policy from the round trip's callback, with
no process of its own. On top of that, a hit runs the library's
``write_through.read`` generator (its key, the breaker, the decoded entry),
then the oracle and the metrics.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import simpy

from .run import Simulation
from .scenario import Scenario

ARTICLE = Scenario(
    name="bench: the article's example",
    read_rate=10_000.0,
    write_rate=100.0,
    n_keys=10_000,
    zipf_alpha=1.0,
    prefill=True,
    cache_rtt_s=0.0005,
    db_read_s=0.002,
    db_write_s=0.005,
    db_connections=32,
    warmup_s=0.0,
)

TARGET = 0.6
"""The ratio the simulator should reach (0.7 as the stretch)."""


def bare_loop(requests: int, rate: float, rtt_s: float, seed: int = 0) -> float:
    """Simulate ``requests`` Poisson arrivals, each one process doing one timeout; return CPU seconds."""
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, requests).tolist()
    env = simpy.Environment()

    def request():
        yield env.timeout(rtt_s)

    def arrivals():
        for gap in gaps:
            yield env.timeout(gap)
            env.process(request())

    start = time.process_time()
    env.process(arrivals())
    env.run()
    return time.process_time() - start


def simulator(requests: int, seed: int = 0) -> dict:
    """Simulate the article's example for about ``requests`` requests.

    Answers the CPU seconds of its event loop (``run_s``), of building its world
    (``setup_s``) and of folding its result (``fold_s``), and how many requests it simulated.
    """
    scenario = ARTICLE.replace(duration_s=requests / (ARTICLE.read_rate + ARTICLE.write_rate), seed=seed)
    start = time.process_time()
    simulation = Simulation(scenario)
    built = time.process_time()
    simulation.simulate()
    ran = time.process_time()
    result = simulation.result()
    return {"requests": result.reads + result.writes, "setup_s": built - start, "run_s": ran - built,
            "fold_s": time.process_time() - ran}


def bench_sim(requests: int = 400_000, block: int = 25_000, seed: int = 0) -> dict:
    """Requests per second of the simulator and of the bare loop, and their ratio (see :data:`TARGET`).

    ``requests`` in all, for each side, in runs of ``block`` (the module's docstring says why).
    """
    rate = ARTICLE.read_rate + ARTICLE.write_rate
    ratios, sim_rates, bare_rates, setup_s, fold_s = [], [], [], [], []
    simulated = 0
    for i in range(max(1, requests // block)):
        figures: dict = {}

        def simulate() -> None:
            figures.update(simulator(block, seed + i))

        def bare() -> None:
            figures["bare_s"] = bare_loop(block, rate, ARTICLE.cache_rtt_s, seed + i)

        for side in ((bare, simulate) if i % 2 else (simulate, bare)):  # who goes first, in turns
            side()
        sim_rate, bare_rate = figures["requests"] / figures["run_s"], block / figures["bare_s"]
        ratios.append(sim_rate / bare_rate)
        sim_rates.append(sim_rate)
        bare_rates.append(bare_rate)
        setup_s.append(figures["setup_s"])
        fold_s.append(figures["fold_s"])
        simulated += figures["requests"]
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        "requests": simulated,
        "pairs": len(ratios),
        "sim_requests_per_s": statistics.median(sim_rates),
        "bare_requests_per_s": statistics.median(bare_rates),
        "ratio": statistics.median(ratios),
        "ratio_quartiles": (quartiles[0], quartiles[2]),
        "setup_s": statistics.median(setup_s),
        "fold_s": statistics.median(fold_s),
    }


def format_sim_bench(figures: dict, target: float = TARGET) -> str:
    """The figures of :func:`bench_sim` as a small aligned table, the ratio checked against ``target``."""
    verdict = "ok" if figures["ratio"] >= target else "BELOW TARGET"
    low, high = figures["ratio_quartiles"]
    rows = [
        ("requests simulated", f"{figures['requests']:,} in {figures['pairs']} runs, each beside a bare one"),
        ("simulator", f"{figures['sim_requests_per_s']:,.0f} requests/s"),
        ("bare SimPy loop", f"{figures['bare_requests_per_s']:,.0f} requests/s"),
        ("apart, a run's", f"setup {figures['setup_s'] * 1e3:,.0f} ms (the prefill),"
                           f" fold {figures['fold_s'] * 1e3:,.0f} ms"),
        ("the runs' ratios", f"half of them between {low:.2f} and {high:.2f}"),
        (f"ratio (target >= {target:g})", f"{figures['ratio']:.2f}  {verdict}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)
