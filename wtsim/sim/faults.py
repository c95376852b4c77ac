"""Faults: what can go wrong, when, and for whom.

A :class:`Fault` is a window of simulated time in which the cache or the
database misbehaves. The driver asks the :class:`FaultModel` about every op it
is about to perform, *at the moment the op is sent*, and charges the answer:

``cache-down``
    The cache's host is up but Redis is not running: every connection is
    refused, so each cache op fails with ``CacheUnavailable`` after about one
    round trip (``cache_rtt_s``) and never reaches the cache. The data is
    retained: when the window ends the cache answers with what it held.
``cache-unreachable``
    The host never answers the connect (down, or packets dropped): each cache
    op fails with ``CacheUnavailable`` after ``cache_connect_timeout_s``. The
    data is retained, as with ``cache-down``.
``cache-hang``
    The cache accepts connections but never answers: every op fails after
    ``cache_timeout_s`` and has no effect. This is the case the breaker is for.
``cache-flush``
    The cache loses everything at ``start_s`` (a restart, a ``FLUSHALL``). With
    an ``end_s`` it is also down until then (restarting: connections are
    refused, as with ``cache-down``), and comes back empty.
``cache-crash``
    The Redis process dies at ``start_s`` (``kill -9``, with no persistence)
    and restarts empty: everything is lost, the write-behind queue with it.
    Until ``end_s`` it is restarting and refuses connections. The cache itself
    behaves as after a ``cache-flush``; the kind says what happened, and what
    it costs a write-behind cache (its unflushed writes, counted in
    ``Result.writes_lost``), while a write-through cache loses no write.
``flusher-down``
    The write-behind flushers stop taking batches (a batch in progress
    finishes) until ``end_s``: the queue grows. ``servers=n`` stops the first
    ``n`` flushers only. Other policies have no flusher: no effect.
``cache-set-fail``
    Like Redis at ``maxmemory``: each op that stores data (``SET``, the
    compare-and-set, a tombstone, a lease or a leased populate) is refused with ``CacheRejected`` after a
    full round trip, with the given probability. Reads and deletes still work.
``cache-slow``
    The round trip takes ``factor`` times longer. When the answer would come
    after ``cache_timeout_s`` the client gives up then (``CacheUnavailable``),
    but the op still lands at the cache half the slow round trip after it was
    sent: a write the client believes failed may have taken effect.
``partition``
    The first ``servers`` app servers cannot reach the cache (as
    ``cache-unreachable`` for them: their packets are dropped); the others can.
``db-down``
    A database op that gets a connection during the window fails at once with
    :class:`~wtsim.sim.world.DatabaseUnavailable`; a write does not commit.

Rules shared by every kind: a window is ``[start_s, end_s)``, and ``end_s=None``
means until the end of the run. ``probability`` is flipped once per affected op
(on the scenario's own fault stream, so runs stay reproducible); a fault with
probability 1 draws no random numbers. ``servers=n`` limits a fault to app
servers ``0 .. n-1``; ``None`` affects them all (the write-behind flushers count
as the app servers after the last one, so only a fault for all reaches them;
``flusher-down`` counts flushers instead). When several faults apply to
one op, unreachable beats refused, refused beats hung, hung beats slow, and a
slow answer can still be a refusal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..ops import (
    CacheLease,
    CachePopulate,
    CacheQueueWrite,
    CacheSet,
    CacheSetIfNewer,
    CacheSetLeased,
    CacheTombstone,
    CacheUnpin,
    StreamAdd,
)

CACHE_DOWN = "cache-down"
CACHE_UNREACHABLE = "cache-unreachable"
CACHE_HANG = "cache-hang"
CACHE_FLUSH = "cache-flush"
CACHE_CRASH = "cache-crash"
FLUSHER_DOWN = "flusher-down"
CACHE_SET_FAIL = "cache-set-fail"
CACHE_SLOW = "cache-slow"
PARTITION = "partition"
DB_DOWN = "db-down"

FAULT_KINDS = (CACHE_DOWN, CACHE_UNREACHABLE, CACHE_HANG, CACHE_FLUSH, CACHE_CRASH, CACHE_SET_FAIL, CACHE_SLOW,
               PARTITION, DB_DOWN, FLUSHER_DOWN)

# What the driver does with a cache op, as decided by :meth:`FaultModel.cache`.
OK = "ok"
UNREACHABLE = "unreachable"  # never reaches the cache; fails after the connect timeout
REFUSED = "refused"  # the connection is refused: fails after one round trip
HUNG = "hung"  # reaches a cache that never answers; fails after the socket timeout
REJECTED = "rejected"  # the cache answers with an error after the round trip

_STORES = (CacheSet, CacheSetIfNewer, CacheTombstone, CacheLease, CacheSetLeased, CacheQueueWrite, CachePopulate,
           CacheUnpin, StreamAdd)
_RESTARTS = (CACHE_FLUSH, CACHE_CRASH)  # the cache loses everything, then refuses until end_s
_GLOBAL_KINDS = _RESTARTS  # the cache itself, not anyone's view of it


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault window: ``kind`` from :data:`FAULT_KINDS`, active in ``[start_s, end_s)``."""

    kind: str
    start_s: float
    end_s: float | None = None
    probability: float = 1.0
    servers: int | None = None
    factor: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}; got {self.kind!r}")
        if not _number(self.start_s) or self.start_s < 0:
            raise ValueError(f"fault start_s must be a number of seconds >= 0, got {self.start_s!r}")
        if self.end_s is not None and (not _number(self.end_s) or self.end_s <= self.start_s):
            raise ValueError(
                f"fault end_s must be a number of seconds > start_s ({self.start_s}) or None, got {self.end_s!r}"
            )
        if not _number(self.probability) or not 0 <= self.probability <= 1:
            raise ValueError(f"fault probability must be in [0, 1], got {self.probability!r}")
        if self.servers is not None and (
            isinstance(self.servers, bool) or not isinstance(self.servers, int) or self.servers < 1
        ):
            raise ValueError(f"fault servers must be an integer >= 1 or None (all), got {self.servers!r}")
        if self.kind == CACHE_SLOW:
            if not _number(self.factor) or not self.factor >= 1:
                raise ValueError(f"a cache-slow fault needs factor >= 1 (the RTT multiplier), got {self.factor!r}")
        elif self.factor is not None:
            raise ValueError(f"factor applies to cache-slow faults only, not {self.kind}")
        if self.kind == PARTITION and self.servers is None:
            raise ValueError("a partition fault needs servers: how many app servers are cut off from the cache")
        if self.kind in _GLOBAL_KINDS and (self.servers is not None or self.probability != 1.0):
            raise ValueError(f"{self.kind} happens to the cache itself: it takes no servers or probability")
        if self.kind == FLUSHER_DOWN and self.probability != 1.0:
            raise ValueError("a flusher-down fault takes no probability: the flushers are down for the window")

    def active(self, now: float) -> bool:
        """Is the window open at ``now``?"""
        return self.start_s <= now and (self.end_s is None or now < self.end_s)

    def to_dict(self) -> dict:
        """The fault as a plain dict, leaving out fields at their defaults (TOML has no null)."""
        out: dict = {"kind": self.kind, "start_s": self.start_s}
        for name in ("end_s", "servers", "factor"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.probability != 1.0:
            out["probability"] = self.probability
        return out


class FaultModel:
    """Decides, op by op, which of the scenario's faults strike; flips the coins."""

    def __init__(self, faults: Iterable[Fault], rng: np.random.Generator) -> None:
        faults = tuple(faults)
        self._rng = rng
        self._cache = [f for f in faults if f.kind not in (DB_DOWN, FLUSHER_DOWN) + _RESTARTS]
        self._cache += [f for f in faults if f.kind in _RESTARTS and f.end_s is not None]
        self._db = [f for f in faults if f.kind == DB_DOWN]
        self._flushers = [f for f in faults if f.kind == FLUSHER_DOWN]
        self.flushes = tuple(f.start_s for f in faults if f.kind in _RESTARTS)
        """When the cache loses everything (a flush or a crash)."""

    def _strikes(self, fault: Fault, server: int, now: float) -> bool:
        if not fault.active(now) or (fault.servers is not None and server >= fault.servers):
            return False
        return fault.probability >= 1.0 or self._rng.random() < fault.probability

    def cache(self, server: int, op: object, now: float) -> tuple[str, float]:
        """``(outcome, rtt_factor)`` for a cache op sent by ``server`` at ``now``."""
        unreachable = refused = hung = rejected = False
        factor = 1.0
        for fault in self._cache:
            kind = fault.kind
            if kind == CACHE_SET_FAIL and not isinstance(op, _STORES):
                continue
            if not self._strikes(fault, server, now):
                continue
            if kind == CACHE_HANG:
                hung = True
            elif kind == CACHE_SLOW:
                factor *= fault.factor  # type: ignore[operator]
            elif kind == CACHE_SET_FAIL:
                rejected = True
            elif kind == CACHE_DOWN or kind in _RESTARTS:  # a restart window refuses too
                refused = True
            else:  # cache-unreachable, partition
                unreachable = True
        if unreachable:
            return UNREACHABLE, 1.0
        if refused:
            return REFUSED, 1.0
        if hung:
            return HUNG, 1.0
        return (REJECTED if rejected else OK), factor

    def flusher_down(self, flusher: int, now: float) -> float | None:
        """Until when flusher ``flusher`` stays down from ``now`` (``inf``: the run's end); ``None``: it is up."""
        until = None
        for fault in self._flushers:
            if fault.active(now) and (fault.servers is None or flusher < fault.servers):
                end = math.inf if fault.end_s is None else fault.end_s
                until = end if until is None else max(until, end)
        return until

    def db_down(self, server: int, now: float) -> bool:
        """Does a database op that ``server`` starts at ``now`` fail?"""
        return any(self._strikes(fault, server, now) for fault in self._db)
