"""The benchmarks run end to end (their ratios are reported by `wtsim bench`, not asserted here)."""

from __future__ import annotations

import pytest

from wtsim.bench import (ASYNC_CASES, CASES, DRAIN_TARGET, WRITE_BEHIND_TARGET, _paired, _summary, bench_cache,
                         format_cache_bench)
from wtsim.sim.bench import bench_sim, format_sim_bench


@pytest.fixture(scope="module")
def cache_rows():
    """One small run of the cache bench on the embedded fakeredis, draining into a temporary SQLite file."""
    return bench_cache(None, reads=20, writes=3, rounds=2, write_rounds=2, drain_rows=100, drain_rounds=1)


def test_cache_bench_measures_every_case(cache_rows):
    """read and write of each pattern and mode, then write-behind: positive timings, their ratio and target."""
    rows = cache_rows
    cases = [(policy, mode) for policy, mode, *_ in CASES + ASYNC_CASES]
    assert [(r["policy"], r["mode"], r["operation"]) for r in rows] == [
        (policy, mode, op) for policy, mode in cases for op in ("read", "write")
    ] + [("write-behind", "queue", "write"), ("write-behind", "batch100/1", "drain")]
    assert ("cache-aside", "naive") in cases and ("write-through", "leases") in cases
    for row in rows:
        assert row["cache_s"] > 0 and row["raw_s"] > 0 and row["ratio"] > 0
    drain = rows[-1]
    assert drain["ratio"] == drain["raw_s"] / drain["cache_s"]  # the drain's is a plain quotient
    table = format_cache_bench(rows, None)
    assert table.count("\n") == len(rows) + 2 and table.startswith("Redis: embedded fakeredis")


def test_a_ratio_is_the_median_of_the_pairs_ratios_and_the_times_their_blocks_medians():
    """Pairs (cache 1 s, raw 2 s), (2, 2), (4, 2): ratios 2, 1, 0.5; the median pair, not the medians' quotient."""
    assert _summary([1.0, 2.0, 4.0], [2.0, 2.0, 2.0]) == {"cache_s": 2.0, "raw_s": 2.0, "ratio": 1.0}
    assert _summary([1.0, 1.0, 3.0], [2.0, 3.0, 3.0])["ratio"] == 2.0  # ratios 2, 3, 1: the quotient would be 3


def test_paired_blocks_take_turns_going_first_and_run_between_after_each_pair():
    calls: list[str] = []
    row = _paired(lambda: calls.append("c"), lambda: calls.append("r"), 2, 4, between=lambda: calls.append("|"))
    assert "".join(calls) == "ccrr|rrcc|ccrr|rrcc|"
    assert row["cache_s"] > 0 and row["raw_s"] > 0 and row["ratio"] > 0


def test_cache_bench_reports_the_asyncio_driver(cache_rows):
    """The asyncio driver's read hit and write (write-through, naive) against the same calls by hand, target 0.8."""
    rows = [r for r in cache_rows if r["mode"] == "aio naive"]
    assert [(r["policy"], r["operation"], r["target"]) for r in rows] == [
        ("write-through", "read", 0.8), ("write-through", "write", 0.8)]
    for row in rows:
        assert 1e-7 < row["cache_s"] < 1 and 1e-7 < row["raw_s"] < 1
    table = format_cache_bench(cache_rows, None)
    assert sum("write-through  aio naive" in line for line in table.splitlines()) == 2


def test_cache_bench_reports_the_write_behind_rows(cache_rows):
    """The queued write against its bare Lua call, and the drain rates at batch 100 and batch 1, in rows/s."""
    write, drain = cache_rows[-2:]
    assert write["target"] == WRITE_BEHIND_TARGET == 0.8 and drain["target"] == DRAIN_TARGET == 5.0
    assert 1e-6 < write["cache_s"] < 1 and 1e-6 < write["raw_s"] < 1
    rates = drain["rows_per_s"]
    assert rates == {"batch_100": 1 / drain["cache_s"], "batch_1": 1 / drain["raw_s"]}
    assert all(1 < rate < 1e7 for rate in rates.values())
    assert drain["database"] == "sqlite (temporary file)"
    last = format_cache_bench(cache_rows, None).splitlines()[-1]
    assert last.startswith("drain: the flusher into sqlite (temporary file): batch 100 ")
    assert f"batch 1 {rates['batch_1']:,.0f} rows/s" in last


def test_cache_bench_drains_into_the_given_database(tmp_path):
    """``database_url`` is where the drain writes (its table dropped afterwards); the printout names it."""
    from sqlalchemy import inspect

    from wtsim import make_engine

    url = f"sqlite:///{tmp_path / 'drain.db'}"
    rows = bench_cache(None, reads=5, writes=1, rounds=1, write_rounds=1, database_url=url, drain_rows=20, drain_rounds=1)
    assert rows[-1]["database"] == url and (tmp_path / "drain.db").exists()
    engine = make_engine(url)
    assert inspect(engine).get_table_names() == []
    engine.dispose()
    assert f"drain: the flusher into {url}:" in format_cache_bench(rows, None)


def test_a_database_password_is_not_printed():
    from wtsim.bench import _shown

    assert _shown("postgresql+psycopg://u:secret@h/db") == "postgresql+psycopg://u:***@h/db"


def test_cache_bench_marks_a_ratio_below_its_target():
    """A row under its target says so; one at or above it says ok."""
    row = {"operation": "read", "policy": "write-through", "mode": "naive", "cache_s": 2e-5, "raw_s": 1e-5}
    table = format_cache_bench([{**row, "ratio": 0.5, "target": 0.8}, {**row, "ratio": 0.9, "target": 0.8}], None)
    first, second = table.splitlines()[2:]
    assert first.endswith("BELOW TARGET") and second.endswith("ok")


def test_sim_bench_compares_the_same_number_of_requests():
    """Each run beside a bare loop of the same length; the ratio is the median of the runs' ratios."""
    figures = bench_sim(requests=9000, block=3000)
    assert figures["pairs"] == 3
    assert 8000 < figures["requests"] < 10000  # Poisson arrivals: about 3,000 a run
    low, high = figures["ratio_quartiles"]
    assert 0 < low <= figures["ratio"] <= high
    assert figures["setup_s"] > 0 and figures["fold_s"] > 0
    table = format_sim_bench(figures)
    assert "ratio (target >= 0.6)" in table and "in 3 runs" in table
    assert table.endswith("ok") == (figures["ratio"] >= 0.6) and table.endswith("BELOW TARGET") != table.endswith("ok")


def test_sim_bench_times_the_event_loop_apart_from_setup_and_fold():
    """simulator() gives the loop, the setup and the fold their own times, on the scenario's requests."""
    from wtsim.sim.bench import simulator

    figures = simulator(2000, seed=1)
    assert set(figures) == {"requests", "setup_s", "run_s", "fold_s"}
    assert 1500 < figures["requests"] < 2500 and min(figures["setup_s"], figures["run_s"], figures["fold_s"]) > 0
