"""The operation vocabulary: what a caching policy asks its driver to do.

A policy never touches a socket, a session or a clock. It *yields* one of these
small frozen objects, and the driver that runs it performs the operation and
sends the result back (or throws the failure in at the ``yield``):

* the real driver (:class:`wtsim.WriteThroughCache`) performs them on redis-py
  and a SQLAlchemy ``Session``;
* the simulated driver (:mod:`wtsim.sim.driver`) charges round trips and
  service times in SimPy and applies them to an in-memory world.

Rules of this module:

* Ops are data: frozen, slotted, compared by value, no behaviour.
* Ops are coarse. A :class:`DbWrite` is a whole transaction (the writer, then
  the commit, or a rollback when either fails).
* Cache failures reach the policy as :class:`CacheError` subclasses, so a
  policy can tell "the cache did not answer" (:class:`CacheUnavailable`, which
  trips the circuit breaker) from "the cache answered no"
  (:class:`CacheRejected`, e.g. Redis out of memory). Database failures reach it
  as whatever the database raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


class CacheError(Exception):
    """A cache operation failed; the database is not affected."""


class CacheUnavailable(CacheError):
    """The cache did not answer: connection refused, reset or timed out."""


class CacheRejected(CacheError):
    """The cache answered with an error, e.g. OOM when ``maxmemory`` is reached."""


@dataclass(frozen=True, slots=True)
class CacheGet:
    """Fetch the raw payload at ``key``; the answer is ``bytes`` or ``None``."""

    key: str


@dataclass(frozen=True, slots=True)
class CacheSet:
    """Store ``payload`` at ``key`` for ``ttl_s`` seconds, or forever when ``None`` (``SET ... EX``).

    Last writer wins: this is the article's update, races included.
    """

    key: str
    payload: Any
    ttl_s: float | None


@dataclass(frozen=True, slots=True)
class CacheSetIfNewer:
    """Store ``payload`` unless the entry or tombstone at ``key`` has a newer version.

    Performed atomically at the cache (one Lua script in Redis); the answer is
    ``True`` when stored, ``False`` when refused as older.
    """

    key: str
    payload: Any
    version: int
    ttl_s: float | None


@dataclass(frozen=True, slots=True)
class CacheDelete:
    """Delete ``keys``; the answer is how many existed."""

    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CacheTombstone:
    """Replace each ``(key, version)`` entry by a tombstone that lives ``ttl_s`` seconds.

    A tombstone refuses a later :class:`CacheSetIfNewer` of an older version, so
    a slow reader cannot re-populate what was just invalidated. A version of
    ``None`` (unknown) refuses every set until the tombstone expires. An entry
    that is already newer than ``version`` is kept.
    """

    entries: tuple[tuple[str, int | None], ...]
    ttl_s: float


@dataclass(frozen=True, slots=True)
class CachePurge:
    """Delete every key that starts with ``key_prefix`` (a whole namespace).

    Used when the memory of keys to repair overflows its bound.
    """

    key_prefix: str


@dataclass(frozen=True, slots=True)
class CacheLease:
    """Ask for the lease on a missing entry: store ``lease`` at ``key`` for ``ttl_s`` unless a value is there.

    Performed atomically at the cache (one Lua script). The answer is ``True``
    when the lease was granted, else the payload at ``key``: a value (a hit
    after all) or another reader's lease. A tombstone gives way to the lease,
    since in lease mode only a lease holder may populate.
    """

    key: str
    lease: Any
    ttl_s: float


@dataclass(frozen=True, slots=True)
class CacheSetLeased:
    """Store ``payload`` at ``key`` only if ``lease`` is still there; the answer is ``True`` when stored.

    A write, an invalidation, a flush or a restart replaced or removed the
    lease in the meantime: then the populate is refused, since what the reader
    read may already be stale.
    """

    key: str
    payload: Any
    lease: Any
    ttl_s: float | None


@dataclass(frozen=True, slots=True)
class Wait:
    """Let ``seconds`` pass (a reader waiting for another's lease); the answer is ``None``.

    The real driver sleeps; the simulator charges simulated time. A policy
    never sleeps itself.
    """

    seconds: float


@dataclass(frozen=True, slots=True)
class DbRead:
    """Run ``reader(db)`` and answer what it returns (``None``: no such row)."""

    reader: Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class DbWrite:
    """Run ``writer(db)`` and commit; answer what the writer returned.

    When the writer or the commit raises, the driver rolls back and the
    exception reaches the policy unchanged.
    """

    writer: Callable[[Any], Any]


CacheOp = CacheGet | CacheSet | CacheSetIfNewer | CacheDelete | CacheTombstone | CachePurge | CacheLease | CacheSetLeased
DbOp = DbRead | DbWrite
Op = CacheOp | DbOp | Wait
