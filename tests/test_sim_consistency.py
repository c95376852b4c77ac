"""The simulator's consistency figures: nines at timescales, and the keys a run leaves stale at rest."""

from __future__ import annotations

import math

import pytest

from wtsim.cli import main
from wtsim.codec import Entry
from wtsim.keys import entry_key
from wtsim.sim import Fault, Scenario, load_scenario, run
from wtsim.sim.compare import COLUMNS, compare, comparison_rows, format_comparison
from wtsim.sim.driver import Tally
from wtsim.sim.metrics import Recorder
from wtsim.sim.world import World

# The article's algorithm through a one-second outage that ends well before the run does: the keys
# written during it keep their old cached value, and with a long TTL they still hold it at the end.
OUTAGE = load_scenario("redis-outage").replace(
    duration_s=6.0, warmup_s=1.0, read_rate=1000.0, ttl_s=3600.0, faults=(Fault("cache-unreachable", 2.0, 3.0),),
)


def key(n: int) -> str:
    return entry_key("wtc", "items", n)


# -- keys stale at rest ---------------------------------------------------------------------


def test_the_naive_algorithm_leaves_keys_stale_at_rest_after_an_outage():
    """Writes the cache missed during the outage leave old entries behind; versions with outage repair leave none."""
    assert (OUTAGE.versioned, OUTAGE.outage_repair) == (False, False)
    naive = run(OUTAGE)
    repaired = run(OUTAGE.replace(versioned=True, outage_repair=True))
    assert naive.keys_stale_at_rest > 0
    assert repaired.keys_stale_at_rest == 0


def test_an_entry_that_expired_before_the_end_is_not_stale_at_rest():
    """With a TTL shorter than the time since the outage, the stale entries are gone by the end."""
    assert run(OUTAGE.replace(ttl_s=0.5)).keys_stale_at_rest == 0


def test_keys_stale_at_rest_compares_what_a_reader_would_be_served_with_the_row():
    """Older values count; current or newer values, tombstones, leases and expired entries do not."""
    world = World(n_keys=8, capacity=None, clock=lambda: 0.0)
    for k in (1, 2, 3, 4, 5, 6):
        world.db.commit(k)  # every one of them at version 2 now
    cache = world.cache
    cache.set(key(1), Entry({"id": 1, "version": 1}, None), None, 0.0)  # naive, older: stale
    cache.set(key(2), Entry({"id": 2, "version": 1}, 1), None, 0.0)  # versioned, older: stale
    cache.set(key(3), Entry({"id": 3, "version": 2}, 2), None, 0.0)  # current
    cache.set(key(4), Entry({"id": 4, "u": 9}, 3, dirty=True), None, 0.0)  # queued, newer than the row
    cache.set(key(5), Entry(None, 1, tombstone=True), None, 0.0)  # serves nothing
    cache.set(key(6), Entry({"id": 6, "version": 1}, None), 5.0, 0.0)  # older, but expired by t = 5
    cache.set(key(7), Entry(None, None, lease="token"), None, 0.0)
    assert world.keys_stale_at_rest(now=5.0) == [1, 2]
    assert world.keys_stale_at_rest(now=4.0) == [1, 2, 6]


# -- nines at timescales --------------------------------------------------------------------


def test_consistency_agrees_with_the_stale_reads_and_their_staleness():
    """fresh is 1 - stale_reads / reads; the shares only grow with the timescale, as max_staleness_s says."""
    result = run(OUTAGE)
    shares = result.consistency
    assert result.errors == 0  # so every read returned a version
    assert result.stale_reads > 0 and 1.0 < result.max_staleness_s < 10.0
    assert shares["fresh"] == pytest.approx(1 - result.stale_reads / result.reads)
    assert shares["fresh"] <= shares["1s"] <= shares["10s"] <= shares["60s"]
    assert shares["1s"] < 1.0  # some reads were over a second stale
    assert shares["10s"] == shares["60s"] == 1.0  # none over max_staleness_s


def test_consistency_is_all_fresh_without_stale_reads_and_none_without_reads():
    """A run without stale reads is 100% fresh; one without reads has no shares at all."""
    quiet = Scenario(name="quiet", duration_s=2.0, warmup_s=0.5, read_rate=300, write_rate=20, n_keys=50)
    assert run(quiet).consistency == {"fresh": 1.0, "1s": 1.0, "10s": 1.0, "60s": 1.0}
    assert run(quiet.replace(read_rate=0)).consistency == dict.fromkeys(("fresh", "1s", "10s", "60s"))


def test_a_recorder_fed_by_hand_leaves_out_failed_and_warm_up_reads():
    """As a load runner feeds it: consistency counts the measured reads that returned a version."""
    recorder = Recorder(duration_s=3.0, warmup_s=1.0)
    recorder.read(0.5, 0.001, Tally(), False, 100.0)  # warm-up: left out
    for at in (1.1, 1.2, 1.3, 1.4):
        recorder.read(at, 0.001, Tally(), False, None)
    recorder.read(1.5, math.nan, Tally(), True, None)  # failed: returned nothing
    for at, staleness in ((2.0, 0.5), (2.1, 5.0), (2.2, 30.0)):
        recorder.read(at, 0.001, Tally(), False, staleness)
    recorder.write(2.5, 0.002, Tally(), False)
    scenario = Scenario(name="recorded", duration_s=3.0, warmup_s=1.0)
    result = recorder.result(scenario, {}, keys_stale_at_rest=3)
    assert result.reads == 8 and result.stale_reads == 3 and result.errors == 1
    assert result.consistency == pytest.approx({"fresh": 4 / 7, "1s": 5 / 7, "10s": 6 / 7, "60s": 1.0})
    assert result.keys_stale_at_rest == 3


# -- the command line -----------------------------------------------------------------------


def test_wtsim_run_prints_the_nines_and_the_keys_stale_at_rest(capsys):
    """One summary line: the consistency in words, then the count of keys stale at rest."""
    args = ["run", "redis-outage", "--set", "duration_s=9", "--set", "read_rate=1000", "--set", "ttl_s=3600"]
    assert main(args) == 0  # the outage is from 4 s to 7 s
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  consistency "))
    result = run(load_scenario("redis-outage").replace(duration_s=9.0, read_rate=1000.0, ttl_s=3600.0))
    assert result.keys_stale_at_rest > 0
    assert "% fresh, " in line and "within 1 s" in line
    assert line.endswith(f"; {result.keys_stale_at_rest:,} keys stale at rest at the end")


def test_wtsim_compare_has_a_column_of_keys_stale_at_rest():
    """The comparison table shows each pattern's keys stale at rest, under its own heading."""
    results = compare(OUTAGE, ["none", "write-through"], jobs=1)
    column = COLUMNS.index("keys stale at rest")
    assert results["write-through"].keys_stale_at_rest > 0
    assert [row[column] for row in comparison_rows(results)] == [
        "0", f"{results['write-through'].keys_stale_at_rest:,}"]
    assert "keys stale at rest" in format_comparison(results)
