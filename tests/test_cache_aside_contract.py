"""The CacheAside contract, run over every backend pair.

Each test runs on fakeredis, a real Redis and a Redis Cluster, over SQLite and PostgreSQL (see
conftest.py), on both drivers (``async``: :class:`wtsim.aio.AsyncCacheAside` behind
``tests/aio_facade.py``'s facade, not on the cluster), and most of them in both modes: ``versioned=False`` (write, then
``DEL``) and ``versioned=True`` (write, then a tombstone carrying the new
version, so that a slow reader cannot put back what it read before the commit).

Cache-aside never stores a written value: a write commits and invalidates, and
the cache is filled only by readers, on a miss. The read path is write-through's
(:mod:`wtsim.policies.read_through`). The failure table, adapted:

====================================  =============================================================
what fails                            what the caller sees
====================================  =============================================================
the DB write (writer or commit)       rolled back, the exception, the cache untouched
the invalidation, after the commit    the committed result; the key is repaired when Redis answers
serialize, after the commit           versioned: the entry tombstoned, then the exception
====================================  =============================================================

Helpers (the recording Redis proxy, the writers and readers) come from the
write-through suite, ``test_cache_contract``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from recording import AsyncRecordingRedis, RecordingRedis
from conftest import DRIVERS, WITH_CLUSTER, redis_backend
from test_cache_contract import (
    BAD_SERIALIZERS,
    CORRUPT_PAYLOADS,
    NS,
    PID,
    SerializeError,
    committed_stock,
    insert_duplicate_key,
    must_not_read,
    read_product,
    recording,
    set_stock,
    stat_changes,
    violate_not_null,
)

from wtsim import CacheAside, PolicyCache, WriteThroughCache
from wtsim.codec import decode
from wtsim.models import Product, product_dict
from wtsim.ops import CacheDelete, CacheGet, CacheSet, CacheSetIfNewer, CacheTombstone, DbRead, DbWrite

TOMBSTONE_TTL = 5.0


@pytest.fixture(params=WITH_CLUSTER)
def redis_conn(request):
    """This suite runs on Redis Cluster too (one Redis client per param: see conftest)."""
    return redis_backend(request)


@pytest.fixture(params=DRIVERS)
def driver(request) -> str:
    """This suite runs over the synchronous and the asyncio driver (see conftest)."""
    return request.param


def build_aside(aio, client, **options) -> CacheAside:
    """A CacheAside on ``client``, or on the async driver an AsyncCacheAside behind the facade."""
    if aio is None:
        return CacheAside(client, **options)
    from wtsim.aio import AsyncCacheAside

    return aio.facade(AsyncCacheAside(client, **options))


@pytest.fixture
def make_aside(redis_conn, key_prefix, aio):
    """Factory: ``make_aside(**options)`` builds a CacheAside on ``redis_conn``."""

    def make(**options) -> CacheAside:
        options.setdefault("prefix", key_prefix)
        options.setdefault("tombstone_ttl", TOMBSTONE_TTL)
        return build_aside(aio, redis_conn if aio is None else aio.redis, **options)

    return make


@pytest.fixture
def recorded_aside(redis_conn, key_prefix, events, aio):
    """Factory: a CacheAside whose Redis client records into ``events`` (and fails the commands in ``fail``)."""

    def make(fail: dict[str, Any] | None = None, **options) -> CacheAside:
        if aio is None:
            proxy = RecordingRedis(redis_conn, events, fail)
        else:
            proxy = AsyncRecordingRedis(aio.redis, events, fail)
        options.setdefault("prefix", key_prefix)
        options.setdefault("tombstone_ttl", TOMBSTONE_TTL)
        cache = build_aside(aio, proxy, **options)
        cache.proxy = proxy
        return cache

    return make


def committed(engine, pid: str = PID) -> dict:
    """The row as the database holds it, seen from a fresh session."""
    with Session(engine) as other:
        return product_dict(other.get(Product, pid))


def redis_commands(events: list[str]) -> list[str]:
    return [e for e in events if e.startswith("redis.")]


def invalidation_command(versioned: bool) -> str:
    """The Redis command a write's invalidation sends: DEL, or the tombstone script's EVALSHA."""
    return "evalsha" if versioned else "delete"


def assert_invalidated(redis_conn, cache: CacheAside, versioned: bool, version: int | None) -> None:
    """The key holds no value: absent (naive), or a short-lived tombstone of ``version`` (versioned)."""
    key = cache.key(NS, PID)
    raw = redis_conn.get(key)
    if not versioned:
        assert raw is None, f"expected no entry, found {raw!r}"
        return
    assert raw is not None, "expected a tombstone, found nothing"
    entry = decode(raw)
    assert entry.tombstone is True and entry.data is None, entry
    assert entry.version == version
    assert 0 < redis_conn.pttl(key) <= TOMBSTONE_TTL * 1000


def populate(cache: CacheAside, engine) -> dict:
    """Read p-1 through ``cache`` on a session of its own, so that an entry is cached."""
    with Session(engine) as s:
        return cache.read(s, NS, PID, read_product, product_dict)


# -- the class ------------------------------------------------------------------------------


def test_cache_aside_is_a_policy_cache_of_its_own(redis_conn, make_aside):
    """CacheAside is a PolicyCache running the cache-aside policy, not a WriteThroughCache."""
    cache = make_aside()
    assert isinstance(cache, PolicyCache) and not isinstance(cache, WriteThroughCache)
    assert cache.policy.__name__ == "wtsim.policies.cache_aside"
    assert repr(cache).startswith("<CacheAside ")


# -- 1. a write commits, then deletes the entry ------------------------------------------------


def test_write_commits_then_invalidates(db, engine, redis_conn, recorded_aside, events, versioned):
    """write = db_writer(db), db.commit(), then one invalidation (DEL, or the tombstone EVALSHA); nothing is SET."""
    cache = recorded_aside(versioned=versioned)
    populate(cache, engine)  # an entry for the write to remove
    assert decode(redis_conn.get(cache.key(NS, PID))).data is not None
    events.clear()
    cache.proxy.calls.clear()

    product = cache.write(db, NS, PID, set_stock(7, events), recording(product_dict, events, "serialize"))
    assert isinstance(product, Product) and product.stock == 7  # the writer's own return value
    if versioned:  # the tombstone needs the new version, so serialize runs
        assert events == ["db_writer", "db.commit", "serialize", "redis.evalsha"]
    else:  # a DEL needs no value: serialize is not called
        assert events == ["db_writer", "db.commit", "redis.delete"]
        assert cache.proxy.calls == [("delete", (cache.key(NS, PID),), {})]
    assert committed_stock(engine) == 7
    assert_invalidated(redis_conn, cache, versioned, version=committed(engine)["version"])


def test_read_after_a_write_misses_and_populates_then_hits(db, engine, redis_conn, make_aside, versioned):
    """The read after a write is a miss that reads the database and populates; the one after is a hit."""
    cache = make_aside(versioned=versioned)
    cache.write(db, NS, PID, set_stock(41), product_dict)

    before = cache.stats.as_dict()
    calls: list[Any] = []
    data = cache.read(db, NS, PID, lambda s: calls.append(s) or read_product(s), product_dict)
    assert data["stock"] == 41 and len(calls) == 1
    assert stat_changes(cache, before) == {"misses": 1, "db_reads": 1, "cache_sets": 1}
    entry = decode(redis_conn.get(cache.key(NS, PID)))
    assert entry.data == data and not entry.tombstone

    before = cache.stats.as_dict()
    assert cache.read(db, NS, PID, must_not_read, product_dict) == data
    assert stat_changes(cache, before) == {"hits": 1}


def test_stats_move_as_documented(db, make_aside, versioned):
    """Each call moves exactly the counters its docs name; a write stores nothing (no cache_sets)."""
    cache = make_aside(versioned=versioned)
    before = cache.stats.as_dict()
    cache.write(db, NS, PID, set_stock(1), product_dict)
    assert stat_changes(cache, before) == {"db_writes": 1, "invalidations": 1}

    before = cache.stats.as_dict()
    cache.read(db, NS, PID, read_product, product_dict)
    assert stat_changes(cache, before) == {"misses": 1, "db_reads": 1, "cache_sets": 1}

    before = cache.stats.as_dict()
    cache.read(db, NS, PID, must_not_read, product_dict)
    assert stat_changes(cache, before) == {"hits": 1}

    before = cache.stats.as_dict()
    cache.read(db, NS, "absent", lambda s: None, product_dict)
    assert stat_changes(cache, before) == {"misses": 1, "db_reads": 1}

    before = cache.stats.as_dict()
    assert cache.invalidate(NS, PID) is True
    assert stat_changes(cache, before) == {"invalidations": 1}


# -- 2. reads: hit, miss, absent row, corrupt payload ----------------------------------------


def test_read_miss_populates_and_the_next_is_a_hit(db, redis_conn, recorded_aside, events, versioned):
    """A miss is GET, db_reader, serialize, populate (SET or the compare-and-set EVALSHA); a hit is the GET only."""
    cache = recorded_aside(versioned=versioned)
    reader = recording(read_product, events, "db_reader")
    serialize = recording(product_dict, events, "serialize")
    first = cache.read(db, NS, PID, reader, serialize)
    populate_cmd = "redis.evalsha" if versioned else "redis.set"
    assert events == ["redis.get", "db_reader", "serialize", populate_cmd]
    assert cache.stats.misses == 1 and cache.stats.db_reads == 1 and cache.stats.cache_sets == 1
    entry = decode(redis_conn.get(cache.key(NS, PID)))
    assert entry.data == first
    assert entry.version == (first["version"] if versioned else None)

    events.clear()
    assert cache.read(db, NS, PID, must_not_read, serialize) == first
    assert events == ["redis.get"]
    assert cache.stats.hits == 1 and cache.stats.db_reads == 1


def test_read_of_an_absent_row_caches_nothing(db, redis_conn, make_aside, key_prefix, versioned):
    """A reader answering None gives None, and nothing is stored in Redis."""
    cache = make_aside(versioned=versioned)
    assert cache.read(db, NS, "no-such-id", lambda s: s.get(Product, "no-such-id"), product_dict) is None
    assert list(redis_conn.scan_iter(match=f"{key_prefix}:*")) == []
    assert cache.stats.misses == 1 and cache.stats.db_reads == 1 and cache.stats.cache_sets == 0
    assert cache.read(db, NS, "no-such-id", lambda s: None, product_dict) is None  # a miss again, not a hit
    assert cache.stats.misses == 2 and cache.stats.hits == 0


@pytest.mark.parametrize("payload", CORRUPT_PAYLOADS.values(), ids=CORRUPT_PAYLOADS.keys())
def test_corrupt_or_foreign_payload_is_a_miss_and_is_overwritten(db, engine, redis_conn, make_aside, versioned,
                                                                  payload):
    """A payload that is not our envelope reads as a miss; the DB value is returned and stored properly."""
    cache = make_aside(versioned=versioned)
    key = cache.key(NS, PID)
    redis_conn.set(key, payload)
    data = cache.read(db, NS, PID, read_product, product_dict)
    assert data == committed(engine) and data["stock"] != 50
    assert cache.stats.corrupt == 1 and cache.stats.misses == 1 and cache.stats.hits == 0
    assert cache.stats.cache_sets == 1
    assert json.loads(redis_conn.get(key))["d"] == data  # a proper envelope now
    assert cache.read(db, NS, PID, must_not_read, product_dict) == data


@pytest.mark.parametrize("default_ttl, ttl, expected_ms", [(3600, None, 3_600_000), (3600, 1800, 1_800_000),
                                                           (3600, 2.5, 2_500), (None, None, -1)])
def test_populate_ttl(db, redis_conn, make_aside, versioned, default_ttl, ttl, expected_ms):
    """A populated entry expires after the ttl argument, else default_ttl; never when both are None."""
    cache = make_aside(versioned=versioned, default_ttl=default_ttl)
    cache.read(db, NS, PID, read_product, product_dict, ttl=ttl)
    pttl = redis_conn.pttl(cache.key(NS, PID))
    if expected_ms == -1:
        assert pttl == -1
    else:
        assert expected_ms - 2_000 < pttl <= expected_ms


@pytest.mark.parametrize("ttl", [0, -5, "60", True, float("nan")])
def test_bad_ttl_fails_before_anything_is_written(db, engine, redis_conn, make_aside, ttl):
    """A write with a bad ttl raises ValueError naming it; neither the database nor the cache is touched."""
    cache = make_aside()
    populate(cache, engine)
    key = cache.key(NS, PID)
    cached_before, stock_before = redis_conn.get(key), committed_stock(engine)
    with pytest.raises(ValueError, match="ttl"):
        cache.write(db, NS, PID, set_stock(stock_before + 1), product_dict, ttl=ttl)
    assert committed_stock(engine) == stock_before
    assert redis_conn.get(key) == cached_before
    assert cache.stats.db_writes == 0 and cache.stats.invalidations == 0


# -- 3. the DB write fails -------------------------------------------------------------------


@pytest.mark.parametrize("db_writer", [violate_not_null, insert_duplicate_key])
def test_failed_commit_rolls_back_and_leaves_the_cache(db, engine, redis_conn, recorded_aside, events, versioned,
                                                       db_writer):
    """A failed commit rolls back, propagates, leaves the cached entry as it was, and the session works on."""
    cache = recorded_aside(versioned=versioned)
    populate(cache, engine)
    key = cache.key(NS, PID)
    before_raw, before_row = redis_conn.get(key), committed(engine)
    assert decode(before_raw).data == before_row
    events.clear()

    with pytest.raises(IntegrityError):
        cache.write(db, NS, PID, db_writer, product_dict)
    assert events == ["db.commit", "db.rollback"]  # and not one Redis command
    assert redis_conn.get(key) == before_raw
    assert committed(engine) == before_row
    assert cache.stats.db_errors == 1 and cache.stats.db_writes == 0
    assert cache.stats.invalidations == 0 and cache.stats.cache_errors == 0
    assert len(cache.state.suspects) == 0

    cache.write(db, NS, PID, set_stock(12), product_dict)  # the same session, right after
    assert committed_stock(engine) == 12
    assert_invalidated(redis_conn, cache, versioned, version=committed(engine)["version"])
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 12


def test_failing_writer_rolls_back_its_changes(db, engine, redis_conn, recorded_aside, events, versioned):
    """A writer that raises midway: rollback, no commit, no Redis command, its half-made change never committed."""
    cache = recorded_aside(versioned=versioned)
    populate(cache, engine)
    before_raw = redis_conn.get(cache.key(NS, PID))

    class WriterError(Exception):
        pass

    def half_writer(session):
        session.get(Product, PID).name = "half-written"
        raise WriterError("boom")

    events.clear()
    with pytest.raises(WriterError):
        cache.write(db, NS, PID, half_writer, product_dict)
    assert events == ["db.rollback"]
    assert redis_conn.get(cache.key(NS, PID)) == before_raw
    assert cache.stats.db_errors == 1

    cache.write(db, NS, PID, set_stock(12), product_dict)  # commits only this change
    row = committed(engine)
    assert row["stock"] == 12 and row["name"] != "half-written"


# -- 4. the invalidation fails after the commit ----------------------------------------------


DOWN = {
    "connection": redis.ConnectionError("Connection refused"),
    "timeout": redis.TimeoutError("Timeout reading from socket"),
}


@pytest.mark.parametrize("error", DOWN.values(), ids=DOWN.keys())
def test_failed_invalidation_returns_the_result_and_is_repaired(db, engine, redis_conn, recorded_aside, events,
                                                                 versioned, error):
    """DEL/tombstone fails: the committed result is returned, the key remembered and invalidated before the next GET."""
    cache = recorded_aside(versioned=versioned)
    stale = populate(cache, engine)
    key = cache.key(NS, PID)
    command = invalidation_command(versioned)
    cache.proxy.fail = {command: error}

    product = cache.write(db, NS, PID, set_stock(12), product_dict)  # no exception
    assert isinstance(product, Product) and product.stock == 12
    new = committed(engine)
    assert new["stock"] == 12 and new["version"] == stale["version"] + 1
    assert decode(redis_conn.get(key)).data == stale  # stale, for now
    assert cache.state.suspects.keys == {key: new["version"] if versioned else None}
    assert cache.stats.cache_errors == 1 and cache.stats.invalidations == 0 and cache.stats.db_writes == 1

    cache.proxy.fail = {}  # Redis answers again
    events.clear()
    before = cache.stats.as_dict()
    data = cache.read(db, NS, PID, recording(read_product, events, "db_reader"), product_dict)
    assert data == new  # not the stale entry
    populate_cmd = "redis.evalsha" if versioned else "redis.set"
    assert events == [f"redis.{command}", "redis.get", "db_reader", populate_cmd]  # the repair comes first
    assert stat_changes(cache, before) == {"misses": 1, "db_reads": 1, "cache_sets": 1, "suspects_repaired": 1}
    assert len(cache.state.suspects) == 0
    assert decode(redis_conn.get(key)).data == new
    assert cache.read(db, NS, PID, must_not_read, product_dict) == new


def test_repair_comes_first_whatever_key_is_asked_next(db, engine, redis_conn, recorded_aside, events, versioned):
    """After an outage, a call on another key first invalidates the remembered one; p-1 is then read fresh."""
    cache = recorded_aside(versioned=versioned)
    stale = populate(cache, engine)
    command = invalidation_command(versioned)
    cache.proxy.fail = {command: redis.ConnectionError("refused")}
    cache.write(db, NS, PID, set_stock(12), product_dict)
    assert decode(redis_conn.get(cache.key(NS, PID))).data == stale

    cache.proxy.fail = {}
    events.clear()
    assert cache.read(db, NS, "p-2", lambda s: s.get(Product, "p-2"), product_dict)["id"] == "p-2"
    assert redis_commands(events)[:2] == [f"redis.{command}", "redis.get"]
    assert cache.stats.suspects_repaired == 1 and len(cache.state.suspects) == 0
    assert_invalidated(redis_conn, cache, versioned, version=committed(engine)["version"])
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 12


def test_while_the_invalidation_still_fails_reads_bypass_the_stale_entry(db, engine, redis_conn, recorded_aside,
                                                                         events, versioned):
    """While the repair keeps failing, a read answers from the database and never serves the stale entry."""
    cache = recorded_aside(versioned=versioned)
    stale = populate(cache, engine)
    command = invalidation_command(versioned)
    cache.proxy.fail = {command: redis.ConnectionError("refused")}
    cache.write(db, NS, PID, set_stock(12), product_dict)

    events.clear()
    data = cache.read(db, NS, PID, recording(read_product, events, "db_reader"), product_dict)
    assert data["stock"] == 12 and data != stale
    assert events == [f"redis.{command}", "db_reader"]  # the repair failed: no GET of the stale entry
    assert len(cache.state.suspects) == 1 and cache.stats.suspects_repaired == 0
    assert cache.stats.hits == 0 and cache.stats.cache_errors == 2
    assert decode(redis_conn.get(cache.key(NS, PID))).data == stale  # still there, still never served

    cache.proxy.fail = {}
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 12
    assert cache.stats.suspects_repaired == 1 and cache.stats.hits == 0


def test_refused_tombstone_falls_back_to_a_delete(db, engine, redis_conn, recorded_aside, events):
    """Versioned: a tombstone refused with an error reply (OOM) is replaced by a plain DEL; nothing to repair."""
    cache = recorded_aside(versioned=True)
    populate(cache, engine)
    cache.proxy.fail = {"evalsha": redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'")}
    events.clear()
    assert cache.write(db, NS, PID, set_stock(12), product_dict).stock == 12
    assert redis_commands(events) == ["redis.evalsha", "redis.delete"]
    assert redis_conn.get(cache.key(NS, PID)) is None
    assert cache.stats.cache_errors == 1 and cache.stats.invalidations == 1
    assert len(cache.state.suspects) == 0


# -- 5. the read-populate race ---------------------------------------------------------------


def test_read_populate_race(engine, redis_conn, make_aside, versioned):
    """A reader misses and reads v1, a writer commits v2 and invalidates, then the reader populates v1."""
    reader_cache, writer_cache = make_aside(versioned=versioned), make_aside(versioned=versioned)
    v1 = committed(engine)
    with Session(engine) as reader_db, Session(engine) as writer_db:
        reader = reader_cache.step_read(reader_db, NS, PID, read_product, product_dict)
        assert isinstance(reader.pending, CacheGet)
        assert reader.step() is None  # miss
        assert isinstance(reader.pending, DbRead)
        assert reader.step().version == v1["version"]  # the reader has v1 in hand ...
        assert isinstance(reader.pending, CacheSetIfNewer if versioned else CacheSet)  # ... about to cache it

        writer = writer_cache.step_write(writer_db, NS, PID, set_stock(7), product_dict)
        assert isinstance(writer.pending, DbWrite)
        writer.step()  # commits v2
        assert isinstance(writer.pending, CacheTombstone if versioned else CacheDelete)
        assert writer.run().version == v1["version"] + 1
        assert_invalidated(redis_conn, writer_cache, versioned, version=v1["version"] + 1)

        reader.run()  # the late populate
        assert reader.result == v1  # the reader answers what it read

    v2 = committed(engine)
    assert v2["stock"] == 7 and v2["version"] == v1["version"] + 1
    with Session(engine) as s:
        after = reader_cache.read(s, NS, PID, read_product, product_dict)
    if versioned:
        # The tombstone carries v2 and refuses v1: the next read misses and gets v2.
        assert reader_cache.stats.refused_older == 1 and reader_cache.stats.cache_sets == 1  # the latter: `after`
        assert after == v2
        assert reader_cache.stats.hits == 0 and reader_cache.stats.misses == 2
        assert decode(redis_conn.get(reader_cache.key(NS, PID))).data == v2
    else:
        # Cache-aside's race without versions or leases: v1 is cached after the DEL, and served until its TTL.
        assert reader_cache.stats.refused_older == 0 and reader_cache.stats.cache_sets == 1
        assert after == v1 != v2  # stale, while the database has v2
        assert reader_cache.stats.hits == 1


def test_concurrent_writers_leave_no_older_value(engine, redis_conn, make_aside, versioned):
    """A commits v2, B commits v3 and invalidates, A invalidates late: no value is cached; the next read gets v3."""
    cache_a, cache_b = make_aside(versioned=versioned), make_aside(versioned=versioned)
    v1 = populate(cache_a, engine)
    with Session(engine) as db_a, Session(engine) as db_b:
        a = cache_a.step_write(db_a, NS, PID, set_stock(10), product_dict)
        assert a.step().stock == 10  # A committed v2 ...
        assert isinstance(a.pending, CacheTombstone if versioned else CacheDelete)  # ... about to invalidate

        b = cache_b.step_write(db_b, NS, PID, set_stock(20), product_dict)
        assert b.run().version == v1["version"] + 2  # B commits v3 and invalidates

        assert a.run().version == v1["version"] + 1  # A's late invalidation
    v3 = committed(engine)
    assert v3["stock"] == 20
    assert_invalidated(redis_conn, cache_a, versioned, version=v3["version"])  # the newer tombstone stays
    with Session(engine) as s:
        assert cache_a.read(s, NS, PID, read_product, product_dict) == v3


# -- 6. serialize fails after the commit -----------------------------------------------------


RAISING_SERIALIZERS = {
    "raises": BAD_SERIALIZERS["raises"],
    "not-a-dict": BAD_SERIALIZERS["not-a-dict"],
    "no-version": (lambda p: {"id": p.id, "stock": p.stock}, ValueError),
}


@pytest.mark.parametrize("bad", RAISING_SERIALIZERS)
def test_serialize_failure_after_commit_invalidates_then_raises(db, engine, redis_conn, recorded_aside, events, bad):
    """Versioned: serialize failing after the commit tombstones the entry (unknown version), then propagates."""
    serialize, error = RAISING_SERIALIZERS[bad]
    cache = recorded_aside(versioned=True)
    populate(cache, engine)
    events.clear()

    with pytest.raises(error):
        cache.write(db, NS, PID, set_stock(99, events), serialize)
    assert events == ["db_writer", "db.commit", "redis.evalsha"]
    assert committed_stock(engine) == 99
    assert_invalidated(redis_conn, cache, True, version=None)
    assert cache.stats.db_writes == 1 and cache.stats.invalidations == 1 and len(cache.state.suspects) == 0

    # A tombstone of unknown version refuses every populate until it expires; the reads are still fresh.
    before = cache.stats.as_dict()
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 99
    assert stat_changes(cache, before) == {"misses": 1, "db_reads": 1, "refused_older": 1}
    assert decode(redis_conn.get(cache.key(NS, PID))).tombstone is True


def test_serialize_failure_and_failed_tombstone_is_remembered(db, engine, redis_conn, recorded_aside):
    """Versioned: serialize raises and the tombstone fails too: key remembered (version unknown), then repaired."""
    cache = recorded_aside(versioned=True)
    stale = populate(cache, engine)
    key = cache.key(NS, PID)
    cache.proxy.fail = {"evalsha": redis.ConnectionError("refused")}
    with pytest.raises(SerializeError):
        cache.write(db, NS, PID, set_stock(99), BAD_SERIALIZERS["raises"][0])
    assert committed_stock(engine) == 99
    assert cache.state.suspects.keys == {key: None}
    assert decode(redis_conn.get(key)).data == stale

    cache.proxy.fail = {}
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 99
    assert cache.stats.suspects_repaired == 1
    assert decode(redis_conn.get(key)).tombstone is True  # unknown version: the populate was refused


def test_naive_write_never_calls_serialize(db, engine, redis_conn, make_aside):
    """Naive: a DEL needs no value, so a write does not call serialize; a broken one fails at the next read instead."""
    cache = make_aside(versioned=False)
    populate(cache, engine)

    def explode(p):
        raise SerializeError("cannot serialize")

    product = cache.write(db, NS, PID, set_stock(99), explode)
    assert product.stock == 99 and committed_stock(engine) == 99
    assert redis_conn.get(cache.key(NS, PID)) is None
    with pytest.raises(SerializeError):
        cache.read(db, NS, PID, read_product, explode)
    assert redis_conn.get(cache.key(NS, PID)) is None  # nothing cached from the failed read


# -- 7. a written value is never stored ------------------------------------------------------


def test_writes_never_store_the_value(db, engine, redis_conn, recorded_aside, events, versioned):
    """After N writes and no reads the key is absent (naive) or a tombstone of the last version (versioned)."""
    cache = recorded_aside(versioned=versioned)
    start = populate(cache, engine)
    events.clear()
    cache.proxy.calls.clear()
    n = 5
    for i in range(n):
        assert cache.write(db, NS, PID, set_stock(100 + i), product_dict).stock == 100 + i
        assert_invalidated(redis_conn, cache, versioned, version=start["version"] + i + 1)
    assert redis_commands(events) == [f"redis.{invalidation_command(versioned)}"] * n
    assert not {"set", "setex", "psetex", "mset"} & {name for name, _, _ in cache.proxy.calls}
    assert cache.stats.cache_sets == 1  # the populate before the writes, and only it
    assert cache.stats.db_writes == n and cache.stats.invalidations == n
    raw = redis_conn.get(cache.key(NS, PID))
    if versioned:
        assert decode(raw).tombstone is True and decode(raw).version == start["version"] + n
    else:
        assert raw is None
    assert committed(engine)["stock"] == 100 + n - 1
