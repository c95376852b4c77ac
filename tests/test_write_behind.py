"""Write-behind writes and reads (wtsim.WriteBehindCache), on fakeredis and a real Redis, SQLite and PostgreSQL.

A write stores a dirty entry and appends to the stream in one script; the
database is written later by the flusher (tests/test_flusher.py).
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy.orm import Session

from wtsim import WriteBehindCache, WriteQueueFull, codec
from wtsim.models import Product, product_dict
from wtsim.ops import CacheGet, CachePopulate, CacheQueueWrite, DbRead

NS = "products"
PID = "p-1"  # the catalog row: stock 333, version 1
ROW = {"name": "Widget", "price_cents": 100, "stock": 5}


def read_product(session: Session) -> Product | None:
    return session.get(Product, PID)


def version_reader(entity_id=PID):
    def read(session: Session) -> int | None:
        row = session.get(Product, entity_id)
        return None if row is None else row.version

    return read


@pytest.fixture
def cache(redis_conn, key_prefix) -> WriteBehindCache:
    return WriteBehindCache(redis_conn, prefix=key_prefix, default_ttl=60)


def stored(redis_conn, cache, entity_id=PID) -> codec.Entry | None:
    raw = redis_conn.get(cache.key(NS, entity_id))
    return None if raw is None else codec.decode(raw)


def queued(redis_conn, cache) -> list[dict]:
    return [{k.decode(): v.decode() for k, v in f.items()} for _, f in redis_conn.xrange(cache.stream)]


def test_writes_get_versions_in_order_and_each_is_queued_with_its_entry(cache, redis_conn, db):
    """Three writes of a cached key: versions 1, 2, 3; the stream holds each with the entry's exact row."""
    redis_conn.set(cache.key(NS, "new"), codec.encode({"name": "n"}, 0))  # cached at version 0
    versions = [cache.write(NS, "new", {**ROW, "stock": i}) for i in range(3)]
    assert versions == [1, 2, 3]
    entries = queued(redis_conn, cache)
    assert [(e["ns"], json.loads(e["id"]), int(e["v"])) for e in entries] == [(NS, "new", v) for v in versions]
    assert [json.loads(e["p"])["stock"] for e in entries] == [0, 1, 2]
    assert redis_conn.get(cache.key(NS, "new")).decode() == codec.dirty_payload(3, entries[-1]["p"])
    assert cache.pending() == 3


def test_an_uncached_key_reads_its_base_version_from_the_database(cache, redis_conn, db):
    """Not cached: the script asks for the base, the policy reads the row's version (1), the write gets 2."""
    stepper = cache.step_write(NS, PID, ROW, db=db, version_reader=version_reader())
    assert stepper.run() == 2
    answers = [(type(op), outcome) for op, outcome in stepper.history]
    assert [t for t, _ in answers] == [CacheQueueWrite, DbRead, CacheQueueWrite]
    assert answers[0][1].need_base and answers[1][1] == 1
    assert cache.write(NS, PID, ROW) == 3  # now cached: one round trip, no reader needed


def test_an_absent_row_starts_at_version_one(cache, db):
    assert cache.write(NS, "no-such-row", ROW, db=db, version_reader=version_reader("no-such-row")) == 1


def test_an_uncached_key_without_a_version_reader_writes_nothing(cache, redis_conn):
    with pytest.raises(ValueError, match="version_reader is required"):
        cache.write(NS, PID, ROW)
    assert cache.pending() == 0 and redis_conn.exists(cache.key(NS, PID)) == 0


def test_a_dirty_entry_has_no_ttl_and_is_marked_dirty(cache, redis_conn, db):
    cache.write(NS, PID, ROW, db=db, version_reader=version_reader())
    assert redis_conn.ttl(cache.key(NS, PID)) == -1
    entry = stored(redis_conn, cache)
    assert entry.dirty and entry.version == 2 and entry.data == ROW


def test_a_write_replaces_the_ttl_of_a_clean_entry(cache, redis_conn, db):
    """A populated entry (with TTL) that is written becomes dirty and pinned."""
    cache.read(db, NS, PID, read_product, product_dict)
    assert redis_conn.ttl(cache.key(NS, PID)) > 0
    assert cache.write(NS, PID, ROW) == 2
    assert redis_conn.ttl(cache.key(NS, PID)) == -1


def test_a_read_hit_answers_the_dirty_data_with_its_version(cache, db):
    cache.write(NS, PID, ROW, db=db, version_reader=version_reader())
    assert cache.read(db, NS, PID, read_product, product_dict) == {**ROW, "version": 2}
    assert cache.stats.hits == 1 and cache.stats.db_reads == 1  # the base-version read only


def test_a_miss_reads_the_database_and_populates_clean_with_a_ttl(cache, redis_conn, db):
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 333
    entry = stored(redis_conn, cache)
    assert not entry.dirty and entry.version == 1 and 0 < redis_conn.ttl(cache.key(NS, PID)) <= 60


def test_a_populate_never_replaces_a_dirty_entry(cache, redis_conn, db, engine):
    """A reader misses and reads v1; a write queues v2; the reader's populate is refused."""
    reader = cache.step_read(db, NS, PID, read_product, product_dict)
    while not isinstance(reader.pending, CachePopulate):
        reader.step()
    with Session(engine) as other:
        assert cache.write(NS, PID, ROW, db=other, version_reader=version_reader()) == 2
    assert reader.run()["version"] == 1  # it answers what it read...
    entry = stored(redis_conn, cache)
    assert entry.dirty and entry.version == 2  # ...and the queued write stays
    assert cache.stats.refused_older == 1
    assert [type(op) for op, _ in reader.history] == [CacheGet, DbRead, CachePopulate]


def test_a_full_queue_refuses_the_write_and_writes_nothing(redis_conn, key_prefix, db):
    cache = WriteBehindCache(redis_conn, prefix=key_prefix, max_pending=2)
    cache.write(NS, PID, ROW, db=db, version_reader=version_reader())
    cache.write(NS, PID, ROW)
    before = redis_conn.get(cache.key(NS, PID))
    with pytest.raises(WriteQueueFull, match=r"queue '.*:queue' is full: 2 entries pending, max_pending=2") as info:
        cache.write(NS, PID, {**ROW, "stock": 99})
    assert (info.value.stream, info.value.pending, info.value.limit) == (cache.stream, 2, 2)
    assert redis_conn.get(cache.key(NS, PID)) == before and cache.pending() == 2


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_max_pending_must_be_a_positive_integer(redis_conn, bad):
    with pytest.raises(ValueError, match="max_pending must be an integer >= 1"):
        WriteBehindCache(redis_conn, max_pending=bad)


def test_data_that_is_not_json_writes_nothing(cache, redis_conn):
    with pytest.raises(ValueError):
        cache.write(NS, PID, {"price": float("nan")})
    assert cache.pending() == 0


def test_codec_reads_the_dirty_flag():
    assert codec.decode(codec.dirty_payload(3, '{"a":1}')) == codec.Entry({"a": 1}, 3, dirty=True)
    assert codec.decode(codec.clean_payload(3, '{"a":1}')) == codec.Entry({"a": 1}, 3)
    assert not codec.decode('{"v":3,"w":true,"d":{}}').dirty


def test_write_behind_is_a_registered_pattern():
    """The registry names it, so the simulator and --set policy= accept it."""
    from wtsim.policies import POLICIES, write_behind

    assert POLICIES["write-behind"] is write_behind
