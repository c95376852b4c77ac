"""The asyncio driver: the same policies, performed on ``redis.asyncio`` and SQLAlchemy's ``AsyncSession``.

The third world of the same code. The decisions live in :mod:`wtsim.policies`
(as for :mod:`wtsim.cache` and the simulator); here :func:`adrive` runs a
policy, awaiting each op, and :class:`AsyncPolicyCache` performs the ops:

* a cache op is the redis-py command or Lua script of :class:`wtsim.PolicyCache`,
  awaited (the arguments and the decoding of the answers are :mod:`wtsim.cache`'s
  helpers), and its failure becomes :class:`~wtsim.ops.CacheUnavailable` or
  :class:`~wtsim.ops.CacheRejected` exactly as there;
* a ``DbRead`` is ``await session.run_sync(reader)``, so readers and writers
  stay plain functions of a synchronous ``Session``; a ``DbWrite`` runs the
  writer the same way, then ``await session.commit()``, and rolls back on any
  failure;
* a ``Wait`` is ``await asyncio.sleep``.

What it is for: many concurrent clients in one process (a load runner, an
asyncio web app), each awaiting its own Redis round trip and query. Usage::

    redis = async_redis_client("redis://127.0.0.1:6379/0")
    engine = make_async_engine("sqlite+aiosqlite:///shop.db")    # or postgresql+psycopg://...
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    cache = AsyncWriteThroughCache(redis, default_ttl=3600)
    async with sessions() as db:
        product = await cache.write(db, "products", "p-1", db_writer, serialize)
        data = await cache.read(db, "products", "p-1", db_reader, serialize)

Sessions must not expire on commit: a policy serializes the writer's result
after the commit, outside the session's greenlet, where an expired attribute
could not be loaded. Redis Cluster is not supported by this driver (yet).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, Awaitable, Callable

import redis
import redis.asyncio
import redis.cluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from .cache import (
    REDIS_FAILURES,
    PolicyCacheBase,
    _expiry,
    _ms,
    cache_error,
    check_write_behind,
    default_stream,
    is_cluster,
    lease_answer,
    lease_call,
    populate_call,
    queue_answer,
    queue_write_call,
    set_if_newer_call,
    set_leased_call,
    tombstone_call,
)
from .connections import driver_info, sqlite_pragmas
from .keys import EntityId
from .ops import (
    CacheDelete,
    CacheGet,
    CacheLease,
    CachePopulate,
    CachePurge,
    CacheQueueWrite,
    CacheSet,
    CacheSetIfNewer,
    CacheSetLeased,
    CacheTombstone,
    DbRead,
    DbWrite,
    Op,
    QueueAnswer,
    Wait,
)
from .policies import resume
from .policies import cache_aside, write_behind, write_through
from .policies.guarded import Policy

log = logging.getLogger("wtsim.aio")

__all__ = [
    "AsyncCacheAside",
    "AsyncPolicyCache",
    "AsyncWriteBehindCache",
    "AsyncWriteThroughCache",
    "adrive",
    "async_database_url",
    "async_redis_client",
    "make_async_engine",
]


async def adrive(policy: Policy, perform: Callable[[Op], Awaitable[Any]]) -> Any:
    """Run ``policy`` to the end, awaiting ``perform(op)`` for each op; return its value.

    The twin of :func:`wtsim.policies.drive`, on the same :func:`~wtsim.policies.resume`.
    A cancellation (``BaseException``) is not thrown into the policy: it propagates.
    """
    done, value = resume(policy)
    while not done:
        try:
            outcome, failure = await perform(value), None
        except Exception as exc:  # the policy decides what a failure means
            outcome, failure = None, exc
        done, value = resume(policy, outcome, failure)
    return value


def async_redis_client(
    url: str | None = None, *, socket_timeout: float = 0.25, connect_timeout: float = 0.25, **kwargs: Any
) -> redis.asyncio.Redis:
    """A ``redis.asyncio`` client with fail-fast timeouts and no retries, as :func:`wtsim.redis_client`.

    ``url=None`` gives an embedded ``fakeredis.FakeAsyncRedis`` (Lua scripts included).
    """
    if url is None:
        import fakeredis

        return fakeredis.FakeAsyncRedis(**kwargs)
    schemes = ("redis://", "rediss://", "unix://")
    if not url.startswith(schemes):
        raise ValueError(f"redis url must start with {', '.join(schemes)}, got {url!r}")
    for name, value in (("socket_timeout", socket_timeout), ("connect_timeout", connect_timeout)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        **driver_info(kwargs),
    )


ASYNC_DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+psycopg"}
"""The asyncio driver this module uses for each database (``aiosqlite``: the ``async`` extra)."""


def async_database_url(url: str) -> str:
    """``url`` with its database's asyncio driver: ``sqlite://...`` -> ``sqlite+aiosqlite://...``.

    An URL that already names a driver is returned unchanged.
    """
    parsed = make_url(url)
    if "+" in parsed.drivername:
        return url
    if parsed.drivername not in ASYNC_DRIVERS:
        raise ValueError(f"no asyncio driver known for {parsed.drivername!r}; name one, e.g. 'mysql+aiomysql://'")
    return parsed.set(drivername=ASYNC_DRIVERS[parsed.drivername]).render_as_string(hide_password=False)


def make_async_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An asyncio engine for ``url`` (e.g. ``sqlite+aiosqlite:///x.db``); SQLite gets WAL and a busy timeout."""
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        database = make_url(url).database
        sqlite_pragmas(engine.sync_engine, in_memory=database in (None, "", ":memory:"))
    return engine


def _check_session(db: Any, *, commits: bool) -> None:
    """Refuse what is not an ``AsyncSession``, and one that expires on commit where a write commits."""
    if not isinstance(db, AsyncSession):
        raise TypeError(f"the asyncio caches need an sqlalchemy.ext.asyncio.AsyncSession, got {type(db).__name__}")
    if commits and db.sync_session.expire_on_commit:
        raise ValueError(
            "the AsyncSession expires on commit: build it with expire_on_commit=False "
            "(e.g. async_sessionmaker(engine, expire_on_commit=False)); the policy serializes "
            "the writer's result after the commit, where an expired attribute cannot be loaded"
        )


class AsyncPolicyCache(PolicyCacheBase):
    """:class:`wtsim.PolicyCache` on asyncio: the same options and policies; ``read``, ``write``, ``invalidate`` are coroutines.

    ``redis_client`` is a ``redis.asyncio.Redis`` (or ``fakeredis.FakeAsyncRedis``),
    not a cluster client. ``db`` is an ``AsyncSession`` built with
    ``expire_on_commit=False``. The circuit breaker, the suspects and the stats
    are :class:`~wtsim.policies.state.CacheState`'s, as in the synchronous driver;
    one cache may serve many concurrent tasks of one event loop.
    """

    def __init__(self, redis_client: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(redis_client, (redis.Redis, redis.cluster.RedisCluster)):
            raise TypeError(f"{type(self).__name__} needs a redis.asyncio client, got the synchronous "
                            f"{type(redis_client).__name__}; use wtsim.aio.async_redis_client")
        if is_cluster(redis_client):
            raise TypeError(f"{type(self).__name__} does not run on Redis Cluster yet; use one Redis")
        super().__init__(redis_client, *args, **kwargs)

    __init__.__signature__ = inspect.signature(PolicyCacheBase.__init__)  # type: ignore[attr-defined]

    # -- the public API -------------------------------------------------------------------

    async def write(
        self,
        db: AsyncSession,
        namespace: str,
        entity_id: EntityId,
        db_writer: Callable[[Any], Any],
        serialize: Callable[[Any], dict],
        ttl: float | None = None,
    ) -> Any:
        """Run ``db_writer(session)``, commit, then update the cache; return the writer's value."""
        _check_session(db, commits=True)
        policy = self.policy.write(self.state, namespace, entity_id, db_writer, serialize, ttl)
        return await adrive(policy, lambda op: self.perform(op, db))

    async def read(
        self,
        db: AsyncSession,
        namespace: str,
        entity_id: EntityId,
        db_reader: Callable[[Any], Any],
        serialize: Callable[[Any], dict],
        ttl: float | None = None,
    ) -> dict | None:
        """The entry from the cache, or from ``db_reader(session)`` (then cached); ``None`` if absent."""
        _check_session(db, commits=False)
        policy = self.policy.read(self.state, namespace, entity_id, db_reader, serialize, ttl)
        return await adrive(policy, lambda op: self.perform(op, db))

    async def invalidate(self, namespace: str, entity_id: EntityId, version: int | None = None) -> bool:
        """Remove the entry (a tombstone in versioned mode); ``True`` when Redis confirmed it."""
        policy = self.policy.invalidate(self.state, namespace, entity_id, version)
        return await adrive(policy, lambda op: self.perform(op, None))

    # -- the driver -----------------------------------------------------------------------

    async def perform(self, op: Op, db: AsyncSession | None) -> Any:
        """Carry out one operation on Redis or on the session ``db``."""
        cache_call = self._perform_cache.get(type(op))
        if cache_call is not None:
            try:
                return await cache_call(op)
            except REDIS_FAILURES as exc:
                raise cache_error(exc) from exc
        if type(op) is DbRead:
            return await self._db_call(db, op.reader, commit=False)
        if type(op) is DbWrite:
            return await self._db_call(db, op.writer, commit=True)
        if type(op) is Wait:
            await asyncio.sleep(op.seconds)
            return None
        raise TypeError(f"{type(self).__name__} cannot perform {op!r}")

    @staticmethod
    async def _db_call(db: AsyncSession, call: Callable[[Any], Any], commit: bool) -> Any:
        try:
            result = await db.run_sync(call)
            if commit:
                await db.commit()
            return result
        except BaseException:
            try:
                await db.rollback()  # leave the session usable for the caller
            except Exception:
                log.exception("rollback failed after a database error")
            raise

    async def _get(self, op: CacheGet) -> bytes | None:
        return await self.redis.get(op.key)

    async def _set(self, op: CacheSet) -> None:
        await self.redis.set(op.key, op.payload, **_expiry(op.ttl_s))

    async def _set_newer(self, op: CacheSetIfNewer) -> bool:
        return bool(await self._set_if_newer(**set_if_newer_call(op)))

    async def _take_lease(self, op: CacheLease) -> bool | bytes:
        return lease_answer(await self._lease(**lease_call(op)))

    async def _populate_leased(self, op: CacheSetLeased) -> bool:
        return bool(await self._set_leased(**set_leased_call(op)))

    async def _queue(self, op: CacheQueueWrite) -> QueueAnswer:
        return queue_answer(await self._queue_write(**queue_write_call(op)))

    async def _populate(self, op: CachePopulate) -> bool:
        return bool(await self._populate_script(**populate_call(op)))

    async def _delete(self, op: CacheDelete) -> int:
        return await self.redis.delete(*op.keys)

    async def _tombstones(self, op: CacheTombstone) -> None:
        ttl = _ms(op.ttl_s)
        if len(op.entries) == 1:
            key, version = op.entries[0]
            await self._tombstone(**tombstone_call(key, version, ttl))
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for key, version in op.entries:
                await self._tombstone(**tombstone_call(key, version, ttl), client=pipe)
            await pipe.execute()

    async def _purge(self, op: CachePurge) -> int:
        deleted = 0
        batch: list[bytes] = []
        async for key in self.redis.scan_iter(match=op.key_prefix + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await self.redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self.redis.unlink(*batch)
        return deleted


class AsyncWriteThroughCache(AsyncPolicyCache):
    """:class:`wtsim.WriteThroughCache` on asyncio: write the database first, then the cache.

    The policy is :mod:`wtsim.policies.write_through`; the options are :class:`wtsim.PolicyCache`'s.
    """

    policy = write_through


class AsyncCacheAside(AsyncPolicyCache):
    """:class:`wtsim.CacheAside` on asyncio: write the database, then drop the cached copy; readers fill it.

    The policy is :mod:`wtsim.policies.cache_aside`; the options are :class:`wtsim.PolicyCache`'s.
    """

    policy = cache_aside


class AsyncWriteBehindCache(AsyncPolicyCache):
    """:class:`wtsim.WriteBehindCache` on asyncio: a write is queued in Redis; a flusher writes the database.

    The policy is :mod:`wtsim.policies.write_behind`; the options are
    :class:`wtsim.WriteBehindCache`'s. The flusher stays the synchronous
    :class:`wtsim.WriteBehindFlusher` (one process per stream, no concurrency to gain).
    """

    policy = write_behind

    def __init__(
        self,
        redis_client: Any,
        *,
        prefix: str = "wtc",
        stream: str | None = None,
        max_pending: int = 100_000,
        default_ttl: float | None = 3600,
        version_field: str = "version",
        breaker: Any = True,
        clock: Callable[[], float] | None = None,
    ) -> None:
        check_write_behind(redis_client, max_pending, stream, type(self).__name__)
        super().__init__(redis_client, default_ttl, prefix=prefix, versioned=True, version_field=version_field,
                         outage_repair=False, breaker=breaker, clock=clock)
        self.stream = stream if stream is not None else default_stream(prefix)
        self.max_pending = max_pending

    async def write(  # type: ignore[override]  # write-behind queues a row; there is no database writer
        self,
        namespace: str,
        entity_id: EntityId,
        data: dict,
        *,
        db: AsyncSession | None = None,
        version_reader: Callable[[Any], int | None] | None = None,
    ) -> int:
        """Queue ``data`` as the new row; return its version. Never waits for the database.

        ``version_reader(session)`` answers the row's version in the database
        (``None`` when absent); it runs only when the entry is not cached.
        """
        if db is not None:
            _check_session(db, commits=False)
        policy = self.policy.write(self.state, namespace, entity_id, data, self.stream, self.max_pending,
                                   version_reader)
        return await adrive(policy, lambda op: self.perform(op, db))

    def invalidate(self, namespace: str, entity_id: EntityId, version: int | None = None) -> bool:
        """Not offered: dropping a dirty entry would lose the read-your-writes view of a queued write."""
        raise TypeError("AsyncWriteBehindCache entries are not invalidated: they expire once flushed")

    async def pending(self) -> int:
        """How many writes wait in the stream (``XLEN``: the flusher deletes what it applied)."""
        return await self.redis.xlen(self.stream)

    def __repr__(self) -> str:
        return (f"<AsyncWriteBehindCache prefix={self.config.prefix!r} stream={self.stream!r} "
                f"max_pending={self.max_pending}>")
