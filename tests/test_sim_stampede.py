"""Stampedes in the simulator: the hot key's expiry, without leases, with them, and with XFetch.

``hot-key-expiry`` reads one key 5,000 times a second; it expires every 5 s and
takes 50 ms to recompute. Without protection each expiry sends about
5,000 x 0.05 = 250 reads to the database; with leases one, while the other
readers wait; with early recompute a few, before the expiry, and no miss spike.
"""

from __future__ import annotations

import math

import pytest

from wtsim.sim import load_scenario, run

SCENARIO = load_scenario("hot-key-expiry").replace(duration_s=16.0)  # three expiries after the warm-up


@pytest.fixture(scope="module")
def results():
    return {
        "none": run(SCENARIO),
        "leases": run(SCENARIO.replace(leases=True)),
        "xfetch": run(SCENARIO.replace(early_recompute_beta=1.0)),
    }


def expiries(scenario) -> int:
    """How many times the hot entry expires in the measured window (at most)."""
    return math.ceil(scenario.measured_s / scenario.ttl_s)


def test_without_leases_each_expiry_is_a_stampede(results):
    """About read rate x recompute time database reads per expiry, 250 here."""
    r = results["none"]
    per_expiry = r.db_reads / expiries(SCENARIO)
    assert 150 <= per_expiry <= 300, per_expiry
    assert r.lease_waits == 0 and r.early_recomputes == 0


def test_leases_cut_database_reads_per_expiry_at_least_twentyfold(results):
    """With leases one reader recomputes each expiry and the others wait for it."""
    none, leased = results["none"], results["leases"]
    assert leased.db_reads <= expiries(SCENARIO)
    assert none.db_reads >= 20 * leased.db_reads
    assert leased.lease_waits > 100  # what leases cost: concurrent readers of the missing key wait
    assert leased.read_latency_s["p99"] > none.read_latency_s["p50"]


def test_early_recompute_removes_the_miss_spike(results):
    """XFetch refreshes the entry before it expires: no second after the warm-up has a burst of reads."""
    r = results["xfetch"]
    measured = [row for row in r.timeline if row["t"] >= SCENARIO.warmup_s]
    assert max(row["db_reads"] for row in measured) <= 10
    assert r.early_recomputes >= expiries(SCENARIO) - 1  # one (or a few) per expiry: what it costs
    assert r.db_reads == r.early_recomputes  # every database read was an early one: no misses at expiry
    assert results["none"].db_reads >= 20 * r.db_reads


def test_the_same_seed_gives_the_same_early_recomputes():
    """The uniform draws come from the scenario's seed: two runs of it agree to the last number."""
    s = SCENARIO.replace(early_recompute_beta=1.0, duration_s=8.0)
    assert run(s).to_dict() == run(s).to_dict()
