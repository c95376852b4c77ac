"""The article's two races, interleaved step by step (issue 2, point 9).

Each call runs as a :class:`wtsim.Stepper` on a session of its own, and the test
decides which operation happens when: no threads, no sleeps, the same result
every run. Two app servers are two caches on the same Redis. Every test runs
over each backend pair of ``conftest`` (fakeredis or a real Redis, SQLite or
PostgreSQL).

``versioned=False`` is the article's algorithm: both races leave the older
value in the cache. ``versioned=True`` makes every cache update a
compare-and-set on the row's version (``Product.version``, SQLAlchemy's
``version_id_col``), and the newest value survives.
"""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from wtsim import codec
from wtsim.models import Product, product_dict
from wtsim.ops import CacheGet, CacheSet, CacheSetIfNewer, DbRead, DbWrite

NS = "products"
PID = "p-1"  # the catalog row: stock 333, version 1

versioned_or_not = pytest.mark.parametrize("versioned", [False, True], ids=["naive", "versioned"])


def get_product(db):
    return db.get(Product, PID)


def set_stock(stock: int):
    def writer(db):
        product = db.get(Product, PID)
        product.stock = stock
        return product

    return writer


def db_row(engine) -> dict:
    with Session(engine) as s:
        return product_dict(s.get(Product, PID))


def cached(redis_conn, cache) -> codec.Entry:
    payload = redis_conn.get(cache.key(NS, PID))
    assert payload is not None, "nothing cached"
    return codec.decode(payload)


def read_through(cache, engine) -> dict:
    """What a third request reads now, through ``cache``."""
    with Session(engine) as s:
        return cache.read(s, NS, PID, get_product, product_dict)


@versioned_or_not
def test_read_populate_race(engine, redis_conn, make_cache, versioned):
    """A reader misses and reads v1, a writer commits and caches v2, then the reader caches v1."""
    update = CacheSetIfNewer if versioned else CacheSet
    reader_cache, writer_cache = make_cache(versioned=versioned), make_cache(versioned=versioned)
    with Session(engine) as reader_db, Session(engine) as writer_db:
        reader = reader_cache.step_read(reader_db, NS, PID, get_product, product_dict)
        assert isinstance(reader.pending, CacheGet)
        assert reader.step() is None  # miss
        assert isinstance(reader.pending, DbRead)
        assert reader.step().version == 1  # the reader has v1 in hand ...
        assert isinstance(reader.pending, update)  # ... and is about to cache it

        writer = writer_cache.step_write(writer_db, NS, PID, set_stock(7), product_dict)
        assert writer.run().version == 2  # commits v2 and caches it
        assert cached(redis_conn, writer_cache).data["version"] == 2

        reader.run()  # the late populate
        assert reader.result["version"] == 1  # the reader answers what it read

    assert db_row(engine)["version"] == 2
    entry = cached(redis_conn, reader_cache)
    if versioned:
        assert entry.version == 2 and entry.data["stock"] == 7
        assert reader_cache.stats.refused_older == 1
        assert reader_cache.stats.cache_sets == 0
        assert read_through(reader_cache, engine)["version"] == 2
    else:
        # The article's flaw: v1 replaced v2, and every read gets v1 until the TTL runs out.
        assert entry.data["version"] == 1 and entry.data["stock"] == 333
        assert reader_cache.stats.cache_sets == 1
        hits = reader_cache.stats.hits
        assert read_through(reader_cache, engine)["version"] == 1  # stale, while the DB has v2
        assert reader_cache.stats.hits == hits + 1


@versioned_or_not
def test_concurrent_writer_race(engine, redis_conn, make_cache, versioned):
    """A commits v2, B commits and caches v3, then A caches v2."""
    update = CacheSetIfNewer if versioned else CacheSet
    cache_a, cache_b = make_cache(versioned=versioned), make_cache(versioned=versioned)
    with Session(engine) as db_a, Session(engine) as db_b:
        a = cache_a.step_write(db_a, NS, PID, set_stock(10), product_dict)
        assert isinstance(a.pending, DbWrite)
        assert a.step().stock == 10  # A committed v2 ...
        assert isinstance(a.pending, update)  # ... and is about to cache it
        assert db_row(engine)["version"] == 2

        b = cache_b.step_write(db_b, NS, PID, set_stock(20), product_dict)
        assert b.run().version == 3  # B commits v3 and caches it
        assert cached(redis_conn, cache_b).data["stock"] == 20

        assert a.run().version == 2  # A's late cache update

    row = db_row(engine)
    assert (row["stock"], row["version"]) == (20, 3)
    entry = cached(redis_conn, cache_a)
    if versioned:
        assert entry.version == 3 and entry.data["stock"] == 20
        assert cache_a.stats.refused_older == 1
        assert read_through(cache_a, engine)["stock"] == 20
    else:
        # The article's flaw: the older write's value is cached over the newer one.
        assert entry.data["stock"] == 10 and entry.data["version"] == 2
        assert read_through(cache_a, engine)["stock"] == 10  # stale, while the DB has 20


@versioned_or_not
def test_read_populate_race_against_an_invalidation(engine, redis_conn, make_cache, versioned):
    """A reader holds v1 while v2 is committed and the entry invalidated; its late populate must not stick."""
    reader_cache, writer_cache = make_cache(versioned=versioned), make_cache(versioned=versioned)
    with Session(engine) as reader_db, Session(engine) as writer_db:
        reader = reader_cache.step_read(reader_db, NS, PID, get_product, product_dict)
        reader.step()  # miss
        reader.step()  # reads v1

        set_stock(7)(writer_db)  # v2 committed outside the cache ...
        writer_db.commit()
        assert writer_cache.invalidate(NS, PID, version=2)  # ... and the entry invalidated

        reader.run()
    if versioned:
        # The tombstone carries version 2 and refuses the populate of version 1.
        assert reader_cache.stats.refused_older == 1
        assert read_through(reader_cache, engine)["version"] == 2
    else:
        assert cached(redis_conn, reader_cache).data["version"] == 1
        assert read_through(reader_cache, engine)["version"] == 1  # stale
