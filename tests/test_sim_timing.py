"""The timing model: cache ops land half a round trip after they are sent, DB reads see their start."""

from __future__ import annotations

import pytest

from wtsim.sim import Fault, Request, Scenario, load_scenario, run

# One key, no random arrivals, every time exact: RTT 1 ms, DB read 2 ms, DB write 0.5 ms.
STORY = Scenario(
    name="story", duration_s=1.0, warmup_s=0.0, read_rate=0, write_rate=0, n_keys=1,
    service="deterministic", cache_rtt_s=0.001, db_read_s=0.002, db_write_s=0.0005,
)


def story(*requests: tuple, **changes) -> list[dict]:
    """Run scripted requests; return what each one did (Result.scripted, in arrival order)."""
    scenario = STORY.replace(requests=tuple(Request(*r) for r in requests), **changes)
    return run(scenario).scripted


def test_naive_populate_after_a_newer_write_leaves_a_stale_value():
    """A reader whose snapshot precedes a write's commit re-caches the old version after the write's SET."""
    reader, writer, later = story((0.0, "read", 1), (0.0011, "write", 1), (0.010, "read", 1))
    assert [op["op"] for op in reader["ops"]] == ["CacheGet", "DbRead", "CacheSet"]
    assert reader["ops"][1]["t"] == pytest.approx(0.001)  # the snapshot: version 1, before the commit
    assert writer["version"] == 2 and writer["ops"][1]["t"] == pytest.approx(0.0016)  # committed, SET sent
    assert reader["ops"][2]["t"] == pytest.approx(0.003)  # the old populate lands at 3.5 ms, after the SET
    assert later["version"] == 1
    assert later["staleness_s"] == pytest.approx(0.010 - 0.0016)


def test_versioned_mode_refuses_the_late_populate():
    """With versioned=True the same interleaving leaves version 2 cached: the compare-and-set refuses 1."""
    reader, writer, later = story((0.0, "read", 1), (0.0011, "write", 1), (0.010, "read", 1), versioned=True)
    assert reader["ops"][2]["op"] == "CacheSetIfNewer"
    assert later["version"] == 2 and later["staleness_s"] is None
    assert run(STORY.replace(versioned=True, requests=tuple(
        Request(*r) for r in ((0.0, "read", 1), (0.0011, "write", 1)))
    )).policy_stats["refused_older"] == 1


def test_a_db_read_sees_the_state_when_its_service_starts():
    """A read that started before a commit answers the older version; one that started after sees the new one."""
    first, write, second = story(
        (0.0, "read", 1), (0.0005, "write", 1), (0.0012, "read", 1), policy="none", db_connections=2
    )
    assert write["latency_s"] == pytest.approx(0.0005)  # committed at 1.0 ms, while the first read ran
    assert first["version"] == 1 and first["latency_s"] == pytest.approx(0.002)
    assert first["staleness_s"] is None  # it began before the commit: not stale
    assert second["version"] == 2


def test_hit_and_miss_latencies_are_round_trips_and_service_times():
    """A miss costs GET + DB read + populate; a hit costs one round trip."""
    miss, hit = story((0.0, "read", 1), (0.1, "read", 1))
    assert miss["latency_s"] == pytest.approx(0.001 + 0.002 + 0.001)
    assert hit["latency_s"] == pytest.approx(0.001)
    assert [op["op"] for op in hit["ops"]] == ["CacheGet"]


def test_a_cache_op_takes_effect_half_a_round_trip_after_it_is_sent():
    """A flush at 50 ms empties the cache for GETs that land after it, sent up to half an RTT before."""
    rtt = 0.010
    before, after = story(
        (0.050 - 0.6 * rtt, "read", 1),  # lands 1 ms before the flush: a hit
        (0.050 - 0.4 * rtt, "read", 1),  # lands 1 ms after: a miss
        prefill=True, cache_rtt_s=rtt, faults=(Fault("cache-flush", 0.050),),
    )
    assert [op["op"] for op in before["ops"]] == ["CacheGet"]
    assert [op["op"] for op in after["ops"]] == ["CacheGet", "DbRead", "CacheSet"]


def test_a_read_after_a_commit_never_sees_the_old_value_on_a_healthy_cache():
    """Commit, then SET (lands h later); a GET sent after the commit lands later still, so it is fresh."""
    _, read = story((0.0, "write", 1), (0.0005 + 1e-9, "read", 1), prefill=True)
    assert read["version"] == 2


def test_db_connections_queue_and_the_wait_is_measured():
    """With one connection, later DB ops wait for it, and db_wait_mean_s is that wait alone."""
    scenario = STORY.replace(
        policy="none", db_connections=1,
        requests=(Request(0.0, "read", 1), Request(0.0005, "read", 1), Request(0.001, "read", 1)),
    )
    result = run(scenario)
    # waits: 0, 2.0 - 0.5 = 1.5 ms, 4.0 - 1.0 = 3.0 ms
    assert result.db_wait_mean_s == pytest.approx((0 + 0.0015 + 0.003) / 3)
    assert [r["latency_s"] for r in result.scripted] == pytest.approx([0.002, 0.0035, 0.005])


def test_the_naive_race_appears_on_its_own_under_load():
    """A flushed cache under reads and writes shows the read-populate race in naive mode, and none versioned."""
    scenario = load_scenario("cache-flush")
    naive, versioned = run(scenario), run(scenario.replace(versioned=True))
    assert naive.stale_reads > 0
    assert naive.max_staleness_s > 10 * scenario.db_read_s
    assert versioned.stale_reads == 0
    assert versioned.max_staleness_s <= scenario.db_read_s  # bounded by about one DB read
