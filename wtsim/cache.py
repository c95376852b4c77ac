"""WriteThroughCache: the write-through policy driven on redis-py and SQLAlchemy.

This module is the *real* driver. The decisions (what to write first, what a
failure means, when to populate) live in :mod:`wtsim.policies.write_through`;
here each operation the policy yields is performed on a Redis client (redis-py
or fakeredis) and a SQLAlchemy ``Session``:

* a ``DbWrite`` runs the writer and commits; on any failure it rolls back, so
  the session stays usable, and the exception goes back to the policy;
* a Redis error becomes :class:`~wtsim.ops.CacheUnavailable` (no answer:
  refused, reset, timed out) or :class:`~wtsim.ops.CacheRejected` (an error
  reply such as OOM), which is all the policy needs to know.

Usage, with the article's signatures::

    cache = WriteThroughCache(redis_client, default_ttl=3600)
    product = cache.write(db, "products", "p-1", db_writer, serialize, ttl=1800)
    data = cache.read(db, "products", "p-1", db_reader, serialize)
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import redis

from . import scripts
from .breaker import CircuitBreaker
from .keys import EntityId, entry_key
from .ops import (
    CacheDelete,
    CacheGet,
    CachePurge,
    CacheRejected,
    CacheSet,
    CacheSetIfNewer,
    CacheTombstone,
    CacheUnavailable,
    DbRead,
    DbWrite,
    Op,
)
from .codec import encode_tombstone
from .policies import Stepper, drive, write_through
from .policies.state import CacheState, CacheStats, PolicyConfig

log = logging.getLogger("wtsim.cache")

_UNAVAILABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


class WriteThroughCache:
    """Keep Redis in step with the database: write the database first, then the cache.

    ``versioned=True`` reads an integer version from ``serialize(...)[version_field]``
    and makes every cache update a compare-and-set, so an older value never
    replaces a newer one. ``outage_repair=True`` remembers keys the cache could
    not be told about and invalidates them when it answers again. ``breaker``
    is a :class:`CircuitBreaker`, ``True`` for the default one, or ``False`` to
    call Redis every time (the article's behaviour).
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        default_ttl: float | None = 3600,
        *,
        prefix: str = "wtc",
        versioned: bool = False,
        version_field: str = "version",
        outage_repair: bool = True,
        breaker: CircuitBreaker | bool = True,
        tombstone_ttl: float = 5.0,
        max_suspects: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        config = PolicyConfig(
            default_ttl=default_ttl,
            prefix=prefix,
            versioned=versioned,
            version_field=version_field,
            outage_repair=outage_repair,
            tombstone_ttl=tombstone_ttl,
            max_suspects=max_suspects,
        )
        entry_key(prefix, "", "")  # validates the prefix
        if breaker is True:
            breaker = CircuitBreaker(clock=clock)
        elif breaker is False or breaker is None:
            breaker = None
        elif not isinstance(breaker, CircuitBreaker):
            raise TypeError("breaker must be a CircuitBreaker, True or False")
        self.redis = redis_client
        self.state = CacheState(config=config, breaker=breaker)
        self._set_if_newer = redis_client.register_script(scripts.SET_IF_NEWER)
        self._tombstone = redis_client.register_script(scripts.TOMBSTONE)
        self._perform_cache = {
            CacheGet: self._get,
            CacheSet: self._set,
            CacheSetIfNewer: self._set_newer,
            CacheDelete: self._delete,
            CacheTombstone: self._tombstones,
            CachePurge: self._purge,
        }

    # -- the public API -------------------------------------------------------------------

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
        policy = write_through.write(self.state, namespace, entity_id, db_writer, serialize, ttl)
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
        policy = write_through.read(self.state, namespace, entity_id, db_reader, serialize, ttl)
        return drive(policy, lambda op: self.perform(op, db))

    def invalidate(self, namespace: str, entity_id: EntityId, version: int | None = None) -> bool:
        """Remove the entry (a tombstone in versioned mode); ``True`` when Redis confirmed it."""
        policy = write_through.invalidate(self.state, namespace, entity_id, version)
        return drive(policy, lambda op: self.perform(op, None))

    def step_write(self, db: Any, namespace: str, entity_id: EntityId, db_writer, serialize, ttl=None) -> Stepper:
        """A :class:`Stepper` over :meth:`write`, to interleave it with another call by hand."""
        policy = write_through.write(self.state, namespace, entity_id, db_writer, serialize, ttl)
        return Stepper(policy, lambda op: self.perform(op, db))

    def step_read(self, db: Any, namespace: str, entity_id: EntityId, db_reader, serialize, ttl=None) -> Stepper:
        """A :class:`Stepper` over :meth:`read`, to interleave it with another call by hand."""
        policy = write_through.read(self.state, namespace, entity_id, db_reader, serialize, ttl)
        return Stepper(policy, lambda op: self.perform(op, db))

    # -- the driver -----------------------------------------------------------------------

    def perform(self, op: Op, db: Any) -> Any:
        """Carry out one operation on Redis or on the session ``db``."""
        cache_call = self._perform_cache.get(type(op))
        if cache_call is not None:
            try:
                return cache_call(op)
            except _UNAVAILABLE as exc:
                raise CacheUnavailable(f"{type(exc).__name__}: {exc}") from exc
            except redis.exceptions.RedisError as exc:
                raise CacheRejected(f"{type(exc).__name__}: {exc}") from exc
        if type(op) is DbRead:
            return self._db_call(db, op.reader, commit=False)
        if type(op) is DbWrite:
            return self._db_call(db, op.writer, commit=True)
        raise TypeError(f"WriteThroughCache cannot perform {op!r}")

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
        ttl = "" if op.ttl_s is None else _ms(op.ttl_s)
        return bool(self._set_if_newer(keys=[op.key], args=[op.payload, op.version, ttl]))

    def _delete(self, op: CacheDelete) -> int:
        return self.redis.delete(*op.keys)

    def _tombstones(self, op: CacheTombstone) -> None:
        ttl = _ms(op.ttl_s)
        if len(op.entries) == 1:
            key, version = op.entries[0]
            self._tombstone(keys=[key], args=[encode_tombstone(version), _arg(version), ttl])
            return
        with self.redis.pipeline(transaction=False) as pipe:
            for key, version in op.entries:
                self._tombstone(keys=[key], args=[encode_tombstone(version), _arg(version), ttl], client=pipe)
            pipe.execute()

    def _purge(self, op: CachePurge) -> int:
        deleted = 0
        batch: list[bytes] = []
        for key in self.redis.scan_iter(match=op.key_prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += self.redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += self.redis.unlink(*batch)
        return deleted

    def __repr__(self) -> str:
        c = self.state.config
        return f"<WriteThroughCache prefix={c.prefix!r} versioned={c.versioned} outage_repair={c.outage_repair}>"


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
