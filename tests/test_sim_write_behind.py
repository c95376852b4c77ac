"""Write-behind in the simulator: the queue, the flushers, what a crash loses, and the oracle of the lag."""

from __future__ import annotations

import pytest

from wtsim.codec import Entry
from wtsim.ops import CacheQueueWrite, StreamAck, StreamCreateGroup, StreamRead
from wtsim.sim import Fault, Request, Scenario, run
from wtsim.sim.world import SimCache

QUIET = dict(read_rate=0.0, write_rate=0.0, n_keys=100, warmup_s=0.0, cache_rtt_s=0.001, service="deterministic",
             db_read_s=0.002, db_write_s=0.005, db_write_row_s=0.0005, breaker=False)


def writes(keys, at=0.1, step=0.01, server=0):
    """One scripted write per key, ``step`` apart from ``at`` on."""
    return tuple(Request(at + i * step, "write", key, server) for i, key in enumerate(keys))


def test_a_crash_loses_the_unflushed_writes_under_write_behind_and_none_under_write_through():
    """The same seeded workload and crash: write-behind loses writes, write-through loses none."""
    scenario = Scenario(name="crash", duration_s=6, warmup_s=1, seed=5, read_rate=500, write_rate=400, n_keys=200,
                        prefill=True, db_write_s=0.02, db_connections=4,
                        faults=(Fault("flusher-down", 2.0, 3.0), Fault("cache-crash", 3.0, 3.2)))
    behind = run(scenario.replace(policy="write-behind"))
    through = run(scenario.replace(policy="write-through"))
    assert through.writes_lost == 0 and through.writes_unflushed == 0
    assert behind.writes_lost > 100  # about a second of writes (400/s) was queued when the cache died
    assert behind.writes_unflushed == 0  # the flushers drained the rest
    assert run(scenario.replace(policy="write-behind")).to_dict() == behind.to_dict()  # seeded


def test_every_write_queued_when_the_cache_crashes_is_lost_and_the_database_keeps_the_old_rows():
    """Ten writes on ten keys, the flusher down, then a crash: exactly ten lost, every later read stale."""
    keys = range(1, 11)
    reads = tuple(Request(2.5 + i * 0.01, "read", key) for i, key in enumerate(keys))
    scenario = Scenario(duration_s=4, policy="write-behind", requests=writes(keys) + reads,
                        faults=(Fault("flusher-down", 0.0), Fault("cache-crash", 1.0, 1.5)), **QUIET)
    result = run(scenario)
    assert result.writes == 10 and result.errors == 0
    assert result.writes_lost == 10 and result.writes_unflushed == 0
    assert result.db_writes == 0
    assert [r["version"] for r in result.scripted if r["kind"] == "read"] == [1] * 10  # the database's old rows
    assert result.stale_reads == 10  # judged against the acknowledged writes
    # each write was accepted when its second QUEUE_WRITE landed: a round trip (the miss), the base
    # version's database read, half a round trip: 3.5 ms after it was sent
    assert result.max_staleness_s == pytest.approx(2.5 - 0.1 - 0.0035, abs=1e-9)


def test_the_queue_grows_while_the_flushers_are_down_and_drains_after():
    """Nothing is lost; the lag of the writes queued during the window is about the rest of the window."""
    keys = range(1, 51)
    scenario = Scenario(duration_s=5, policy="write-behind", requests=writes(keys),
                        faults=(Fault("flusher-down", 0.0, 2.0),), **QUIET)
    result = run(scenario)
    assert result.writes_lost == 0 and result.writes_unflushed == 0
    assert result.queue_max == 50
    assert [row["queue"] for row in result.timeline] == [50, 50, 50, 0, 0]
    assert result.db_lag_s["max"] == pytest.approx(2.0 - 0.1, abs=0.05)
    assert result.db_writes == 1  # one batch of 50 rows: a single transaction
    assert result.flush_stats["applied"] == 50


def test_a_read_the_database_answers_during_the_lag_is_stale():
    """The cache is down for the read, so it reads the database, which does not have the acknowledged write."""
    requests = (Request(0.1, "write", 1), Request(1.5, "read", 1))
    faults = (Fault("flusher-down", 0.0, 3.0), Fault("cache-down", 1.0, 2.0))
    behind = run(Scenario(duration_s=4, policy="write-behind", requests=requests, faults=faults, **QUIET))
    assert behind.scripted[1]["version"] == 1
    assert behind.scripted[1]["staleness_s"] == pytest.approx(1.5 - 0.1 - 0.0035)  # accepted 3.5 ms after sent
    assert behind.writes_lost == 0
    through = run(Scenario(duration_s=4, policy="write-through", requests=requests, faults=faults, **QUIET))
    assert through.scripted[1]["version"] == 2 and through.stale_reads == 0


def test_writes_to_one_key_coalesce_into_one_row_and_none_is_lost():
    """Twenty writes of key 1 while the flusher is down: one row written, at the last version; none lost."""
    scenario = Scenario(duration_s=3, policy="write-behind", requests=writes([1] * 20),
                        faults=(Fault("flusher-down", 0.0, 1.0),), **QUIET)
    result = run(scenario)
    assert result.flush_stats["coalesced"] == 19 and result.flush_stats["applied"] == 1
    assert result.writes_lost == 0 and result.db_writes == 1
    assert [r["version"] for r in result.scripted] == list(range(2, 22))


def test_past_max_pending_a_write_fails_and_the_queue_never_grows_beyond():
    keys = range(1, 31)
    scenario = Scenario(duration_s=2, policy="write-behind", requests=writes(keys), max_pending=20,
                        faults=(Fault("flusher-down", 0.0),), **QUIET)
    result = run(scenario)
    assert result.errors == 10 and result.queue_max == 20
    assert result.writes_unflushed == 20 and result.writes_lost == 0  # the flusher never came back


def test_a_write_behind_write_costs_one_round_trip_when_the_key_is_cached():
    scenario = Scenario(duration_s=2, policy="write-behind", prefill=True, requests=writes([1, 2, 3]), **QUIET)
    result = run(scenario)
    assert result.write_latency_s["p99"] == pytest.approx(0.001)
    assert result.db_reads == 0  # the cached entry's version is the base: no database read
    cold = run(scenario.replace(prefill=False))
    assert cold.db_reads == 3  # nothing cached: each write reads its base version first
    assert cold.write_latency_s["p50"] == pytest.approx(0.001 + 0.002 + 0.001)


def test_the_flusher_recreates_its_group_after_the_cache_restarts_empty():
    """After a crash the stream and its group are gone (NOGROUP): later writes still reach the database."""
    scenario = Scenario(duration_s=4, policy="write-behind", requests=writes([1]) + writes([2], at=2.0),
                        faults=(Fault("cache-crash", 1.0, 1.2),), **QUIET)
    result = run(scenario)
    assert result.writes_lost == 0 and result.writes_unflushed == 0
    assert result.flush_stats["applied"] == 2


def test_other_policies_report_no_lag_and_no_queue():
    result = run(Scenario(duration_s=2, requests=writes([1, 2]), **QUIET))
    assert result.db_lag_s == {"mean": 0.0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    assert result.queue_max == 0 and result.writes_lost == 0 and result.flush_stats == {}


def test_the_simulated_lru_never_evicts_a_dirty_entry():
    cache = SimCache(capacity=2)
    for key in ("a", "b", "c"):
        cache.apply(CacheQueueWrite(key, "q", "items", '"x"', '{"id":1}', 0, 100), 0.0)
    assert len(cache) == 3  # all dirty: over capacity rather than lose a queued write
    cache.set("clean", Entry({"id": 2}, 1), None, 0.0)
    assert "clean" not in cache.data and len(cache) == 3  # the clean one is the one that goes


def test_a_simulated_stream_delivers_once_per_group_and_forgets_what_is_acknowledged():
    cache = SimCache()
    cache.apply(StreamCreateGroup("q", "g"), 0.0)
    for key in ("a", "b"):
        cache.apply(CacheQueueWrite(key, "q", "items", '"x"', '{"id":1}', 0, 100), 0.0)
    first = cache.apply(StreamRead("q", "g", "c1", 10), 0.0)
    assert [entry_id for entry_id, _ in first] == ["1-0", "2-0"]
    assert cache.apply(StreamRead("q", "g", "c2", 10), 0.0) == []  # delivered to c1 already
    assert cache.apply(StreamRead("q", "g", "c1", 10, pending=True), 0.0) == first  # until acknowledged
    assert cache.apply(StreamAck("q", "g", ("1-0",)), 0.0) == 1
    assert len(cache.stream("q")) == 1
