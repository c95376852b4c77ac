"""Every fault kind has its effect, and the failure-semantics table holds in simulated time."""

from __future__ import annotations

import pytest

from wtsim.sim import Fault, Request, Scenario, load_scenario, run

# A small warm system: 2,000 reads/s on 500 keys, writes to taste. Runs in a fraction of a second.
BASE = Scenario(
    name="faults", duration_s=8.0, warmup_s=1.0, seed=11, read_rate=2000, write_rate=50, n_keys=500,
    zipf_alpha=1.0, prefill=True, breaker_cooldown_s=1.0, cache_timeout_s=0.25,
)


def seconds(result, field: str, start: int, end: int) -> int:
    """The sum of a timeline column over the whole seconds start .. end-1."""
    return sum(row[field] for row in result.timeline[start:end])


def clean_after(fault: Fault, scenario: Scenario) -> float:
    """When a server's breaker has surely let it through again: a probe sent just before the end
    fails a timeout later, and the breaker then stays open one more cool-down."""
    return fault.end_s + scenario.cache_timeout_s + scenario.breaker_cooldown_s


# -- each kind has its effect ------------------------------------------------------------------


def test_cache_down_sends_reads_to_the_db_and_keeps_the_data():
    """While the cache is down reads go to the DB; afterwards the old entries hit again, nothing lost."""
    result = run(BASE.replace(write_rate=0, faults=(Fault("cache-down", 2, 4),)))
    assert seconds(result, "hits", 2, 4) < 0.01 * seconds(result, "reads", 2, 4)
    assert seconds(result, "cache_errors", 2, 4) > 0 and result.errors == 0
    assert seconds(result, "misses", 6, 8) == 0  # retained: no cold start after the outage


def test_a_refused_connection_fails_in_a_round_trip_an_unreachable_host_after_the_connect_timeout():
    """cache-down (Redis stopped, connections refused) fails fast; cache-unreachable waits out the connect."""
    down = run(BASE.replace(write_rate=0, breaker=False, faults=(Fault("cache-down", 2, 4),)))
    lost = run(BASE.replace(write_rate=0, breaker=False, faults=(Fault("cache-unreachable", 2, 4),)))
    rtt, connect = BASE.cache_rtt_s, BASE.cache_timeout_s  # no cache_connect_timeout_s: the socket timeout
    # A miss during the window: a failed GET, then the database read.
    assert down.read_latency_s["p99"] < rtt + 10 * BASE.db_read_s < connect
    assert lost.read_latency_s["p99"] >= connect  # over 2 s of 7 measured, every read waited it out
    assert lost.read_latency_s["mean"] > 10 * down.read_latency_s["mean"]
    assert down.cache_errors >= lost.cache_errors > 0  # the same ops fail, at other costs (a slow fail spans the end)


def test_cache_hang_costs_the_timeout_until_the_breaker_opens():
    """A hung cache costs every op its timeout without a breaker; with one, only the first few pay."""
    hang = (Fault("cache-hang", 2, 5),)
    with_breaker = run(BASE.replace(faults=hang))
    without = run(BASE.replace(faults=hang, breaker=False))
    assert without.read_latency_s["mean"] > 2 * with_breaker.read_latency_s["mean"]
    assert without.cache_errors > 2 * with_breaker.cache_errors
    assert with_breaker.errors == without.errors == 0  # correct data, only slower


def test_cache_flush_empties_the_cache_at_its_start():
    """After a flush every key misses once; before it, the warm cache had no misses."""
    result = run(BASE.replace(write_rate=0, faults=(Fault("cache-flush", 3),)))
    assert seconds(result, "misses", 1, 3) == 0
    assert seconds(result, "misses", 3, 4) > 50


def test_cache_flush_with_an_end_is_a_restart():
    """A flush with an end_s is unreachable until then, and comes back empty."""
    result = run(BASE.replace(write_rate=0, faults=(Fault("cache-flush", 3, 4),)))
    assert seconds(result, "cache_errors", 3, 4) > 0
    assert seconds(result, "hits", 3, 4) < 0.01 * seconds(result, "reads", 3, 4)
    assert result.timeline[6]["misses"] > 0  # still filling up after the breaker let reads through


def test_cache_set_fail_refuses_stores_and_the_write_still_succeeds():
    """Every refused SET after a commit is reported as a cache error, never as a failed write."""
    result = run(BASE.replace(faults=(Fault("cache-set-fail", 1, probability=1.0),)))
    assert result.errors == 0
    assert result.cache_errors >= result.writes > 0  # each write's SET (and some populates) refused
    assert result.policy_stats["invalidations"] >= result.writes  # each refused write invalidated


def test_cache_set_fail_probability_is_a_fraction_of_sets():
    """With probability 0.3 about 30% of the writes' SETs are refused."""
    result = run(BASE.replace(write_rate=400, read_rate=0, faults=(Fault("cache-set-fail", 0, probability=0.3),)))
    assert result.policy_stats["invalidations"] == pytest.approx(0.3 * result.policy_stats["db_writes"], rel=0.15)


def test_cache_slow_multiplies_the_round_trip():
    """A cache-slow factor of 10 makes a hit take ten round trips."""
    result = run(BASE.replace(write_rate=0, faults=(Fault("cache-slow", 0, factor=10),)))
    assert result.read_latency_s["p50"] == pytest.approx(10 * BASE.cache_rtt_s)


def test_a_slow_op_that_times_out_still_lands():
    """A SET whose answer comes after the timeout fails for the client, but lands at the cache anyway."""
    scenario = Scenario(
        duration_s=1, warmup_s=0, read_rate=0, write_rate=0, n_keys=1, prefill=True, service="deterministic",
        cache_rtt_s=0.001, cache_timeout_s=0.25, db_write_s=0.005, breaker=False,
        faults=(Fault("cache-slow", 0.0, 0.2, factor=600),),  # 0.6 s round trips until t = 0.2 s
        requests=(Request(0.1, "write", 1), Request(0.6, "read", 1)),
    )
    write, read = run(scenario).scripted
    # The SET sent at 0.105 s lands at 0.405 s; the client gave up at 0.355 s and sent a DEL,
    # which (the fault over) landed at once, before the late SET.
    assert [op["op"] for op in write["ops"]] == ["DbWrite", "CacheSet", "CacheDelete"]
    assert [op["op"] for op in read["ops"]] == ["CacheGet"] and read["version"] == 2


def test_partition_cuts_off_only_the_given_servers():
    """In a partition, the cut-off server's cache ops fail; the others' keep hitting the cache."""
    result = run(BASE.replace(app_servers=2, faults=(Fault("partition", 2, 5, servers=1),)))
    during = seconds(result, "hits", 2, 5) / seconds(result, "reads", 2, 5)
    assert 0.4 < during < 0.6  # one server of two still hits
    assert seconds(result, "cache_errors", 2, 5) > 0


def test_db_down_fails_requests_that_need_the_db():
    """While the database is down, writes fail and reads that hit the cache still succeed."""
    result = run(BASE.replace(faults=(Fault("db-down", 3, 4),)))
    assert result.timeline[3]["errors"] > 0
    assert result.timeline[3]["errors"] >= result.timeline[3]["writes"]
    assert result.timeline[3]["hits"] > 0.9 * result.timeline[3]["reads"]
    assert seconds(result, "errors", 0, 3) + seconds(result, "errors", 4, 8) == 0


def test_fault_probability_zero_does_nothing():
    """A fault with probability 0 leaves the run as it was."""
    clean = run(BASE)
    assert run(BASE.replace(faults=(Fault("cache-down", 2, 4, probability=0.0),))).to_dict()["timeline"] == (
        clean.to_dict()["timeline"]
    )


# -- the required outcomes -----------------------------------------------------------------------


def test_naive_mode_serves_stale_reads_after_an_outage():
    """The article's algorithm leaves pre-outage values cached for keys written during the outage."""
    scenario = load_scenario("redis-outage")
    assert (scenario.versioned, scenario.outage_repair) == (False, False)
    result = run(scenario)
    end = int(scenario.faults[0].end_s)
    assert seconds(result, "stale_reads", end, len(result.timeline)) > 100
    assert result.max_staleness_s > 1.0


def test_outage_repair_removes_stale_reads_once_the_outage_is_over():
    """With outage_repair, no read is stale once the breaker has let the cache back in after the outage."""
    scenario = load_scenario("redis-outage").replace(outage_repair=True)
    result = run(scenario)
    clean_from = int(clean_after(scenario.faults[0], scenario)) + 1
    assert seconds(result, "stale_reads", clean_from, len(result.timeline)) == 0
    assert result.stale_reads == 0  # in fact, none at all here
    assert result.policy_stats["suspects_repaired"] > 0


def test_naive_mode_serves_stale_reads_during_a_partition():
    """The servers that still reach the cache serve values the cut-off server could not invalidate."""
    scenario = load_scenario("partition")
    result = run(scenario)
    fault = scenario.faults[0]
    assert seconds(result, "stale_reads", int(fault.start_s) + 1, int(fault.end_s)) > 100


def test_outage_repair_ends_a_partitions_stale_reads_after_it():
    """The cut-off server invalidates what it wrote as soon as it reaches the cache again."""
    scenario = load_scenario("partition").replace(outage_repair=True)
    result = run(scenario)
    fault = scenario.faults[0]
    assert seconds(result, "stale_reads", int(fault.start_s) + 1, int(fault.end_s)) > 100  # during: unavoidable
    clean_from = int(clean_after(fault, scenario)) + 1
    assert seconds(result, "stale_reads", clean_from, len(result.timeline)) == 0
    naive = run(scenario.replace(outage_repair=False))
    assert seconds(naive, "stale_reads", clean_from, len(naive.timeline)) > 100


def test_the_breaker_cuts_the_time_lost_to_a_hung_cache():
    """Under a hung cache, mean read latency with the breaker is a fraction of what it is without."""
    hang = (Fault("cache-hang", 2, 6),)
    with_breaker = run(BASE.replace(faults=hang)).read_latency_s["mean"]
    without = run(BASE.replace(faults=hang, breaker=False)).read_latency_s["mean"]
    assert with_breaker < without / 2
