"""A circuit breaker with an injected clock.

When Redis hangs, every call would otherwise wait a whole socket timeout before
falling back to the database. The breaker counts consecutive failures; after
``failure_threshold`` of them it *opens* and the policies skip the cache
without asking it. After ``cooldown_s`` it lets one call through (*half-open*):
success closes it, failure opens it for another cool-down. Failures of calls
that were already in flight when it opened do not extend the cool-down.

The clock is a parameter (``time.monotonic`` by default, the SimPy
environment's ``now`` in the simulator), as in ``cachetools.TTLCache(timer=)``,
so the real cache and the simulator run this very class.
"""

from __future__ import annotations

import time
from typing import Callable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    """Skip a failing dependency for a cool-down after consecutive failures."""

    def __init__(
        self,
        failure_threshold: int = 3,
        cooldown_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(failure_threshold, int) or failure_threshold < 1:
            raise ValueError(f"failure_threshold must be an integer >= 1, got {failure_threshold!r}")
        if isinstance(cooldown_s, bool) or not isinstance(cooldown_s, (int, float)) or not cooldown_s > 0:
            raise ValueError(f"cooldown_s must be > 0 seconds, got {cooldown_s!r}")
        self.failure_threshold = failure_threshold
        self.cooldown_s = float(cooldown_s)
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False
        self.trips = 0

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"`` at the current clock."""
        if self.opened_at is None:
            return CLOSED
        if self.probing or self.clock() - self.opened_at >= self.cooldown_s:
            return HALF_OPEN
        return OPEN

    def allow(self) -> bool:
        """May a call go to the dependency now? In half-open, only one probe at a time."""
        if self.opened_at is None:
            return True
        if self.probing or self.clock() - self.opened_at < self.cooldown_s:
            return False
        self.probing = True
        return True

    def record_success(self) -> None:
        """The dependency answered: close the breaker."""
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def record_failure(self, was_probe: bool | None = None) -> None:
        """A call failed: count it; open at the threshold, or again when the probe failed.

        A failure while open is a call sent before the breaker opened, failing
        late: it must not push the cool-down back, or a burst of in-flight
        requests would keep the breaker open long after the first of them
        failed. Only the probe's failure reopens it. ``was_probe`` says whether
        the failed call was the probe (what :attr:`probing` was right after
        :meth:`allow` let it through: while a probe is out no other call is let
        through, so every call sent before it was sent with ``probing`` false);
        ``None``, when the caller cannot tell, counts as the probe.
        """
        self.failures += 1
        if self.opened_at is not None and (not self.probing or was_probe is False):
            return
        if self.probing or self.failures >= self.failure_threshold:
            if self.opened_at is None or self.probing:
                self.trips += 1
            self.opened_at = self.clock()
            self.probing = False

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.state} failures={self.failures} trips={self.trips}>"
