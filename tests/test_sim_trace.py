"""Replaying a recorded trace (wtsim.sim.trace): exact LRU hit ratios, the file's order, clear errors."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from wtsim.cli import main
from wtsim.sim import Request, Scenario, run
from wtsim.sim.trace import read_trace, scan, write_trace

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "traces" / "sample.csv"
SAMPLE_SCENARIO = Scenario(name="sample", duration_s=4.0, read_rate=1000, write_rate=20, n_keys=1000,
                           zipf_alpha=0.9, seed=7)
"""What data/traces/sample.csv was written from: ``write_trace(SAMPLE, SAMPLE_SCENARIO)``."""

# Round trips and service times far below the gaps between requests: each request is over before the next.
INSTANT = Scenario(name="instant", policy="write-through", warmup_s=0.0, cache_rtt_s=1e-9, db_read_s=1e-9,
                   db_write_s=1e-9, db_write_row_s=0.0, service="deterministic")


def exact_lru(requests, capacity):
    """(hits, misses) of the reads of ``requests`` ((key, op) pairs) on an LRU cache of ``capacity`` keys.

    A read hit makes the key the most recently used; a read miss inserts it; a write sets it (inserts or
    promotes). An insert beyond the capacity evicts the least recently used key. ``None``: unlimited.
    """
    cache: OrderedDict = OrderedDict()
    hits = misses = 0
    for key, op in requests:
        if op == "read":
            if key in cache:
                hits += 1
                cache.move_to_end(key)
                continue
            misses += 1
        cache[key] = True
        cache.move_to_end(key)
        if capacity is not None and len(cache) > capacity:
            cache.popitem(last=False)
    return hits, misses


def random_trace(path: Path, seed: int, n: int = 3000, n_keys: int = 300, write_share: float = 0.1) -> list:
    """A trace of ``n`` requests 1 ms apart or more, on Zipf-ish string keys; its (key, op) pairs."""
    rng = np.random.default_rng(seed)
    times = np.cumsum(1e-3 + rng.exponential(2e-3, n)).tolist()
    keys = [f"user:{k}" for k in np.minimum(rng.zipf(1.3, n), n_keys)]
    ops = np.where(rng.random(n) < write_share, "write", "read")
    path.write_text("time_s,key,op\n" + "".join(f"{t!r},{k},{o}\n" for t, k, o in zip(times, keys, ops)))
    return list(zip(keys, ops.tolist()))


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("capacity", [1, 8, 50, None])
def test_the_hit_ratio_is_an_exact_lru(tmp_path, seed, capacity):
    """Near-zero round trips, requests spaced in time: the simulator's hits and misses are an exact LRU's."""
    path = tmp_path / "trace.csv"
    requests = random_trace(path, seed)
    result = run(INSTANT.replace(trace=str(path), duration_s=60.0, cache_capacity=capacity))
    hits, misses = exact_lru(requests, capacity)
    assert (result.hits, result.misses) == (hits, misses)
    assert result.reads == hits + misses and result.writes == len(requests) - hits - misses
    assert 0 < hits and (capacity is None or 0 < misses)


@pytest.mark.parametrize("capacity", [10, 100])
def test_a_written_poisson_trace_is_an_exact_lru_too(tmp_path, capacity):
    """The same on a trace from write_trace (Poisson gaps of milliseconds), read back with read_trace."""
    path = tmp_path / "poisson.csv"
    write_trace(path, INSTANT.replace(read_rate=300, write_rate=30, n_keys=400, duration_s=8.0, seed=5))
    requests = [(key, op) for _, key, op in read_trace(path)]
    result = run(INSTANT.replace(trace=str(path), duration_s=8.0, cache_capacity=capacity))
    assert (result.hits, result.misses) == exact_lru(requests, capacity)


def test_a_replay_of_a_scenarios_own_trace_is_its_run(tmp_path):
    """write_trace writes the arrivals the scenario's own run sees: the replay gives the same result."""
    scenario = Scenario(duration_s=3.0, warmup_s=0.5, read_rate=2000, write_rate=80, n_keys=500,
                        cache_capacity=100, ttl_s=0.5, seed=3)
    path = tmp_path / "own.csv"
    lines = write_trace(path, scenario)
    poisson, replay = run(scenario).to_dict(), run(scenario.replace(trace=str(path))).to_dict()
    assert lines == sum(1 for _ in read_trace(path)) > 6000
    assert replay.pop("scenario").pop("trace") == str(path)
    poisson.pop("scenario")
    assert replay == poisson


def test_keys_are_numbered_in_order_of_first_appearance_and_n_keys_is_unused(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("op,key,time_s,comment\nread,b,0,x\nwrite,a,0,ties keep the file's order\n"
                    "read,b,0.5,\nread,c,1.5,\nread,d,2.5,not replayed\n")
    info = scan(path, duration_s=2.0)
    assert info.keys == {"b": 1, "a": 2, "c": 3}
    assert (info.reads, info.writes, info.skipped, info.requests, info.n_keys) == (3, 1, 1, 4, 3)
    result = run(INSTANT.replace(trace=str(path), duration_s=2.0, n_keys=1))   # n_keys=1: ignored
    assert (result.reads, result.writes, result.hits, result.misses) == (3, 1, 1, 2)


def test_the_warmup_and_the_duration_cut_the_trace(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("time_s,key,op\n" + "".join(f"{i / 10},k{i % 7},read\n" for i in range(100)))
    result = run(INSTANT.replace(trace=str(path), warmup_s=2.0, duration_s=5.0))
    assert result.reads == 30   # t = 2.0 .. 4.9
    assert scan(path, 5.0).skipped == 50


BAD = [
    ("", "empty; expected a header line time_s,key,op"),
    ("time,key,op\n0,a,read\n", "line 1: the header must name the columns time_s, key, op; missing time_s"),
    ("time_s,key,op\n0,a,read\n1,b\n", "line 3: 2 fields, the header has 3"),
    ("time_s,key,op\nsoon,a,read\n", "line 2, column time_s: not a number: 'soon'"),
    ("time_s,key,op\n-1,a,read\n", "line 2, column time_s: must be a number of seconds >= 0, got '-1'"),
    ("time_s,key,op\nnan,a,read\n", "line 2, column time_s: must be a number of seconds >= 0, got 'nan'"),
    ("time_s,key,op\n1,a,read\n\n0.5,b,read\n", "line 4, column time_s: 0.5 is before the line above (1.0)"),
    ("time_s,key,op\n0,a,get\n", "line 2, column op: must be 'read' or 'write', got 'get'"),
    ("time_s,key,op\n0,,read\n", "line 2, column key: empty"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_a_bad_trace_names_the_file_the_line_and_the_column(tmp_path, text, message, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError) as error:
        run(INSTANT.replace(trace=str(path)))
    assert str(error.value).startswith(f"trace {path}") and message in str(error.value)
    assert main(["run", "article", "--trace", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wtsim: error: trace ") and message in err and err.count("\n") == 1


def test_the_trace_field_checks_what_it_can_at_once(tmp_path):
    with pytest.raises(ValueError, match="trace: file not found: nowhere.csv"):
        Scenario(trace="nowhere.csv")
    path = tmp_path / "t.csv"
    path.write_text("time_s,key,op\n")
    with pytest.raises(ValueError, match="requests cannot be combined with a trace"):
        Scenario(trace=str(path), requests=(Request(0.5, "read", 1),))
    with pytest.raises(ValueError, match="trace must be a file path or None, got 3"):
        Scenario(trace=3)
    assert run(INSTANT.replace(trace=str(path))).reads == 0   # a header alone: nothing to replay


def test_a_scenario_file_finds_its_trace_next_to_it_and_set_uses_the_working_directory(tmp_path, monkeypatch):
    folder = tmp_path / "scenarios"
    folder.mkdir()
    (folder / "t.csv").write_text("time_s,key,op\n0.1,a,read\n0.2,a,read\n")
    (folder / "replay.toml").write_text('trace = "t.csv"\nduration_s = 1.0\nwarmup_s = 0.0\n')
    (tmp_path / "here.csv").write_text("time_s,key,op\n0.1,a,read\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(folder / "replay.toml"), "--json"]) == 0
    assert main(["run", str(folder / "replay.toml"), "--set", "trace=here.csv", "--json"]) == 0
    from wtsim.sim import load_scenario

    scenario = load_scenario(folder / "replay.toml")
    assert Path(scenario.trace) == folder / "t.csv"
    assert run(scenario).reads == 2
    assert load_scenario(folder / "replay.toml").with_overrides(["trace=here.csv"]).trace == "here.csv"


def test_to_dict_has_a_trace_only_when_there_is_one(tmp_path):
    """So a Poisson run's result reads as it always has (data/golden); a trace's round-trips."""
    assert "trace" not in Scenario().to_dict()
    path = tmp_path / "t.csv"
    path.write_text("time_s,key,op\n")
    scenario = Scenario(trace=str(path))
    assert Scenario.from_dict(json.loads(json.dumps(scenario.to_dict()))) == scenario


def test_run_prints_what_was_replayed(capsys):
    assert main(["run", "article", "--trace", str(SAMPLE), "--set", "duration_s=2"]) == 0
    out = capsys.readouterr().out
    info = scan(SAMPLE, 2.0)
    assert f"trace {SAMPLE}: {info.requests:,} requests on {info.n_keys:,} keys replayed; " \
           f"{info.skipped:,} lines at time_s >= 2 s not replayed" in out
    assert "(replayed from the trace)" in out


def test_sweep_and_compare_take_a_trace(capsys):
    assert main(["sweep", "article", "--set", f"trace={SAMPLE}", "--set", "duration_s=2",
                 "--vary", "cache_capacity=10,100", "--jobs", "1", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["scenario"]["trace"] for r in results] == [str(SAMPLE)] * 2
    assert results[0]["hit_ratio"] < results[1]["hit_ratio"]
    assert main(["compare", "article", "--trace", str(SAMPLE), "--set", "duration_s=2", "--jobs", "1",
                 "--policies", "none,write-through", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["none"]["hits"] == 0


def test_the_sample_trace_is_what_write_trace_writes(tmp_path):
    """data/traces/sample.csv: small, and regenerated by write_trace(path, SAMPLE_SCENARIO)."""
    again = tmp_path / "sample.csv"
    write_trace(again, SAMPLE_SCENARIO)
    assert again.read_text() == SAMPLE.read_text()
    assert SAMPLE.stat().st_size < 200_000 and 3000 < scan(SAMPLE, 4.0).requests < 5000
