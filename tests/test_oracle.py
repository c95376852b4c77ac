"""The consistency oracle shared by the simulator and the load runner (wtsim.oracle)."""

import pytest

from wtsim import oracle
from wtsim.oracle import History


def test_a_read_of_the_newest_version_is_fresh():
    assert oracle.staleness(3, 3, lambda v: 10.0 * v, began=40.0) is None
    assert oracle.staleness(4, 3, lambda v: 10.0 * v, began=40.0) is None  # newer than newest: not stale


def test_staleness_is_how_long_the_next_version_had_been_current():
    # version 2 current since 20 s; a read at 25 s returning version 1 is 5 s behind
    assert oracle.staleness(1, 3, lambda v: 10.0 * v, began=25.0) == pytest.approx(5.0)


def test_history_judges_against_what_was_current_when_the_read_began():
    h = History()
    h.committed("a", 2, 1.0)
    h.committed("a", 3, 2.0)
    assert h.newest("a", 0.5) == 1
    assert h.newest("a", 1.0) == 2  # current from its commit on
    assert h.newest("a", 5.0) == 3
    assert h.newest("b", 5.0) == 1  # never written: the seeded row
    assert h.judge("a", 1, 0.9) is None  # began before version 2: fresh
    assert h.judge("a", 1, 1.5) == pytest.approx(0.5)
    assert h.judge("a", 2, 2.25) == pytest.approx(0.25)
    assert h.judge("a", 3, 2.25) is None


def test_history_takes_commits_in_any_order():
    h = History()
    h.committed("a", 3, 2.0)
    h.committed("a", 2, 1.0)
    assert [h.newest("a", t) for t in (0.0, 1.0, 2.0)] == [1, 2, 3]


def test_a_version_never_committed_is_an_error_naming_it():
    h = History()
    h.committed("a", 3, 2.0)  # a history that lost version 2: judging a read of 1 needs it
    with pytest.raises(ValueError, match="version 2 was never committed"):
        h.judge("a", 1, 5.0)


def test_consistency_counts_the_shares_at_each_timescale():
    shares = oracle.consistency(10, [0.5, 2.0, 30.0, 90.0])
    assert shares == pytest.approx({"fresh": 0.6, "1s": 0.7, "10s": 0.8, "60s": 0.9})
    assert oracle.consistency(0, []) == {"fresh": None, "1s": None, "10s": None, "60s": None}
    with pytest.raises(ValueError, match="3 stale reads out of 2"):
        oracle.consistency(2, [1.0, 2.0, 3.0])


def test_describe_says_it_in_nines():
    assert oracle.describe({"fresh": 0.9997, "1s": 1.0, "10s": 1.0, "60s": 1.0}) == "99.97% fresh, 100% within 1 s"
    assert oracle.describe({"fresh": 1.0, "1s": 1.0, "10s": 1.0, "60s": 1.0}) == "100% fresh"
    assert oracle.describe({"fresh": 0.5, "1s": 0.5, "10s": 0.75, "60s": 0.75}) == "50% fresh, 75% within 10 s"
    assert oracle.describe({"fresh": None}) == "no reads returned a value"


def test_stale_at_rest_compares_each_cached_version_with_the_database():
    cached = {"a": 1, "b": 2, "c": None, "d": 1}
    committed = {"a": 2, "b": 2, "c": 5}
    assert oracle.stale_at_rest(cached, committed) == ["a"]  # d was never written: version 1 is right
