"""``wtsim bench sim``: how close the simulator runs to a bare SimPy loop.

Two runs on the same number of requests, in one process, timed alike:

* **the simulator** on the article's example (10,000 reads/s, 100 writes/s,
  10,000 keys, Zipf 1.0, warm cache): each request runs the library's
  write-through generator through the simulated driver and the oracle;
* **the bare loop**: the least a simulated request can be, one Poisson
  arrival, one SimPy process, one cache round trip as a single timeout.

The ratio is simulator requests/s over bare requests/s (1.0: the policy, the
world and the metrics are free). Times are the CPU time of this process
(``time.process_time``), and each side is run ``rounds`` times, alternating,
keeping its best: other work on the machine then skews neither side.

Where the time goes (cProfile): the bare loop is four SimPy events per
request (arrival, process start, round trip, process end). The simulator's
cache hit is two (arrival, round trip): arrivals are a chain of timeout
callbacks and a request resumes its policy from the round trip's callback, with
no process of its own. On top of that, a hit runs the library's
``write_through.read`` generator (its key, the breaker, the decoded entry),
then the oracle and the metrics.
"""

from __future__ import annotations

import time

import numpy as np
import simpy

from .run import run
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


def simulator(requests: int, seed: int = 0) -> tuple[float, int]:
    """Simulate the article's example for about ``requests`` requests; return (CPU seconds, requests)."""
    duration = requests / (ARTICLE.read_rate + ARTICLE.write_rate)
    scenario = ARTICLE.replace(duration_s=duration, seed=seed)
    start = time.process_time()
    result = run(scenario)
    return time.process_time() - start, result.reads + result.writes


def bench_sim(requests: int = 200_000, seed: int = 0, rounds: int = 3) -> dict:
    """Requests per second of the simulator and of the bare loop, and their ratio (see :data:`TARGET`)."""
    bare_s = sim_s = float("inf")
    simulated = requests
    for _ in range(rounds):
        wall, simulated = simulator(requests, seed)
        sim_s = min(sim_s, wall)
        bare_s = min(bare_s, bare_loop(simulated, ARTICLE.read_rate + ARTICLE.write_rate, ARTICLE.cache_rtt_s, seed))
    sim_rate, bare_rate = simulated / sim_s, simulated / bare_s
    return {
        "requests": simulated,
        "sim_requests_per_s": sim_rate,
        "bare_requests_per_s": bare_rate,
        "ratio": sim_rate / bare_rate,
    }


TARGET = 0.6
"""The ratio the simulator should reach (0.7 as the stretch)."""


def format_sim_bench(figures: dict, target: float = TARGET) -> str:
    """The figures of :func:`bench_sim` as a small aligned table, the ratio checked against ``target``."""
    verdict = "ok" if figures["ratio"] >= target else "BELOW TARGET"
    rows = [
        ("requests simulated", f"{figures['requests']:,}"),
        ("simulator", f"{figures['sim_requests_per_s']:,.0f} requests/s"),
        ("bare SimPy loop", f"{figures['bare_requests_per_s']:,.0f} requests/s"),
        (f"ratio (target >= {target:g})", f"{figures['ratio']:.2f}  {verdict}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)
