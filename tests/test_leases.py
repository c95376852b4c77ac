"""Leases (memcache, NSDI 2013): only a lease holder populates, and only while its lease lives.

The first part runs on fakeredis and a real Redis (the conftest matrix) for both
classes that populate on a miss; the second reproduces, on a private
redis-server, the two gaps that versioned mode leaves and leases close:

(a) a reader misses and reads v1; Redis runs out of memory; a writer commits
    v2, its compare-and-set and its tombstone are refused, the fallback DEL
    succeeds; memory comes back; the reader populates v1;
(b) the same, except that the writer's update succeeds and a FLUSHALL comes
    before the reader's populate.

Without leases both end with v1 cached while the database holds v2; with
leases the late populate is refused.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy.orm import Session

from wtsim import CacheAside, WriteThroughCache, codec, make_engine, redis_client
from wtsim.models import Product, load_catalog, product_dict
from wtsim.ops import CacheGet, CacheLease, CacheSetLeased, DbRead, Wait

NS = "products"
PID = "p-1"  # the catalog row: stock 333, version 1
CLASSES = pytest.mark.parametrize("cls", [WriteThroughCache, CacheAside], ids=["write-through", "cache-aside"])


def read_product(session: Session) -> Product | None:
    return session.get(Product, PID)


def set_stock(stock: int):
    def writer(session: Session) -> Product:
        product = session.get(Product, PID)
        product.stock = stock
        return product

    return writer


def stored(redis, cache) -> codec.Entry | None:
    raw = redis.get(cache.key(NS, PID))
    return None if raw is None else codec.decode(raw)


def step_to(stepper, kind: type) -> None:
    """Step ``stepper`` until the op it waits on is a ``kind``."""
    while not isinstance(stepper.pending, kind):
        assert not stepper.done, f"finished before a {kind.__name__}"
        stepper.step()


@pytest.fixture
def make(redis_conn, key_prefix):
    def build(cls=WriteThroughCache, **options):
        return cls(redis_conn, prefix=key_prefix, leases=True, **options)

    return build


# -- the mechanism, on every backend ---------------------------------------------------------


@CLASSES
def test_a_hit_pays_nothing_for_leases(make, db, cls):
    """A hit is one GET, as without leases; a miss adds one round trip: the lease."""
    cache = make(cls)
    miss = cache.step_read(db, NS, PID, read_product, product_dict)
    miss.run()
    assert [type(op) for op, _ in miss.history] == [CacheGet, CacheLease, DbRead, CacheSetLeased]
    hit = cache.step_read(db, NS, PID, read_product, product_dict)
    assert hit.run()["stock"] == 333
    assert [type(op) for op, _ in hit.history] == [CacheGet]
    assert cache.stats.leases_granted == 1 and cache.stats.cache_sets == 1


@CLASSES
def test_a_second_reader_waits_for_the_lease_holder(make, db, cls):
    """While one reader holds the lease, another waits and then gets the populated value, no DB read."""
    cache = make(cls, lease_wait=0.001)
    first = cache.step_read(db, NS, PID, read_product, product_dict)
    step_to(first, DbRead)
    second = cache.step_read(db, NS, PID, read_product, product_dict)
    second.step()  # its GET finds the first reader's lease
    assert isinstance(second.pending, Wait)
    first.run()
    assert second.run()["stock"] == 333
    assert DbRead not in [type(op) for op, _ in second.history]
    assert cache.stats.lease_waits == 1 and cache.stats.db_reads == 1 and cache.stats.hits == 1


@CLASSES
def test_a_reader_that_waited_too_long_reads_the_database_without_populating(make, db, redis_conn, cls):
    """After lease_retries waits the reader answers from the database and leaves the holder's lease alone."""
    cache = make(cls, lease_wait=0.001, lease_retries=2)
    holder = cache.step_read(db, NS, PID, read_product, product_dict)
    step_to(holder, DbRead)
    waiter = cache.step_read(db, NS, PID, read_product, product_dict)
    assert waiter.run()["stock"] == 333
    ops = [type(op) for op, _ in waiter.history]
    assert ops.count(Wait) == 2 and ops[-1] is DbRead  # no populate after it
    assert stored(redis_conn, cache).lease is not None  # still the holder's
    holder.run()
    assert stored(redis_conn, cache).data["stock"] == 333


@pytest.mark.parametrize("versioned", [False, True], ids=["naive", "versioned"])
def test_leases_close_the_read_populate_race(make, db, engine, redis_conn, versioned):
    """A reader that read v1 before a write of v2 cannot populate v1 afterwards, in either mode."""
    cache = make(WriteThroughCache, versioned=versioned)
    reader = cache.step_read(db, NS, PID, read_product, product_dict)
    step_to(reader, CacheSetLeased)  # it has read v1 and holds the lease
    with Session(engine) as other:
        cache.write(other, NS, PID, set_stock(7), product_dict)  # its SET replaces the lease
    assert reader.run()["stock"] == 333  # the reader answers what it read...
    assert stored(redis_conn, cache).data["stock"] == 7  # ...but did not cache it
    assert cache.stats.lease_refused == 1


def test_an_expired_lease_cannot_populate(make, db, redis_conn):
    """A holder slower than lease_ttl finds its lease gone (another took it) and is refused."""
    cache = make(WriteThroughCache, lease_ttl=0.05)
    slow = cache.step_read(db, NS, PID, read_product, product_dict)
    step_to(slow, CacheSetLeased)
    redis_conn.pexpire(cache.key(NS, PID), 1)  # the lease times out
    time.sleep(0.01)
    fast = cache.step_read(db, NS, PID, read_product, product_dict)
    step_to(fast, CacheSetLeased)  # a new lease, a new token
    slow.run()
    assert cache.stats.lease_refused == 1
    fast.run()
    assert stored(redis_conn, cache).data["stock"] == 333 and cache.stats.cache_sets == 1


# -- the two gaps, on a private redis-server -------------------------------------------------


@pytest.fixture
def sqlite(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'leases.db'}")
    load_catalog(eng, reset=True)
    yield eng
    eng.dispose()


def _gap(server, raw, engine, cls, leases: bool, between) -> codec.Entry | None:
    """A reader reads v1, ``between(cache, writer_session)`` runs, the reader populates; what is cached."""
    cache = cls(redis_client(server.url), versioned=True, leases=leases, breaker=False)
    with Session(engine) as reader_db, Session(engine) as writer_db:
        reader = cache.step_read(reader_db, NS, PID, read_product, product_dict)
        step_to(reader, DbRead)
        reader.step()  # v1 read: the populate is next
        between(cache, writer_db)
        assert reader.run()["version"] == 1
    with Session(engine) as check:
        assert check.get(Product, PID).version == 2
    return stored(raw, cache)


def _oom_write(raw):
    def between(cache, db):
        raw.config_set("maxmemory-policy", "noeviction")
        raw.config_set("maxmemory", 1)
        with pytest.raises(Exception, match="maxmemory"):
            raw.set("probe", "x")
        cache.write(db, NS, PID, set_stock(7), product_dict)  # v2 committed; CAS/tombstone refused, DEL works
        raw.config_set("maxmemory", 0)
        assert raw.exists(cache.key(NS, PID)) == 0

    return between


def _write_then_flush(raw):
    def between(cache, db):
        cache.write(db, NS, PID, set_stock(7), product_dict)
        raw.flushall()  # or a restart: the private server's memory is gone

    return between


@pytest.mark.redis_server
@CLASSES
@pytest.mark.parametrize("gap", ["a-oom", "b-flush"])
def test_without_leases_versioned_mode_leaves_v1_cached(server, raw, sqlite, cls, gap):
    """Versioned mode alone: the late populate of v1 lands, and stays while the database holds v2."""
    between = _oom_write(raw) if gap == "a-oom" else _write_then_flush(raw)
    entry = _gap(server, raw, sqlite, cls, leases=False, between=between)
    assert entry is not None and entry.version == 1


@pytest.mark.redis_server
@CLASSES
@pytest.mark.parametrize("gap", ["a-oom", "b-flush"])
def test_with_leases_the_late_populate_is_refused(server, raw, sqlite, cls, gap):
    """With leases the populate of v1 is refused: the key ends empty or at v2, never at v1."""
    between = _oom_write(raw) if gap == "a-oom" else _write_then_flush(raw)
    entry = _gap(server, raw, sqlite, cls, leases=True, between=between)
    assert entry is None or entry.version == 2
