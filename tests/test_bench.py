"""The benchmarks run end to end (their ratios are reported by `wtsim bench`, not asserted here)."""

from __future__ import annotations

from wtsim.bench import bench_cache, format_cache_bench
from wtsim.sim.bench import bench_sim, format_sim_bench


def test_cache_bench_measures_four_ratios():
    """read and write, naive and versioned: four rows of positive timings and their ratio."""
    rows = bench_cache(None, reads=20, writes=3, rounds=2)  # None: the embedded fakeredis
    assert [(r["operation"], r["mode"]) for r in rows] == [
        ("read", "naive"), ("write", "naive"), ("read", "versioned"), ("write", "versioned"),
    ]
    for row in rows:
        assert row["cache_s"] > 0 and row["raw_s"] > 0
        assert row["ratio"] == row["raw_s"] / row["cache_s"]
    table = format_cache_bench(rows)
    assert table.count("\n") == 4 and "target >= 0.8" in table


def test_sim_bench_compares_the_same_number_of_requests():
    """The simulator and the bare loop run the same requests; the ratio is their speeds' quotient."""
    figures = bench_sim(requests=3000, rounds=1)
    assert 2500 < figures["requests"] < 3500
    assert figures["ratio"] == figures["sim_requests_per_s"] / figures["bare_requests_per_s"]
    assert "ratio (target >= 0.5)" in format_sim_bench(figures)
