"""The real caches: the policies of :mod:`wtsim.policies` driven on redis-py and SQLAlchemy.

This module is the *real* driver. The decisions (what to write first, what a
failure means, when to populate) live in :mod:`wtsim.policies`; here each
operation a policy yields is performed on a Redis client (redis-py or
fakeredis) and a SQLAlchemy ``Session``. :class:`PolicyCache` is that driver,
once; :class:`WriteThroughCache` and :class:`CacheAside` only name their policy,
and :class:`WriteBehindCache` also gives its write its own signature (a row
to queue, no database writer). Its flusher is :mod:`wtsim.flusher`.

* a ``DbWrite`` runs the writer and commits; on any failure it rolls back, so
  the session stays usable, and the exception goes back to the policy;
* a Redis error becomes :class:`~wtsim.ops.CacheUnavailable` (no answer:
  refused, reset, timed out) or :class:`~wtsim.ops.CacheRejected` (an error
  reply such as OOM), which is all the policy needs to know;
* a ``Wait`` (a reader waiting for another's lease) sleeps.

Usage, with the article's signatures::

    cache = WriteThroughCache(redis_client, default_ttl=3600)
    product = cache.write(db, "products", "p-1", db_writer, serialize, ttl=1800)
    data = cache.read(db, "products", "p-1", db_reader, serialize)
"""

from __future__ import annotations

import logging
import random as _random
import time
import types
from functools import lru_cache
from typing import Any, Callable

import redis
import redis.cluster

from . import scripts
from .breaker import CircuitBreaker
from .codec import encode_tombstone
from .keys import EntityId, entry_key
from .ops import (
    CacheDelete,
    CacheGet,
    CacheLease,
    CachePopulate,
    CachePurge,
    CacheQueueWrite,
    CacheRejected,
    CacheSet,
    CacheSetIfNewer,
    CacheSetLeased,
    CacheTombstone,
    CacheUnavailable,
    DbRead,
    DbWrite,
    Op,
    QueueAnswer,
    Wait,
)
from .policies import Stepper, cache_aside, drive, write_behind, write_through
from .policies.state import CacheState, CacheStats, PolicyConfig, entry_get

log = logging.getLogger("wtsim.cache")

_UNAVAILABLE = (
    redis.exceptions.ConnectionError,  # MaxConnectionsError too
    redis.exceptions.TimeoutError,
    OSError,
    # Redis Cluster: a failover or resharding in progress, or no node reachable.
    redis.exceptions.ClusterDownError,  # CLUSTERDOWN, MASTERDOWN
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,  # SlotNotCoveredError, "cannot be connected", ...
)
"""What makes a cache op :class:`~wtsim.ops.CacheUnavailable`; any other ``RedisError`` is :class:`~wtsim.ops.CacheRejected`."""
REDIS_FAILURES = _UNAVAILABLE + (redis.exceptions.RedisError,)
"""Everything a Redis client raises that :func:`cache_error` turns into a policy's ``CacheError``."""


def cache_error(exc: BaseException) -> CacheUnavailable | CacheRejected:
    """The :class:`~wtsim.ops.CacheError` every driver raises for a Redis client's ``exc`` (one of :data:`REDIS_FAILURES`).

    The policies tell "the cache did not answer" (which trips the breaker) from
    "the cache answered no"; this is the one place where a Redis exception is
    sorted into one or the other.
    """
    kind = CacheUnavailable if isinstance(exc, _UNAVAILABLE) else CacheRejected
    return kind(f"{type(exc).__name__}: {exc}")


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a :class:`redis.cluster.RedisCluster` (or a proxy of one)."""
    return callable(getattr(client, "get_primaries", None))


_memoized_get = lru_cache(maxsize=1 << 16, typed=True)(entry_get)
""":func:`~wtsim.policies.state.entry_get`, remembered: hot keys repeat, and encoding a key and building
its op cost a few µs. Ops are frozen values, so every read of a key can send the same ``CacheGet``.
An unhashable id raises a bare ``TypeError`` here; :meth:`CacheState.get_op` then asks ``entry_key`` why."""


class PolicyCacheBase:
    """What every driver of the cache policies shares, whatever its I/O: the settings, the state, the keys.

    :class:`PolicyCache` (redis-py) and :class:`wtsim.aio.AsyncPolicyCache`
    (``redis.asyncio``) derive from it. The options are documented on
    :class:`PolicyCache`. A driver defines one method per cache op, named as in
    ``_perform_cache`` (``_get``, ``_set``, ...): plain for a synchronous driver,
    coroutines for the asyncio one.
    """

    policy: types.ModuleType = write_through
    """The module of generators this class runs (its ``read``, ``write`` and ``invalidate``)."""

    def __init__(
        self,
        redis_client: redis.Redis | redis.cluster.RedisCluster,
        default_ttl: float | None = 3600,
        *,
        prefix: str = "wtc",
        versioned: bool = False,
        version_field: str = "version",
        leases: bool = False,
        lease_ttl: float = 2.0,
        lease_wait: float = 0.05,
        lease_retries: int = 20,
        early_recompute_beta: float | None = None,
        outage_repair: bool = True,
        breaker: CircuitBreaker | bool = True,
        tombstone_ttl: float = 5.0,
        max_suspects: int = 10_000,
        clock: Callable[[], float] | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        config = PolicyConfig(
            default_ttl=default_ttl,
            prefix=prefix,
            versioned=versioned,
            version_field=version_field,
            outage_repair=outage_repair,
            tombstone_ttl=tombstone_ttl,
            max_suspects=max_suspects,
            leases=leases,
            lease_ttl=lease_ttl,
            lease_wait=lease_wait,
            lease_retries=lease_retries,
            early_recompute_beta=early_recompute_beta,
        )
        entry_key(prefix, "", "")  # validates the prefix
        if breaker is True:
            breaker = CircuitBreaker(clock=clock or time.monotonic)
        elif breaker is False or breaker is None:
            breaker = None
        elif not isinstance(breaker, CircuitBreaker):
            raise TypeError("breaker must be a CircuitBreaker, True or False")
        self.redis = redis_client
        self.cluster = is_cluster(redis_client)
        self.state = CacheState(
            config=config,
            breaker=breaker,
            clock=clock or time.time,
            random=random or _random.Random().random,
            get_of=_memoized_get,
        )
        self._set_if_newer = redis_client.register_script(scripts.SET_IF_NEWER)
        self._tombstone = redis_client.register_script(scripts.TOMBSTONE)
        self._lease = redis_client.register_script(scripts.LEASE)
        self._set_leased = redis_client.register_script(scripts.SET_LEASED)
        self._queue_write = redis_client.register_script(scripts.QUEUE_WRITE)
        self._populate_script = redis_client.register_script(scripts.POPULATE)
        self._perform_cache = {
            CacheGet: self._get,
            CacheSet: self._set,
            CacheSetIfNewer: self._set_newer,
            CacheDelete: self._delete,
            CacheTombstone: self._tombstones,
            CachePurge: self._purge,
            CacheLease: self._take_lease,
            CacheSetLeased: self._populate_leased,
            CacheQueueWrite: self._queue,
            CachePopulate: self._populate,
        }

    @property
    def stats(self) -> CacheStats:
        """Counters: hits, misses, db_reads, db_writes, cache_errors, invalidations, ..."""
        return self.state.stats

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker in front of Redis, if any."""
        return self.state.breaker

    @property
    def config(self) -> PolicyConfig:
        """The policy settings this cache was built with."""
        return self.state.config

    def key(self, namespace: str, entity_id: EntityId) -> str:
        """The Redis key that holds the entry for ``(namespace, entity_id)``."""
        return entry_key(self.state.config.prefix, namespace, entity_id)

    def __repr__(self) -> str:
        c = self.state.config
        return (f"<{type(self).__name__} prefix={c.prefix!r} versioned={c.versioned} "
                f"leases={c.leases} outage_repair={c.outage_repair}>")


class PolicyCache(PolicyCacheBase):
    """A cache in front of the database that runs one pattern's policy; see the subclasses.

    ``versioned=True`` reads an integer version from ``serialize(...)[version_field]``
    and makes every cache update a compare-and-set, so an older value never
    replaces a newer one. ``leases=True`` gives a reader that misses a lease:
    only the holder populates, only while its lease lives, and concurrent
    readers of the missing key wait up to ``lease_retries`` times ``lease_wait``
    seconds for it (see :mod:`wtsim.policies.read_through`). ``early_recompute_beta``
    turns on XFetch's early recompute, drawing from ``random`` (uniform in [0, 1)).
    ``outage_repair=True`` remembers keys the cache could not be told about and
    invalidates them when it answers again. ``breaker`` is a :class:`CircuitBreaker`,
    ``True`` for the default one, or ``False`` to call Redis every time (the
    article's behaviour). ``clock`` dates entries for early recompute (shared by
    every app server: wall time) and runs the default breaker.

    ``redis_client`` may be a :class:`redis.cluster.RedisCluster`: every script
    touches one entry key (one hash slot), invalidating several keys sends one
    script per key, and a namespace purge scans every primary.
    """

    # -- the public API -------------------------------------------------------------------

    def write(
        self,
        db: Any,
        namespace: str,
        entity_id: EntityId,
        db_writer: Callable[[Any], Any],
        serialize: Callable[[Any], dict],
        ttl: float | None = None,
    ) -> Any:
        """Run ``db_writer(db)``, commit, then update the cache; return the writer's value."""
        policy = self.policy.write(self.state, namespace, entity_id, db_writer, serialize, ttl)
        return drive(policy, lambda op: self.perform(op, db))

    def read(
        self,
        db: Any,
        namespace: str,
        entity_id: EntityId,
        db_reader: Callable[[Any], Any],
        serialize: Callable[[Any], dict],
        ttl: float | None = None,
    ) -> dict | None:
        """The entry from the cache, or from ``db_reader(db)`` (then cached); ``None`` if absent."""
        policy = self.policy.read(self.state, namespace, entity_id, db_reader, serialize, ttl)
        return drive(policy, lambda op: self.perform(op, db))

    def invalidate(self, namespace: str, entity_id: EntityId, version: int | None = None) -> bool:
        """Remove the entry (a tombstone in versioned mode); ``True`` when Redis confirmed it."""
        policy = self.policy.invalidate(self.state, namespace, entity_id, version)
        return drive(policy, lambda op: self.perform(op, None))

    def step_write(self, db: Any, namespace: str, entity_id: EntityId, db_writer, serialize, ttl=None) -> Stepper:
        """A :class:`Stepper` over :meth:`write`, to interleave it with another call by hand."""
        policy = self.policy.write(self.state, namespace, entity_id, db_writer, serialize, ttl)
        return Stepper(policy, lambda op: self.perform(op, db))

    def step_read(self, db: Any, namespace: str, entity_id: EntityId, db_reader, serialize, ttl=None) -> Stepper:
        """A :class:`Stepper` over :meth:`read`, to interleave it with another call by hand."""
        policy = self.policy.read(self.state, namespace, entity_id, db_reader, serialize, ttl)
        return Stepper(policy, lambda op: self.perform(op, db))

    # -- the driver -----------------------------------------------------------------------

    def perform(self, op: Op, db: Any) -> Any:
        """Carry out one operation on Redis or on the session ``db``."""
        cache_call = self._perform_cache.get(type(op))
        if cache_call is not None:
            try:
                return cache_call(op)
            except REDIS_FAILURES as exc:
                raise cache_error(exc) from exc
        if type(op) is DbRead:
            return self._db_call(db, op.reader, commit=False)
        if type(op) is DbWrite:
            return self._db_call(db, op.writer, commit=True)
        if type(op) is Wait:
            time.sleep(op.seconds)
            return None
        raise TypeError(f"{type(self).__name__} cannot perform {op!r}")

    @staticmethod
    def _db_call(db: Any, call: Callable[[Any], Any], commit: bool) -> Any:
        try:
            result = call(db)
            if commit:
                db.commit()
            return result
        except BaseException:
            try:
                db.rollback()  # leave the session usable for the caller
            except Exception:
                log.exception("rollback failed after a database error")
            raise

    def _get(self, op: CacheGet) -> bytes | None:
        return self.redis.get(op.key)

    def _set(self, op: CacheSet) -> None:
        self.redis.set(op.key, op.payload, **_expiry(op.ttl_s))

    def _set_newer(self, op: CacheSetIfNewer) -> bool:
        return bool(self._set_if_newer(**set_if_newer_call(op)))

    def _take_lease(self, op: CacheLease) -> bool | bytes:
        return lease_answer(self._lease(**lease_call(op)))

    def _populate_leased(self, op: CacheSetLeased) -> bool:
        return bool(self._set_leased(**set_leased_call(op)))

    def _queue(self, op: CacheQueueWrite) -> QueueAnswer:
        return queue_answer(self._queue_write(**queue_write_call(op)))

    def _populate(self, op: CachePopulate) -> bool:
        return bool(self._populate_script(**populate_call(op)))

    def _delete(self, op: CacheDelete) -> int:
        return self.redis.delete(*op.keys)

    def _tombstones(self, op: CacheTombstone) -> None:
        ttl = _ms(op.ttl_s)
        if len(op.entries) == 1 or self.cluster:
            # On a cluster, one call per key: each lands on its slot's primary (a cluster
            # pipeline refuses EVALSHA, and a script may only touch one slot's keys).
            for key, version in op.entries:
                self._tombstone(**tombstone_call(key, version, ttl))
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for key, version in op.entries:
                self._tombstone(**tombstone_call(key, version, ttl), client=pipe)
            pipe.execute()

    def _purge(self, op: CachePurge) -> int:
        deleted = 0
        batch: list[bytes] = []
        # On a cluster, SCAN every primary; redis-py's UNLINK of a batch then sends one per slot.
        where = {"target_nodes": redis.cluster.RedisCluster.PRIMARIES} if self.cluster else {}
        for key in self.redis.scan_iter(match=op.key_prefix + "*", count=1000, **where):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += self.redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += self.redis.unlink(*batch)
        return deleted

class WriteThroughCache(PolicyCache):
    """Keep Redis in step with the database: write the database first, then the cache.

    The policy is :mod:`wtsim.policies.write_through`; the options are
    :class:`PolicyCache`'s. ``versioned=False, outage_repair=False, breaker=False``
    is the article's algorithm exactly, races included.
    """

    policy = write_through


class CacheAside(PolicyCache):
    """The application's usual cache: write the database, then drop the cached copy; readers fill it.

    The policy is :mod:`wtsim.policies.cache_aside`; the options are
    :class:`PolicyCache`'s.
    """

    policy = cache_aside


class WriteBehindCache(PolicyCache):
    """Write-behind: a write is queued in Redis (entry and stream, one script); a flusher writes the database.

    The policy is :mod:`wtsim.policies.write_behind`. ``stream`` is the Redis
    Stream of queued writes (default ``<prefix>:queue``), which
    :class:`wtsim.WriteBehindFlusher` drains; past ``max_pending`` entries in it
    a write raises :class:`~wtsim.policies.write_behind.WriteQueueFull`.
    ``default_ttl`` is what a populated entry gets; a dirty one has none until
    it is flushed. Versions are always kept (``version_field`` of each row).

    Not on Redis Cluster (a ``TypeError``): a write queues with one script that
    touches the entry key and the stream, which lie in different hash slots, and
    it must stay atomic (a dirty entry without its queued write, or the reverse,
    would lose or resurrect a write). Use one Redis, with replicas if need be.
    """

    policy = write_behind

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        prefix: str = "wtc",
        stream: str | None = None,
        max_pending: int = 100_000,
        default_ttl: float | None = 3600,
        version_field: str = "version",
        breaker: CircuitBreaker | bool = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        check_write_behind(redis_client, max_pending, stream, "WriteBehindCache")
        super().__init__(redis_client, default_ttl, prefix=prefix, versioned=True, version_field=version_field,
                         outage_repair=False, breaker=breaker, clock=clock)
        self.stream = stream if stream is not None else default_stream(prefix)
        self.max_pending = max_pending

    def write(  # type: ignore[override]  # write-behind queues a row; there is no database writer
        self,
        namespace: str,
        entity_id: EntityId,
        data: dict,
        *,
        db: Any = None,
        version_reader: Callable[[Any], int | None] | None = None,
    ) -> int:
        """Queue ``data`` as the new row; return its version. Never waits for the database.

        ``version_reader(db)`` answers the row's version in the database (``None``
        when absent); it runs only when the entry is not cached.
        """
        policy = self._write_policy(namespace, entity_id, data, version_reader)
        return drive(policy, lambda op: self.perform(op, db))

    def step_write(  # type: ignore[override]
        self, namespace: str, entity_id: EntityId, data: dict, *, db: Any = None, version_reader=None
    ) -> Stepper:
        """A :class:`Stepper` over :meth:`write`, to interleave it with another call by hand."""
        policy = self._write_policy(namespace, entity_id, data, version_reader)
        return Stepper(policy, lambda op: self.perform(op, db))

    def invalidate(self, namespace: str, entity_id: EntityId, version: int | None = None) -> bool:
        """Not offered: dropping a dirty entry would lose the read-your-writes view of a queued write."""
        raise TypeError("WriteBehindCache entries are not invalidated: they expire once flushed")

    def pending(self) -> int:
        """How many writes wait in the stream (``XLEN``: the flusher deletes what it applied)."""
        return self.redis.xlen(self.stream)

    def _write_policy(self, namespace, entity_id, data, version_reader):
        return self.policy.write(self.state, namespace, entity_id, data, self.stream, self.max_pending,
                                 version_reader)

    def __repr__(self) -> str:
        return f"<WriteBehindCache prefix={self.config.prefix!r} stream={self.stream!r} max_pending={self.max_pending}>"


CLUSTER_REFUSED = (
    "{what} needs one Redis (a primary, with replicas if need be), not Redis Cluster: a queued write "
    "updates the entry key and the stream in one script, and on a cluster they lie in different hash slots"
)


def check_write_behind(redis_client: Any, max_pending: Any, stream: Any, what: str) -> None:
    """Refuse a cluster client, a ``max_pending`` that is not an integer >= 1, an empty or non-string ``stream``."""
    if is_cluster(redis_client):
        raise TypeError(CLUSTER_REFUSED.format(what=what))
    if isinstance(max_pending, bool) or not isinstance(max_pending, int) or max_pending < 1:
        raise ValueError(f"max_pending must be an integer >= 1, got {max_pending!r}")
    if stream is not None and (not isinstance(stream, str) or not stream):
        raise ValueError(f"stream must be a non-empty string or None for '<prefix>:queue', got {stream!r}")


def default_stream(prefix: str) -> str:
    """The write-behind stream of ``prefix`` when none is named: ``<prefix>:queue``."""
    entry_key(prefix, "", "")  # validates the prefix
    return f"{prefix}:queue"


def _expiry(ttl_s: float | None) -> dict[str, int]:
    """``ex=`` in whole seconds when it is one, else ``px=`` in milliseconds."""
    if ttl_s is None:
        return {}
    if float(ttl_s).is_integer():
        return {"ex": int(ttl_s)}
    return {"px": _ms(ttl_s)}


def _ms(ttl_s: float) -> int:
    """Seconds to whole milliseconds, at least 1 (Redis refuses PX 0)."""
    return max(1, round(ttl_s * 1000))


def _arg(version: int | None) -> str | int:
    return "" if version is None else version


def _ttl_arg(ttl_s: float | None) -> str | int:
    """A script's TTL argument: milliseconds, or ``""`` for no expiry."""
    return "" if ttl_s is None else _ms(ttl_s)


# The keys and arguments of each script call, and the decoding of its answer: shared by
# every driver on Redis (this module and wtsim.aio), so that the mapping is written once.

def set_if_newer_call(op: CacheSetIfNewer) -> dict:
    """``SET_IF_NEWER``'s keys and args for ``op``; the answer is truthy when stored."""
    return {"keys": [op.key], "args": [op.payload, op.version, _ttl_arg(op.ttl_s)]}


def lease_call(op: CacheLease) -> dict:
    """``LEASE``'s keys and args for ``op``; decode the answer with :func:`lease_answer`."""
    return {"keys": [op.key], "args": [op.lease, _ms(op.ttl_s)]}


def lease_answer(answer: Any) -> bool | bytes:
    """``True`` when the lease was granted, else the payload found at the key."""
    return True if answer == 1 else answer


def set_leased_call(op: CacheSetLeased) -> dict:
    """``SET_LEASED``'s keys and args for ``op``; the answer is truthy when stored."""
    return {"keys": [op.key], "args": [op.payload, op.lease, _ttl_arg(op.ttl_s)]}


def queue_write_call(op: CacheQueueWrite) -> dict:
    """``QUEUE_WRITE``'s keys and args for ``op``; decode the answer with :func:`queue_answer`."""
    base = "" if op.base_version is None else op.base_version
    return {"keys": [op.key, op.stream], "args": [op.data_json, base, op.max_pending, op.namespace, op.id_json]}


def queue_answer(answer: Any) -> QueueAnswer:
    """``QUEUE_WRITE``'s ``[first, second]`` as a :class:`~wtsim.ops.QueueAnswer`."""
    first, second = answer
    if first == 0:
        return QueueAnswer(None, pending=second)
    if first == -1:
        return QueueAnswer(None, need_base=True)
    return QueueAnswer(int(first))


def populate_call(op: CachePopulate) -> dict:
    """``POPULATE``'s keys and args for ``op``; the answer is truthy when stored."""
    return {"keys": [op.key], "args": [op.payload, _ttl_arg(op.ttl_s)]}


def tombstone_call(key: str, version: int | None, ttl_ms: int) -> dict:
    """``TOMBSTONE``'s keys and args for one ``(key, version)`` of a :class:`~wtsim.ops.CacheTombstone`."""
    return {"keys": [key], "args": [encode_tombstone(version), _arg(version), ttl_ms]}
