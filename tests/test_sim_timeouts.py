"""Request timeouts and client retries: the model notebook 9's metastable failure rests on."""

from __future__ import annotations

import pytest

from wtsim.sim import Fault, Request, Scenario, run

SLOW_DB = dict(read_rate=0.0, write_rate=0.0, n_keys=10, warmup_s=0.0, cache_rtt_s=0.001, service="deterministic",
               db_read_s=1.0, db_connections=1, breaker=False)


def test_a_request_that_times_out_is_one_failure_and_never_populates():
    scenario = Scenario(duration_s=4, request_timeout_s=0.3, requests=(Request(0.0, "read", 1),), **SLOW_DB)
    result = run(scenario)
    assert (result.reads, result.errors, result.timeouts, result.retries) == (1, 1, 1, 0)
    assert result.policy_stats["cache_sets"] == 0  # closed at its database read: it never populated
    assert result.read_latency_s["p50"] is None  # a failed request has no latency
    assert result.timeline[0]["timeouts"] == 1 and result.timeline[0]["errors"] == 1
    assert result.scripted[0]["failed"] and result.scripted[0]["latency_s"] == pytest.approx(0.3)
    waited = run(scenario.replace(request_timeout_s=None))
    assert waited.errors == 0 and waited.policy_stats["cache_sets"] == 1  # the same read, patient, populates


def test_its_retries_are_new_requests_after_a_doubling_backoff():
    """Attempts start at 0, 0.3 + 0.5 = 0.8 and 0.8 + 0.3 + 1.0 = 2.1: counted in the seconds they start in."""
    scenario = Scenario(duration_s=4, request_timeout_s=0.3, retries=2, retry_backoff_s=0.5,
                        requests=(Request(0.0, "read", 1),), **SLOW_DB)
    result = run(scenario)
    assert (result.reads, result.errors, result.timeouts, result.retries) == (3, 3, 3, 2)
    assert [row["reads"] for row in result.timeline] == [2, 0, 1, 0]
    assert [row["retries"] for row in result.timeline] == [1, 0, 1, 0]
    assert result.db_reads == 3  # every attempt sent its query


def test_a_retry_queues_behind_its_own_abandoned_query_and_one_that_succeeds_ends_the_retries():
    """Two reads on one connection of 1 s queries, clients patient for 1.5 s."""
    scenario = Scenario(duration_s=6, request_timeout_s=1.5, retries=3, db_read_s=1.0, n_keys=10, warmup_s=0.0,
                        read_rate=0.0, write_rate=0.0, service="deterministic", db_connections=1, breaker=False,
                        requests=(Request(0.0, "read", 1), Request(0.0, "read", 2)))
    result = run(scenario)
    # Read 1 answers at 1.0. Read 2 queues behind it and would answer at 2.0; its client gives up at 1.5
    # and retries. Key 2 is not cached (the abandoned read never populates), so the retry queries again,
    # behind the abandoned query, which still runs until 2.0: the retry would answer at 3.0 and gives up
    # at 3.0 too. The second retry finds the connection free and answers at 4.0, in time.
    assert (result.reads, result.errors, result.timeouts, result.retries) == (4, 2, 2, 2)
    assert result.db_reads == 4 and result.policy_stats["cache_sets"] == 2


def test_an_abandoned_query_still_holds_the_connection_unless_it_may_leave_the_queue():
    """A third read queues behind two abandoned ones: it waits for both ('run'), or for none that left."""
    requests = (Request(0.0, "read", 1), Request(0.0, "read", 2), Request(0.0, "read", 3), Request(0.5, "read", 4))
    base = Scenario(duration_s=5, request_timeout_s=0.4, requests=requests, **SLOW_DB)
    ran = run(base)
    left = run(base.replace(abandoned_queries="leave-queue"))
    assert ran.timeouts == 4  # 1 s queries on one connection: all give up at 0.4 s
    assert ran.db_reads == left.db_reads == 4  # sent either way
    # 'run': the database serves all four, one after another, for no one
    # 'leave-queue': only the first ran; the others left the queue before a connection was free
    assert ran.db_wait_mean_s == pytest.approx((0 + 1 + 2 + 2.5) / 4)
    assert left.db_wait_mean_s == pytest.approx(0.0)


def test_a_retry_budget_caps_the_retries():
    """A budget of 10% (10 tokens banked at the start): at most 10 + 0.1 per request retries."""
    scenario = Scenario(duration_s=3, warmup_s=0.0, read_rate=200, write_rate=0, n_keys=10, retries=3,
                        faults=(Fault("db-down", 0.0),), breaker=False)
    unlimited = run(scenario)
    capped = run(scenario.replace(retry_budget=0.1))
    firsts = unlimited.reads - unlimited.retries
    assert unlimited.retries == 3 * firsts  # every request retried three times
    assert capped.retries <= 10 + 0.1 * (capped.reads - capped.retries) + 1
    assert capped.retries < unlimited.retries / 10


def test_timeouts_and_retries_are_seeded():
    scenario = Scenario(duration_s=3, read_rate=500, n_keys=500, db_connections=2, db_read_s=0.01,
                        request_timeout_s=0.05, retries=2, seed=11)
    assert run(scenario).to_dict() == run(scenario).to_dict()


def test_a_read_given_up_while_waiting_for_a_lease_is_a_miss_not_a_hit():
    """The second reader waits on the first's lease, sends no query, and gives up: a failed miss."""
    scenario = Scenario(duration_s=4, request_timeout_s=0.3, leases=True,
                        requests=(Request(0.0, "read", 1), Request(0.01, "read", 1)), **SLOW_DB)
    result = run(scenario)
    assert (result.reads, result.errors, result.db_reads) == (2, 2, 1)
    assert (result.hits, result.misses) == (0, 2)
    assert result.lease_waits > 0
