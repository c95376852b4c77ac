"""The circuit breaker in front of Redis, on an injected clock (cachetools' ``timer=`` idea)."""

from __future__ import annotations

import math

import fakeredis
import pytest

from wtsim import CircuitBreaker, WriteThroughCache


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tripped(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, FakeClock]:
    """A breaker that has just opened, at clock time 0."""
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=threshold, cooldown_s=cooldown, clock=clock)
    for _ in range(threshold):
        breaker.record_failure()
    assert breaker.state == "open"
    return breaker, clock


def test_closed_until_the_threshold():
    """Fewer consecutive failures than the threshold keep the breaker closed."""
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure()
        assert breaker.state == "closed"
        assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    assert not breaker.allow()


def test_only_consecutive_failures_count():
    """A success in between starts the count again."""
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=FakeClock())
    for _ in range(5):
        breaker.record_failure()
        breaker.record_failure()
        breaker.record_success()
    assert breaker.state == "closed"
    assert breaker.trips == 0


def test_open_skips_for_the_whole_cooldown():
    """While open, no call is allowed until the cool-down has fully passed."""
    breaker, clock = tripped(cooldown=10.0)
    for t in (0.0, 5.0, 9.999):
        clock.now = t
        assert not breaker.allow()
        assert breaker.state == "open"
    clock.now = 10.0
    assert breaker.state == "half-open"
    assert breaker.allow()


def test_half_open_allows_exactly_one_probe():
    """After the cool-down, one caller probes; the others keep skipping until it reports."""
    breaker, clock = tripped(cooldown=10.0)
    clock.now = 25.0
    assert breaker.allow()
    assert [breaker.allow() for _ in range(5)] == [False] * 5
    assert breaker.state == "half-open"


def test_successful_probe_closes():
    """A probe that succeeds closes the breaker: every call is allowed again."""
    breaker, clock = tripped(cooldown=10.0)
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
    assert all(breaker.allow() for _ in range(5))
    assert breaker.failures == 0


def test_failed_probe_reopens_for_a_full_cooldown():
    """A probe that fails opens the breaker again, for a cool-down counted from the probe."""
    breaker, clock = tripped(cooldown=10.0)
    clock.now = 12.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now = 21.9  # 9.9 s after the failed probe
    assert not breaker.allow()
    clock.now = 22.0
    assert breaker.allow()


def test_trips_are_counted():
    """Each opening counts one trip: the first, and each failed probe; not failures while open."""
    breaker, clock = tripped(cooldown=10.0)
    assert breaker.trips == 1
    breaker.record_failure()  # a call that was already in flight: no new trip
    assert breaker.trips == 1
    clock.now = 30.0
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.trips == 2
    clock.now = 60.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.trips == 2
    for _ in range(3):
        breaker.record_failure()
    assert breaker.trips == 3


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"failure_threshold": -1}, "failure_threshold"),
        ({"failure_threshold": 2.5}, "failure_threshold"),
        ({"failure_threshold": "3"}, "failure_threshold"),
        ({"cooldown_s": 0}, "cooldown_s"),
        ({"cooldown_s": -1.0}, "cooldown_s"),
        ({"cooldown_s": math.nan}, "cooldown_s"),
        ({"cooldown_s": "5"}, "cooldown_s"),
        ({"cooldown_s": None}, "cooldown_s"),
    ],
)
def test_bad_parameters_raise_naming_the_field(kwargs, field):
    """Bad settings raise ValueError, and the message names the field."""
    with pytest.raises(ValueError, match=field):
        CircuitBreaker(**kwargs)


def test_cache_breaker_runs_on_the_injected_clock():
    """The cache's default breaker uses the clock it is given: Redis is skipped until that clock moves."""
    server = fakeredis.FakeServer()
    server.connected = False  # every command fails with ConnectionError
    clock = FakeClock()
    cache = WriteThroughCache(fakeredis.FakeRedis(server=server), clock=clock)
    read = lambda: cache.read(None, "products", "p-1", lambda db: {"id": "p-1"}, dict)  # noqa: E731
    for _ in range(cache.breaker.failure_threshold):
        assert read() == {"id": "p-1"}
    errors = cache.stats.cache_errors
    assert cache.breaker.state == "open"
    for _ in range(5):
        assert read() == {"id": "p-1"}
    assert cache.stats.cache_errors == errors  # Redis was not asked while open
    clock.now += cache.breaker.cooldown_s
    server.connected = True
    assert read() == {"id": "p-1"}
    assert cache.breaker.state == "closed"
