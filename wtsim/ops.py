"""The operation vocabulary: what a caching policy asks its driver to do.

A policy never touches a socket, a session or a clock. It *yields* one of these
small frozen objects, and the driver that runs it performs the operation and
sends the result back (or throws the failure in at the ``yield``):

* the real drivers (:class:`wtsim.WriteThroughCache` and its siblings, and
  :class:`wtsim.WriteBehindFlusher`) perform them on redis-py and SQLAlchemy;
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
class CacheQueueWrite:
    """Write-behind: store a dirty entry at ``key`` and append it to ``stream``, atomically (one Lua script).

    ``data_json`` is the row as JSON. The new version is one more than the
    entry's; when no entry is there, one more than ``base_version``, or, when
    that is ``None``, nothing is written and the answer asks for it. The answer
    is :class:`QueueAnswer`. Refused, writing nothing, while ``stream`` already
    holds ``max_pending`` entries.
    """

    key: str
    stream: str
    namespace: str
    id_json: str
    data_json: str
    base_version: int | None
    max_pending: int


@dataclass(frozen=True, slots=True)
class QueueAnswer:
    """What a :class:`CacheQueueWrite` answered: ``version`` assigned (``None``: not written).

    ``need_base``: no entry was cached and no base version was given;
    ``pending``: how many entries the stream held when refused as full.
    """

    version: int | None
    need_base: bool = False
    pending: int | None = None


@dataclass(frozen=True, slots=True)
class CachePopulate:
    """Store ``payload`` at ``key`` for ``ttl_s`` unless a value (dirty or clean) is there; ``True`` when stored.

    The write-behind populate: a tombstone, a lease or a foreign payload gives
    way, a value never does, so a reader cannot replace a write still queued.
    """

    key: str
    payload: Any
    ttl_s: float | None


@dataclass(frozen=True, slots=True)
class CacheUnpin:
    """For each ``(key, dirty, clean)``: if ``dirty`` is still there byte for byte, store ``clean`` for ``ttl_s``.

    The flusher's compare-and-set once a version is committed: the entry may
    now expire; a newer dirty write stays pinned. The answer is how many were
    replaced.
    """

    entries: tuple[tuple[str, str, str], ...]
    ttl_s: float | None


@dataclass(frozen=True, slots=True)
class StreamCreateGroup:
    """Create consumer ``group`` on ``stream`` (and the stream), unless it exists; the answer is ``None``."""

    stream: str
    group: str


@dataclass(frozen=True, slots=True)
class StreamRead:
    """Read up to ``count`` entries for ``consumer`` of ``group`` (``XREADGROUP``).

    ``pending=True`` re-reads the entries this consumer was given and never
    acknowledged (id ``0``); otherwise new ones (id ``>``), blocking up to
    ``block_s`` for the first. The answer is a list of ``(entry_id, fields)``,
    both as ``str``.
    """

    stream: str
    group: str
    consumer: str
    count: int
    pending: bool = False
    block_s: float | None = None


@dataclass(frozen=True, slots=True)
class StreamClaim:
    """Take over up to ``count`` entries pending longer than ``min_idle_s`` for any consumer (``XAUTOCLAIM``).

    The answer is a list of ``(entry_id, fields)``, as :class:`StreamRead`'s.
    """

    stream: str
    group: str
    consumer: str
    min_idle_s: float
    count: int


@dataclass(frozen=True, slots=True)
class StreamAck:
    """Acknowledge ``ids`` in ``group`` and delete them from ``stream`` (``XACK`` + ``XDEL``, one transaction).

    Deleting keeps ``XLEN`` equal to what is still to flush. The answer is how
    many were acknowledged.
    """

    stream: str
    group: str
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StreamAdd:
    """Append ``fields`` to ``stream`` (``XADD``); the answer is the new entry's id."""

    stream: str
    fields: tuple[tuple[str, str], ...]


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
    exception reaches the policy unchanged. ``rows`` says how many rows the
    writer writes (a flusher's batch): the simulator charges the commit once
    and each further row a little (``db_write_row_s``); the real drivers
    ignore it.
    """

    writer: Callable[[Any], Any]
    rows: int = 1


CacheOp = (CacheGet | CacheSet | CacheSetIfNewer | CacheDelete | CacheTombstone | CachePurge | CacheLease
           | CacheSetLeased | CacheQueueWrite | CachePopulate | CacheUnpin)
StreamOp = StreamCreateGroup | StreamRead | StreamClaim | StreamAck | StreamAdd
DbOp = DbRead | DbWrite
Op = CacheOp | StreamOp | DbOp | Wait
