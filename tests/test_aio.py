"""What the asyncio driver adds to the contract suites (which run over it too): its classes, its refusals,
many concurrent readers on one event loop, write-behind, and the loop shared with ``drive``.

On the embedded fakeredis (``FakeAsyncRedis``) and aiosqlite; each test runs its own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio

import fakeredis
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

import wtsim
from wtsim import CacheAside, PolicyCache, WriteThroughCache, drive, make_engine
from wtsim.aio import (
    AsyncCacheAside,
    AsyncPolicyCache,
    AsyncWriteBehindCache,
    AsyncWriteThroughCache,
    adrive,
    async_database_url,
    async_redis_client,
    make_async_engine,
)
from wtsim.cache import PolicyCacheBase
from wtsim.models import Product, load_catalog, product_dict
from wtsim.ops import CacheGet, CacheUnavailable, DbRead

NS, PID = "products", "p-1"


def read_product(session: Session):
    return session.get(Product, PID)


def set_stock(stock: int):
    def writer(session: Session) -> Product:
        product = session.get(Product, PID)
        product.stock = stock
        return product

    return writer


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A SQLite file loaded with the sample catalog (its synchronous URL)."""
    url = f"sqlite:///{tmp_path / 'aio.db'}"
    engine = make_engine(url)
    load_catalog(engine)
    engine.dispose()
    return url


def run_with_sessions(url: str, body, **session_options):
    """``asyncio.run(body(sessions))`` with an async_sessionmaker on ``url``; the engine is disposed after."""
    session_options.setdefault("expire_on_commit", False)

    async def main():
        engine = make_async_engine(async_database_url(url))
        try:
            return await body(async_sessionmaker(engine, **session_options))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def test_each_async_class_names_the_policy_of_its_sync_twin():
    """AsyncWriteThroughCache, AsyncCacheAside and AsyncWriteBehindCache run their sync twins' policy modules."""
    redis = fakeredis.FakeAsyncRedis()
    pairs = [(AsyncWriteThroughCache, WriteThroughCache), (AsyncCacheAside, CacheAside),
             (AsyncWriteBehindCache, wtsim.WriteBehindCache)]
    for async_cls, sync_cls in pairs:
        cache = async_cls(redis)
        assert cache.policy is sync_cls.policy
        assert isinstance(cache, AsyncPolicyCache) and isinstance(cache, PolicyCacheBase)
        assert not isinstance(cache, PolicyCache)  # its read and write are coroutines
        assert repr(cache).startswith(f"<{async_cls.__name__} ")
        assert asyncio.iscoroutinefunction(async_cls.read) and asyncio.iscoroutinefunction(async_cls.write)
    assert wtsim.AsyncWriteThroughCache is AsyncWriteThroughCache  # exported, imported on first use


def test_same_options_as_the_sync_caches():
    """The constructor takes PolicyCache's options and validates them the same way."""
    redis = fakeredis.FakeAsyncRedis()
    cache = AsyncWriteThroughCache(redis, 60, prefix="shop", versioned=True, leases=True, breaker=False)
    assert cache.config.default_ttl == 60 and cache.config.versioned and cache.config.leases
    assert cache.breaker is None and cache.key(NS, PID) == WriteThroughCache(fakeredis.FakeRedis(),
                                                                             prefix="shop").key(NS, PID)
    with pytest.raises(TypeError, match="breaker"):
        AsyncWriteThroughCache(redis, breaker="yes")
    with pytest.raises(ValueError, match="max_pending"):
        AsyncWriteBehindCache(redis, max_pending=0)
    with pytest.raises(TypeError, match="unexpected keyword"):
        AsyncCacheAside(redis, versoined=True)


def test_refuses_a_synchronous_or_cluster_client():
    """A redis-py (sync) client or a cluster client is a TypeError saying what to use instead."""
    with pytest.raises(TypeError, match="needs a redis.asyncio client.*async_redis_client"):
        AsyncWriteThroughCache(fakeredis.FakeRedis())

    class ClusterLike:
        def get_primaries(self):
            return []

    with pytest.raises(TypeError, match="Redis Cluster"):
        AsyncCacheAside(ClusterLike())
    with pytest.raises(TypeError, match="Redis Cluster"):
        AsyncWriteBehindCache(ClusterLike())


def test_refuses_a_synchronous_session_and_one_that_expires_on_commit(sqlite_url):
    """A plain Session is a TypeError; a write on an AsyncSession that expires on commit is a ValueError, before
    anything is written (a read on it is fine)."""
    cache = AsyncWriteThroughCache(fakeredis.FakeAsyncRedis())

    async def body(sessions):
        with Session(make_engine(sqlite_url)) as sync_db:
            with pytest.raises(TypeError, match="AsyncSession"):
                await cache.read(sync_db, NS, PID, read_product, product_dict)
        async with sessions() as db:
            with pytest.raises(ValueError, match="expire_on_commit=False"):
                await cache.write(db, NS, PID, set_stock(5), product_dict)
            assert cache.stats.db_writes == 0
            assert (await cache.read(db, NS, PID, read_product, product_dict))["id"] == PID

    run_with_sessions(sqlite_url, body, expire_on_commit=True)


def test_concurrent_readers_of_a_missing_key_share_one_database_read(sqlite_url):
    """With leases, 20 tasks reading a missing key: one reads the database, the others wait (asyncio.sleep)."""
    cache = AsyncWriteThroughCache(fakeredis.FakeAsyncRedis(), versioned=True, leases=True, lease_wait=0.01)
    reads = []

    def slow_reader(session):
        reads.append(1)
        return read_product(session)

    async def body(sessions):
        async def one():
            async with sessions() as db:
                return await cache.read(db, NS, PID, slow_reader, product_dict)

        return await asyncio.gather(*(one() for _ in range(20)))

    results = run_with_sessions(sqlite_url, body)
    assert len(reads) == 1 and cache.stats.db_reads == 1 and cache.stats.leases_granted == 1
    assert all(r == results[0] for r in results) and results[0]["id"] == PID
    assert cache.stats.lease_waits >= 1 and cache.stats.hits == 19


def test_a_redis_that_does_not_answer_is_unavailable_and_reads_fall_back(sqlite_url):
    """Connection refused on redis.asyncio is CacheUnavailable: the read answers from the database."""
    cache = AsyncWriteThroughCache(async_redis_client("redis://127.0.0.1:1/0"), breaker=False)

    async def body(sessions):
        with pytest.raises(CacheUnavailable):
            await cache.perform(CacheGet(cache.key(NS, PID)), None)
        async with sessions() as db:
            return await cache.read(db, NS, PID, read_product, product_dict)

    assert run_with_sessions(sqlite_url, body)["id"] == PID
    assert cache.stats.cache_errors >= 1 and cache.stats.db_reads == 1 and cache.stats.hits == 0


def test_write_behind_queues_and_reads_its_own_write(sqlite_url):
    """AsyncWriteBehindCache.write queues the row (no commit); a read sees it; invalidate is refused."""
    redis = fakeredis.FakeAsyncRedis()
    cache = AsyncWriteBehindCache(redis, prefix="wbt")

    async def body(sessions):
        async with sessions() as db:
            version = await cache.write(NS, PID, {"id": PID, "stock": 3}, db=db,
                                        version_reader=lambda s: s.get(Product, PID).version)
            data = await cache.read(db, NS, PID, lambda s: pytest.fail("read the database"), product_dict)
            return version, data, await cache.pending()

    version, data, pending = run_with_sessions(sqlite_url, body)
    assert data["stock"] == 3 and pending == 1 and version == 2  # the catalog's row has version 1
    with pytest.raises(TypeError, match="not invalidated"):
        cache.invalidate(NS, PID)
    with Session(make_engine(sqlite_url)) as s:
        assert s.get(Product, PID).stock != 3  # the database waits for the flusher


def test_adrive_runs_a_policy_as_drive_does():
    """The same policy gives the same ops and the same value under drive and adrive; failures are thrown in."""

    def policy():
        try:
            raw = yield CacheGet("k")
        except CacheUnavailable:
            raw = "down"
        row = yield DbRead(lambda db: None)
        return raw, row

    def answers(failing: bool):
        seen = []

        def perform(op):
            seen.append(op)
            if isinstance(op, CacheGet):
                if failing:
                    raise CacheUnavailable("refused")
                return b"v"
            return 42

        async def aperform(op):
            return perform(op)

        return seen, perform, aperform

    for failing in (False, True):
        seen_sync, perform, _ = answers(failing)
        seen_async, _, aperform = answers(failing)
        assert drive(policy(), perform) == asyncio.run(adrive(policy(), aperform))
        assert [type(op) for op in seen_sync] == [type(op) for op in seen_async] == [CacheGet, DbRead]
    assert asyncio.run(adrive(policy(), answers(True)[2])) == ("down", 42)


def test_async_database_url():
    """SQLite and PostgreSQL get their asyncio drivers; a named driver is kept; others must name one."""
    assert async_database_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert async_database_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert async_database_url("postgresql+psycopg://h/db") == "postgresql+psycopg://h/db"
    with pytest.raises(ValueError, match="no asyncio driver"):
        async_database_url("mysql://h/db")


def test_the_session_is_usable_after_a_failed_commit(sqlite_url):
    """A failed commit rolls the AsyncSession back and propagates; the same session writes on."""
    from sqlalchemy.exc import IntegrityError

    cache = AsyncWriteThroughCache(fakeredis.FakeAsyncRedis())

    def violate(session):
        session.get(Product, PID).name = None
        return session.get(Product, PID)

    async def body(sessions):
        async with sessions() as db:
            assert isinstance(db, AsyncSession)
            with pytest.raises(IntegrityError):
                await cache.write(db, NS, PID, violate, product_dict)
            return (await cache.write(db, NS, PID, set_stock(12), product_dict)).stock

    assert run_with_sessions(sqlite_url, body) == 12
    assert cache.stats.db_errors == 1 and cache.stats.db_writes == 1
