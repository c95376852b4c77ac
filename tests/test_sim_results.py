"""Results: reproducible from the seed, shaped as documented, JSON-safe; the workload; sweeps."""

from __future__ import annotations

import concurrent.futures
import json
import math

import numpy as np
import pytest

from wtsim.analytic import zipf_popularity
from wtsim.sim import Burst, Fault, Request, Result, Scenario, run, sweep
from wtsim.sim.workload import Workload

SMALL = Scenario(
    name="small", duration_s=4.0, warmup_s=1.0, seed=3, read_rate=1500, write_rate=60, n_keys=200,
    app_servers=2, faults=(Fault("partition", 2, 3, servers=1),),
)


def test_same_seed_gives_identical_results():
    """Two runs of one scenario give the same to_dict(), to the last digit."""
    assert run(SMALL).to_dict() == run(SMALL).to_dict()


def test_different_seed_gives_different_results():
    """Changing only the seed changes the run."""
    assert run(SMALL).to_dict()["timeline"] != run(SMALL.replace(seed=4)).to_dict()["timeline"]


def test_result_shape():
    """Counts add up, latencies have mean/p50/p95/p99, and the timeline has one row per second."""
    result = run(SMALL.replace(duration_s=3.5))
    assert result.hits + result.misses == result.reads
    assert result.hit_ratio == pytest.approx(result.hits / result.reads)
    assert result.db_queries_per_s == pytest.approx((result.db_reads + result.db_writes) / 2.5)
    for latency in (result.read_latency_s, result.write_latency_s):
        assert set(latency) == {"mean", "p50", "p95", "p99"}
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
    assert len(result.timeline) == 4  # ceil(3.5)
    assert [row["t"] for row in result.timeline] == [0, 1, 2, 3]
    assert set(result.timeline[0]) == {
        "t", "reads", "writes", "hits", "misses", "db_reads", "db_writes", "stale_reads", "cache_errors", "errors",
        "timeouts", "retries", "queue",
    }


def test_totals_leave_out_the_warm_up_and_the_timeline_keeps_it():
    """With an integer warm-up, the totals are the timeline's rows from warmup_s on."""
    result = run(SMALL)
    later = result.timeline[1:]
    for field in ("reads", "writes", "hits", "misses", "db_reads", "db_writes", "stale_reads", "cache_errors"):
        assert getattr(result, field) == sum(row[field] for row in later), field
    assert sum(row["reads"] for row in result.timeline) > result.reads


def test_a_fractional_warm_up_is_honoured_exactly():
    """Requests before warmup_s=0.5 show in the timeline's first second but not in the totals."""
    scenario = Scenario(
        duration_s=2, warmup_s=0.5, read_rate=0, write_rate=0, n_keys=1,
        requests=(Request(0.2, "read", 1), Request(0.7, "read", 1), Request(1.2, "write", 1)),
    )
    result = run(scenario)
    assert (result.reads, result.writes) == (1, 1)
    assert result.timeline[0]["reads"] == 2 and result.timeline[1]["writes"] == 1


def test_to_dict_is_json_without_nan():
    """to_dict() survives json.dumps(allow_nan=False), even when figures are undefined (no reads)."""
    for scenario in (SMALL, SMALL.replace(read_rate=0)):
        data = run(scenario).to_dict()
        text = json.dumps(data, allow_nan=False)
        assert json.loads(text)["scenario"]["faults"] == [{"kind": "partition", "start_s": 2.0, "end_s": 3.0, "servers": 1}]
    empty = run(SMALL.replace(read_rate=0))
    assert empty.hit_ratio is None and empty.read_latency_s["mean"] is None


# -- the workload ---------------------------------------------------------------------------------


def _workload(**changes) -> Workload:
    params = dict(
        duration_s=20.0, read_rate=2000.0, write_rate=100.0, n_keys=50, zipf_alpha=1.0, app_servers=3,
        bursts=(), arrivals_rng=np.random.default_rng(1), keys_rng=np.random.default_rng(2),
        servers_rng=np.random.default_rng(3),
    )
    params.update(changes)
    return Workload(**params)


def test_arrivals_are_poisson_at_the_given_rates():
    """Reads and writes arrive at their rates, sorted in time, with exponential gaps."""
    times, writes = [], []
    for chunk_times, is_write, _, _ in _workload().chunks():
        times += chunk_times
        writes += is_write
    assert times == sorted(times)
    assert len(times) == pytest.approx(20 * 2100, rel=0.02)
    assert sum(writes) == pytest.approx(20 * 100, rel=0.06)
    gaps = np.diff(times)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.03)  # exponential: cv = 1


def test_keys_follow_the_zipf_popularity():
    """Key k is drawn with probability proportional to k**-alpha; servers uniformly."""
    keys, servers = [], []
    for _, _, chunk_keys, chunk_servers in _workload().chunks():
        keys += chunk_keys
        servers += chunk_servers
    counts = np.bincount(keys, minlength=51)[1:] / len(keys)
    assert np.abs(counts - zipf_popularity(50, 1.0)).max() < 0.01
    assert min(keys) >= 1 and max(keys) <= 50
    assert np.bincount(servers) / len(servers) == pytest.approx([1 / 3] * 3, abs=0.01)


def test_bursts_multiply_the_rates_inside_their_window():
    """A write burst of factor 10 from 5 s to 10 s gives ten times the writes per second there."""
    result = run(Scenario(
        duration_s=15, warmup_s=1, read_rate=100, write_rate=40, n_keys=100,
        bursts=(Burst(5, 10, write_factor=10),),
    ))
    inside = np.mean([row["writes"] for row in result.timeline[5:10]])
    outside = np.mean([row["writes"] for row in result.timeline[:5] + result.timeline[10:]])
    assert inside / outside == pytest.approx(10, rel=0.15)
    assert np.mean([row["reads"] for row in result.timeline[5:10]]) == pytest.approx(100, rel=0.15)


# -- sweeps ---------------------------------------------------------------------------------------

TINY = SMALL.replace(duration_s=2.0, faults=())


def test_sweep_runs_the_grid_in_order():
    """sweep() runs the cartesian product, last field fastest, and returns results in that order."""
    results = sweep(TINY, {"versioned": [False, True], "ttl_s": [None, 0.5]}, progress=False)
    assert [(r.scenario.versioned, r.scenario.ttl_s) for r in results] == [
        (False, None), (False, 0.5), (True, None), (True, 0.5)
    ]
    assert results[3].scenario.name == "small [versioned=True ttl_s=0.5]"
    assert results[0].to_dict() == run(TINY.replace(name="small [versioned=False ttl_s=None]")).to_dict()


def test_sweep_accepts_any_executor():
    """A caller's executor (here a thread pool) gets the runs, and results still come back in grid order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        results = sweep(TINY, {"read_rate": [100, 400, 200]}, executor=pool, progress=False)
    assert [r.scenario.read_rate for r in results] == [100, 400, 200]
    assert all(isinstance(r, Result) for r in results)


def test_sweep_in_processes_matches_in_process():
    """jobs=2 runs in a process pool and gives the same numbers as running here."""
    vary = {"seed": [1, 2]}
    assert [r.to_dict() for r in sweep(TINY, vary, jobs=2, progress=False)] == [
        r.to_dict() for r in sweep(TINY, vary, progress=False)
    ]


def test_sweep_checks_every_point_before_running():
    """A bad value anywhere in the grid raises before any run starts."""
    with pytest.raises(ValueError, match="read_rate must be"):
        sweep(TINY, {"read_rate": [100, -1]}, progress=False)
    with pytest.raises(ValueError, match=r"vary\['ttl_s'\] must be a non-empty list"):
        sweep(TINY, {"ttl_s": []}, progress=False)
    with pytest.raises(ValueError, match="unknown field 'ttl'"):
        sweep(TINY, {"ttl": [1]}, progress=False)


def test_results_are_finite_numbers():
    """No NaN or infinity leaks into a result's figures."""
    data = run(SMALL).to_dict()
    numbers = [v for k, v in data.items() if isinstance(v, float)]
    numbers += [v for d in (data["read_latency_s"], data["write_latency_s"]) for v in d.values()]
    assert numbers and all(math.isfinite(v) for v in numbers)


def test_bench_reports_both_rates_and_their_ratio():
    """bench_sim() measures the simulator and the bare loop on the same requests and gives the ratio."""
    from wtsim.sim.bench import bench_sim, format_sim_bench

    figures = bench_sim(requests=3000, block=3000)
    assert figures["requests"] > 2500 and figures["pairs"] == 1
    assert figures["sim_requests_per_s"] > 0 and figures["bare_requests_per_s"] > 0
    # one run: its ratio is the quotient of its two rates
    assert figures["ratio"] == pytest.approx(figures["sim_requests_per_s"] / figures["bare_requests_per_s"])
    assert "ratio (target >= 0.6)" in format_sim_bench(figures)


def test_arrivals_come_in_slices_that_add_up_to_each_second():
    """A second's arrivals are drawn together and handed out SLICE at a time, in order."""
    from wtsim.sim.workload import SLICE

    def workload():
        return Workload(duration_s=2, read_rate=3000.0, write_rate=300.0, n_keys=50, zipf_alpha=1.0,
                        app_servers=3, bursts=(), arrivals_rng=np.random.default_rng(1),
                        keys_rng=np.random.default_rng(2), servers_rng=np.random.default_rng(3))

    chunks = list(workload().chunks())
    assert all(len(times) <= SLICE for times, *_ in chunks) and len(chunks) > 2
    times = [t for chunk in chunks for t in chunk[0]]
    assert times == sorted(times) and 6000 < len(times) < 7200
    assert all(len({len(column) for column in chunk}) == 1 for chunk in chunks)
    assert {s for chunk in chunks for s in chunk[3]} == {0, 1, 2}
    assert times == [t for chunk in workload().chunks() for t in chunk[0]]  # seeded: the same again


def test_the_simulators_key_memo_gives_each_key_one_op_and_falls_back_outside_it():
    """memoized_gets: one CacheGet per key of the run's namespace and prefix; anything else made afresh."""
    from wtsim.policies.state import entry_get
    from wtsim.sim.run import MEMO_KEYS, NAMESPACE, memoized_gets

    get_of = memoized_gets("wtc", 10)
    op = get_of("wtc", NAMESPACE, 7)
    assert op == entry_get("wtc", NAMESPACE, 7) and get_of("wtc", NAMESPACE, 7) is op
    assert get_of("wtc", "other", 7).key == entry_get("wtc", "other", 7).key != op.key
    assert get_of("app", NAMESPACE, 7).key == entry_get("app", NAMESPACE, 7).key != op.key
    for outside in (0, 11, -1):  # not kept, never a wrong index
        assert get_of("wtc", NAMESPACE, outside) == entry_get("wtc", NAMESPACE, outside)
        assert get_of("wtc", NAMESPACE, outside) is not get_of("wtc", NAMESPACE, outside)
    big = memoized_gets("wtc", 10 * MEMO_KEYS)
    assert big("wtc", NAMESPACE, MEMO_KEYS) is big("wtc", NAMESPACE, MEMO_KEYS)
    assert big("wtc", NAMESPACE, MEMO_KEYS + 1) is not big("wtc", NAMESPACE, MEMO_KEYS + 1)
