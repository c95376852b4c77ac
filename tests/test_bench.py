"""The benchmarks run end to end (their ratios are reported by `wtsim bench`, not asserted here)."""

from __future__ import annotations

from wtsim.bench import CASES, bench_cache, format_cache_bench
from wtsim.sim.bench import bench_sim, format_sim_bench


def test_cache_bench_measures_every_case():
    """read and write of each pattern and mode: rows of positive timings, their ratio and target."""
    rows = bench_cache(None, reads=20, writes=3, rounds=2)  # None: the embedded fakeredis
    cases = [(policy, mode) for policy, mode, *_ in CASES]
    assert [(r["policy"], r["mode"], r["operation"]) for r in rows] == [
        (policy, mode, op) for policy, mode in cases for op in ("read", "write")
    ]
    assert ("cache-aside", "naive") in cases and ("write-through", "leases") in cases
    for row in rows:
        assert row["cache_s"] > 0 and row["raw_s"] > 0
        assert row["ratio"] == row["raw_s"] / row["cache_s"]
    table = format_cache_bench(rows, None)
    assert table.count("\n") == len(rows) + 1 and table.startswith("Redis: embedded fakeredis")


def test_cache_bench_marks_a_ratio_below_its_target():
    """A row under its target says so; one at or above it says ok."""
    row = {"operation": "read", "policy": "write-through", "mode": "naive", "cache_s": 2e-5, "raw_s": 1e-5}
    table = format_cache_bench([{**row, "ratio": 0.5, "target": 0.8}, {**row, "ratio": 0.9, "target": 0.8}], None)
    first, second = table.splitlines()[2:]
    assert first.endswith("BELOW TARGET") and second.endswith("ok")


def test_sim_bench_compares_the_same_number_of_requests():
    """The simulator and the bare loop run the same requests; the ratio is their speeds' quotient."""
    figures = bench_sim(requests=3000, rounds=1)
    assert 2500 < figures["requests"] < 3500
    assert figures["ratio"] == figures["sim_requests_per_s"] / figures["bare_requests_per_s"]
    table = format_sim_bench(figures)
    assert "ratio (target >= 0.6)" in table
    assert table.endswith("ok") == (figures["ratio"] >= 0.6) and table.endswith("BELOW TARGET") != table.endswith("ok")
