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


def test_failures_in_flight_while_open_do_not_extend_the_cooldown():
    """Calls that fail after the breaker opened leave opened_at alone: the cool-down runs from the opening."""
    breaker, clock = tripped(cooldown=10.0)
    opened = breaker.opened_at
    for t in (1.0, 4.0, 9.5):  # late failures of calls sent before it opened
        clock.now = opened + t
        breaker.record_failure()
        assert breaker.opened_at == opened
    clock.now = opened + 10.0
    assert breaker.allow()  # the probe goes at the planned time, not 10 s after the last failure


def test_a_failure_after_the_cooldown_that_is_not_the_probe_does_not_reopen():
    """Half-open but no probe sent yet: a late failure does not reopen; the next call is still the probe."""
    breaker, clock = tripped(cooldown=10.0)
    clock.now = breaker.opened_at + 11.0
    breaker.record_failure()
    assert breaker.state == "half-open" and breaker.allow()


def test_a_late_failure_while_probing_is_not_the_probe():
    """During the probe, a call sent before it fails late: the probe still decides, and it is still out."""
    breaker, clock = tripped(cooldown=10.0)
    clock.now = breaker.opened_at + 10.0
    assert breaker.allow()  # the probe, sent now
    breaker.record_failure(was_probe=False)  # an older call timing out
    assert breaker.probing and breaker.trips == 1
    breaker.record_failure(was_probe=True)  # the probe's own failure
    assert breaker.state == "open" and breaker.trips == 2


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


def test_real_cache_late_failures_do_not_extend_the_cooldown():
    """Four reads in flight on a dead Redis: the fourth fails after the breaker opened and leaves it as it was."""
    server = fakeredis.FakeServer()
    clock = FakeClock()
    cache = WriteThroughCache(fakeredis.FakeRedis(server=server), clock=clock)
    reads = [cache.step_read(None, "products", f"p-{i}", lambda db: {"id": "x"}, dict) for i in range(4)]
    server.connected = False  # all four have passed the breaker and wait on their GET
    for i, read in enumerate(reads):
        clock.now = float(i)
        read.run()
    assert cache.breaker.trips == 1
    assert cache.breaker.opened_at == 2.0  # the third failure opened it; the fourth, at 3.0, did not move it
    clock.now = 2.0 + cache.breaker.cooldown_s
    assert cache.breaker.allow()


def test_simulated_breaker_opens_once_for_a_burst_of_in_flight_timeouts():
    """Redis hangs at 2 s: the requests already sent time out until 2.5 s, but the cool-down runs from the opening."""
    from wtsim.sim import Fault, Scenario
    from wtsim.sim.run import Simulation

    scenario = Scenario(read_rate=2000, n_keys=100, prefill=True, duration_s=4.0, breaker_cooldown_s=5.0,
                        faults=(Fault("cache-hang", start_s=2.0),))
    sim = Simulation(scenario)
    seen = {}

    def sample():
        yield sim.env.timeout(3.0)
        seen["opened_at"] = sim.servers[0].state.breaker.opened_at

    sim.env.process(sample())
    sim.run()
    timeout = scenario.cache_timeout_s
    assert 2.0 + timeout <= seen["opened_at"] < 2.0 + timeout + 0.01  # the third timeout, not the last of ~500
