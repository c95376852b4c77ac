"""The WriteThroughCache contract, run over every backend pair.

Each test runs on fakeredis, a real Redis and a Redis Cluster, over SQLite and PostgreSQL (see
conftest.py), on both drivers (``sync``: :class:`WriteThroughCache`; ``async``:
:class:`wtsim.aio.AsyncWriteThroughCache` behind ``tests/aio_facade.py``'s
facade, not on the cluster), and most of them in both modes: ``versioned=False`` (the
article's algorithm) and ``versioned=True`` (compare-and-set on the version).
The numbered points are those of the acceptance criteria in issue 2.
"""

from __future__ import annotations

import json
import os
import logging
import subprocess
import sys
import textwrap
from datetime import datetime
from typing import Any

import pytest
import redis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from recording import AsyncRecordingRedis, RecordingRedis
from conftest import DRIVERS, WITH_CLUSTER, redis_backend

from wtsim import WriteThroughCache
from wtsim.codec import decode, encode
from wtsim.models import Product, product_dict

NS = "products"
PID = "p-1"
ARTICLE_PAYLOAD = json.dumps({"id": PID, "name": "Widget", "price_cents": 999, "stock": 50})
@pytest.fixture(params=WITH_CLUSTER)
def redis_conn(request):
    """This suite runs on Redis Cluster too (one Redis client per param: see conftest)."""
    return redis_backend(request)


@pytest.fixture(params=DRIVERS)
def driver(request) -> str:
    """This suite runs over the synchronous and the asyncio driver (see conftest)."""
    return request.param


@pytest.fixture
def recorded_cache(redis_conn, key_prefix, events, aio):
    """Factory: a cache whose Redis client records into ``events`` (and fails the commands in ``fail``)."""

    def make(fail: dict[str, Any] | None = None, **options):
        options.setdefault("prefix", key_prefix)
        if aio is not None:
            from wtsim.aio import AsyncWriteThroughCache

            proxy = AsyncRecordingRedis(aio.redis, events, fail)
            cache = aio.facade(AsyncWriteThroughCache(proxy, **options))
        else:
            proxy = RecordingRedis(redis_conn, events, fail)
            cache = WriteThroughCache(proxy, **options)
        cache.proxy = proxy
        return cache

    return make


def set_stock(stock: int, events: list[str] | None = None):
    """A db_writer that sets the stock of p-1 and returns the product."""

    def db_writer(session: Session) -> Product:
        if events is not None:
            events.append("db_writer")
        product = session.get(Product, PID)
        product.stock = stock
        return product

    return db_writer


def read_product(session: Session) -> Product | None:
    return session.get(Product, PID)


def must_not_read(session: Session) -> None:
    pytest.fail("the database reader was called although the entry was cached")


def recording(fn, events: list[str], name: str):
    def wrapper(arg):
        events.append(name)
        return fn(arg)

    return wrapper


def committed_stock(engine, pid: str = PID) -> int:
    """The stock in the database, seen from a fresh session."""
    with Session(engine) as other:
        return other.get(Product, pid).stock


def stat_changes(cache, before: dict[str, int]) -> dict[str, int]:
    """The counters that moved since ``before``."""
    return {k: v - before[k] for k, v in cache.stats.as_dict().items() if v != before[k]}


# -- hits, misses, absent rows ---------------------------------------------------------------


def test_write_then_read_is_a_hit(db, make_cache, versioned):
    """After a write, a read answers from the cache without calling the database reader."""
    cache = make_cache(versioned=versioned)
    product = cache.write(db, NS, PID, set_stock(41), product_dict)
    assert isinstance(product, Product) and product.id == PID  # the writer's own return value
    data = cache.read(db, NS, PID, must_not_read, product_dict)
    assert data["stock"] == 41
    assert cache.stats.hits == 1 and cache.stats.db_reads == 0


def test_read_miss_populates(db, redis_conn, make_cache, versioned):
    """A miss reads the database once and populates; the next read is a hit."""
    cache = make_cache(versioned=versioned)
    assert redis_conn.get(cache.key(NS, PID)) is None
    first = cache.read(db, NS, PID, read_product, product_dict)
    assert cache.stats.misses == 1 and cache.stats.db_reads == 1 and cache.stats.hits == 0
    assert decode(redis_conn.get(cache.key(NS, PID))).data == first
    assert cache.read(db, NS, PID, must_not_read, product_dict) == first
    assert cache.stats.hits == 1 and cache.stats.db_reads == 1


def test_read_of_an_absent_row_caches_nothing(db, redis_conn, make_cache, key_prefix, versioned):
    """A reader answering None gives None, and nothing is stored in Redis."""
    cache = make_cache(versioned=versioned)
    assert cache.read(db, NS, "no-such-id", lambda s: s.get(Product, "no-such-id"), product_dict) is None
    assert list(redis_conn.scan_iter(match=f"{key_prefix}:*")) == []
    assert cache.stats.misses == 1 and cache.stats.db_reads == 1 and cache.stats.cache_sets == 0


# -- the order of calls is part of the contract ----------------------------------------------


def test_write_order(db, recorded_cache, events, versioned):
    """write = db_writer(db), db.commit(), serialize(result), then the cache update; nothing else."""
    cache = recorded_cache(versioned=versioned)
    cache.write(db, NS, PID, set_stock(7, events), recording(product_dict, events, "serialize"))
    update = "redis.evalsha" if versioned else "redis.set"
    assert events == ["db_writer", "db.commit", "serialize", update]


def test_read_order(db, recorded_cache, events, versioned):
    """read = cache get; on a miss db_reader(db), serialize, populate; on a hit only the get."""
    cache = recorded_cache(versioned=versioned)
    reader = recording(read_product, events, "db_reader")
    serialize = recording(product_dict, events, "serialize")
    cache.read(db, NS, PID, reader, serialize)
    update = "redis.evalsha" if versioned else "redis.set"
    assert events == ["redis.get", "db_reader", "serialize", update]
    events.clear()
    cache.read(db, NS, PID, reader, serialize)
    assert events == ["redis.get"]


# -- TTL and the SET command -----------------------------------------------------------------


@pytest.mark.parametrize(
    "default_ttl, ttl, expected_ms",
    [
        (3600, None, 3_600_000),
        (3600, 1800, 1_800_000),
        (60, None, 60_000),
        (None, 1800, 1_800_000),
        (3600, 2.5, 2_500),
        (None, None, -1),  # no expiry at all
    ],
)
@pytest.mark.parametrize("via", ["write", "read"])
def test_ttl(db, redis_conn, make_cache, versioned, default_ttl, ttl, expected_ms, via):
    """The entry expires after the ttl argument, else default_ttl; never when both are None."""
    cache = make_cache(versioned=versioned, default_ttl=default_ttl)
    if via == "write":
        cache.write(db, NS, PID, set_stock(5), product_dict, ttl=ttl)
    else:
        cache.read(db, NS, PID, read_product, product_dict, ttl=ttl)
    pttl = redis_conn.pttl(cache.key(NS, PID))
    if expected_ms == -1:
        assert pttl == -1
    else:
        assert expected_ms - 2_000 < pttl <= expected_ms


@pytest.mark.parametrize("ttl", [0, -5, "60", True, float("nan")])
def test_bad_ttl_fails_before_anything_is_written(db, engine, redis_conn, make_cache, ttl):
    """A bad ttl raises ValueError naming it, and neither the database nor the cache is touched."""
    cache = make_cache()
    before = committed_stock(engine)
    with pytest.raises(ValueError, match="ttl"):
        cache.write(db, NS, PID, set_stock(before + 1), product_dict, ttl=ttl)
    assert committed_stock(engine) == before
    assert redis_conn.get(cache.key(NS, PID)) is None


def test_set_with_ex_never_setex(db, recorded_cache):
    """Naive mode stores with SET key value EX ttl (setex is deprecated in redis-py)."""
    cache = recorded_cache(default_ttl=600)
    cache.write(db, NS, PID, set_stock(3), product_dict, ttl=1800)
    cache.invalidate(NS, PID)
    cache.read(db, NS, PID, read_product, product_dict)
    sets = [(args[0], kwargs) for name, args, kwargs in cache.proxy.calls if name == "set"]
    key = cache.key(NS, PID)
    assert sets == [(key, {"ex": 1800}), (key, {"ex": 600})]
    assert not [name for name, _, _ in cache.proxy.calls if name in ("setex", "psetex")]


def test_versioned_mode_never_calls_setex(db, recorded_cache):
    """Versioned mode stores through its Lua script only; setex is never called."""
    cache = recorded_cache(versioned=True)
    cache.write(db, NS, PID, set_stock(3), product_dict, ttl=1800)
    cache.invalidate(NS, PID)
    cache.read(db, NS, PID, read_product, product_dict)
    names = [name for name, _, _ in cache.proxy.calls]
    assert "evalsha" in names
    assert not {"setex", "psetex", "set"} & set(names)


# -- invalidation, stats, keys ----------------------------------------------------------------


def test_invalidate(db, redis_conn, make_cache, versioned):
    """invalidate removes the entry (versioned: a short-lived tombstone); the next read is a miss."""
    cache = make_cache(versioned=versioned, tombstone_ttl=5.0)
    cache.write(db, NS, PID, set_stock(9), product_dict)
    key = cache.key(NS, PID)
    assert cache.invalidate(NS, PID) is True
    if versioned:
        entry = decode(redis_conn.get(key))
        assert entry.tombstone and entry.data is None
        assert 3_000 < redis_conn.pttl(key) <= 5_000
    else:
        assert redis_conn.exists(key) == 0
    calls = []
    data = cache.read(db, NS, PID, lambda s: calls.append(s) or read_product(s), product_dict)
    assert data["stock"] == 9 and len(calls) == 1
    assert cache.stats.misses == 1 and cache.stats.hits == 0 and cache.stats.corrupt == 0
    assert cache.stats.invalidations == 1


def test_stats_move_as_documented(db, make_cache, versioned):
    """Each call moves exactly the counters its docs name."""
    cache = make_cache(versioned=versioned)
    before = cache.stats.as_dict()
    cache.write(db, NS, PID, set_stock(1), product_dict)
    assert stat_changes(cache, before) == {"db_writes": 1, "cache_sets": 1}

    before = cache.stats.as_dict()
    cache.read(db, NS, PID, must_not_read, product_dict)
    assert stat_changes(cache, before) == {"hits": 1}

    before = cache.stats.as_dict()
    cache.read(db, NS, "p-2", lambda s: s.get(Product, "p-2"), product_dict)
    assert stat_changes(cache, before) == {"misses": 1, "db_reads": 1, "cache_sets": 1}

    before = cache.stats.as_dict()
    cache.read(db, NS, "absent", lambda s: None, product_dict)
    assert stat_changes(cache, before) == {"misses": 1, "db_reads": 1}

    before = cache.stats.as_dict()
    cache.invalidate(NS, PID)
    assert stat_changes(cache, before) == {"invalidations": 1}

    cache.stats.reset()
    assert set(cache.stats.as_dict().values()) == {0}


@pytest.mark.parametrize("namespace, entity_id", [(NS, PID), ("a:b", "c"), ("ns {x}", "id:%2 é🙂"), ("n", 42)])
def test_key_is_what_redis_holds(db, redis_conn, make_cache, key_prefix, namespace, entity_id):
    """cache.key() names exactly the key the write stored, whatever the characters."""
    cache = make_cache()
    cache.write(db, namespace, entity_id, lambda s: s.get(Product, PID), product_dict)
    assert list(redis_conn.scan_iter(match=f"{key_prefix}:*")) == [cache.key(namespace, entity_id).encode()]


def test_colliding_article_keys_stay_apart(db, make_cache):
    """("a:b", "c") and ("a", "b:c") are two entries, not one overwriting the other."""
    cache = make_cache()
    cache.write(db, "a:b", "c", lambda s: s.get(Product, "p-1"), product_dict)
    cache.write(db, "a", "b:c", lambda s: s.get(Product, "p-2"), product_dict)
    assert cache.read(db, "a:b", "c", must_not_read, product_dict)["id"] == "p-1"
    assert cache.read(db, "a", "b:c", must_not_read, product_dict)["id"] == "p-2"


# -- 1. the DB commit fails ------------------------------------------------------------------


def violate_not_null(session: Session) -> Product:
    product = session.get(Product, PID)
    product.stock = 0
    product.name = None  # NOT NULL: the commit's flush fails
    return product


def insert_duplicate_key(session: Session) -> Product:
    product = Product(id="p-2", name="duplicate", price_cents=1, stock=1)
    session.add(product)  # p-2 exists: the commit's flush fails
    return product


@pytest.mark.parametrize("db_writer", [violate_not_null, insert_duplicate_key])
def test_failed_commit_rolls_back_and_leaves_the_cache(db, engine, redis_conn, make_cache, events, versioned, db_writer):
    """1. A failed commit rolls back, leaves the cache entry as it was, propagates, and the session works on."""
    cache = make_cache(versioned=versioned)
    cache.write(db, NS, PID, set_stock(11), product_dict)
    key = cache.key(NS, PID)
    before = redis_conn.get(key)
    events.clear()
    with pytest.raises(IntegrityError):
        cache.write(db, NS, PID, db_writer, product_dict)
    assert events == ["db.commit", "db.rollback"]
    assert redis_conn.get(key) == before
    assert cache.stats.db_errors == 1 and cache.stats.db_writes == 1
    assert committed_stock(engine) == 11

    cache.write(db, NS, PID, set_stock(12), product_dict)  # the same session, right after
    assert committed_stock(engine) == 12
    assert cache.read(db, NS, PID, must_not_read, product_dict)["stock"] == 12


def test_failing_writer_rolls_back_its_changes(db, engine, redis_conn, make_cache, events, versioned):
    """1. A writer that raises midway: rollback, no commit, its half-made change is not committed later."""
    cache = make_cache(versioned=versioned)
    cache.write(db, NS, PID, set_stock(11), product_dict)
    before = redis_conn.get(cache.key(NS, PID))

    class WriterError(Exception):
        pass

    def half_writer(session):
        session.get(Product, PID).name = "half-written"
        raise WriterError("boom")

    events.clear()
    with pytest.raises(WriterError):
        cache.write(db, NS, PID, half_writer, product_dict)
    assert events == ["db.rollback"]
    assert redis_conn.get(cache.key(NS, PID)) == before
    cache.write(db, NS, PID, set_stock(12), product_dict)
    with Session(engine) as other:
        assert other.get(Product, PID).name != "half-written"


# -- 2. the cache update fails after the commit -----------------------------------------------


@pytest.mark.parametrize(
    "error",
    [redis.ConnectionError("refused"), redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'")],
    ids=["unavailable", "oom"],
)
def test_failed_cache_update_invalidates_and_returns_the_result(db, engine, redis_conn, recorded_cache, versioned, error):
    """2. The commit stands, the writer's result is returned, the old entry is invalidated and the error counted."""
    good = recorded_cache(versioned=versioned)
    good.write(db, NS, PID, set_stock(11), product_dict)
    # versioned: the tombstone is an EVALSHA too, so only the first one (the update) fails
    failing = recorded_cache(versioned=versioned, fail={"evalsha": [error]} if versioned else {"set": error})
    product = failing.write(db, NS, PID, set_stock(12), product_dict)
    assert isinstance(product, Product) and product.stock == 12
    assert committed_stock(engine) == 12
    raw = redis_conn.get(failing.key(NS, PID))
    if versioned:
        assert decode(raw).tombstone
    else:
        assert raw is None
    assert failing.stats.cache_errors == 1 and failing.stats.invalidations == 1
    assert failing.read(db, NS, PID, read_product, product_dict)["stock"] == 12


# -- 3. the invalidation fails too: repaired when Redis answers again ------------------------


def test_failed_invalidation_is_repaired_before_anything_is_served(db, engine, redis_conn, recorded_cache, versioned):
    """3. Set and invalidation both fail: the stale key is remembered and invalidated before the next read."""
    cache = recorded_cache(versioned=versioned, breaker=False)
    cache.write(db, NS, PID, set_stock(11), product_dict)  # the entry that will be stale
    down = redis.ConnectionError("refused")
    cache.proxy.fail = {"set": down, "evalsha": down, "delete": down}
    assert cache.write(db, NS, PID, set_stock(12), product_dict).stock == 12
    assert decode(redis_conn.get(cache.key(NS, PID))).data["stock"] == 11  # stale, for now
    assert len(cache.state.suspects) == 1

    cache.proxy.fail = {}  # Redis answers again
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 12
    assert len(cache.state.suspects) == 0 and cache.stats.suspects_repaired == 1


# -- 4. anything else fails after the commit -------------------------------------------------


class SerializeError(Exception):
    pass


def _raise(p):
    raise SerializeError("cannot serialize")


BAD_SERIALIZERS = {
    "raises": (_raise, SerializeError),
    "set": (lambda p: {**product_dict(p), "tags": {"a", "b"}}, TypeError),
    "datetime": (lambda p: {**product_dict(p), "at": datetime(2024, 1, 1)}, TypeError),
    "nan": (lambda p: {**product_dict(p), "price": float("nan")}, ValueError),
    "not-a-dict": (lambda p: [p.id, p.stock], (TypeError, ValueError)),
}


@pytest.mark.parametrize("bad", BAD_SERIALIZERS)
def test_failure_after_commit_removes_the_old_entry(db, engine, redis_conn, make_cache, versioned, bad):
    """4. serialize raising or a non-JSON value: the row is committed, the old entry is gone, the error propagates."""
    serialize, error = BAD_SERIALIZERS[bad]
    cache = make_cache(versioned=versioned)
    cache.write(db, NS, PID, set_stock(11), product_dict)
    key = cache.key(NS, PID)
    assert decode(redis_conn.get(key)).data["stock"] == 11

    with pytest.raises(error):
        cache.write(db, NS, PID, set_stock(99), serialize)
    assert committed_stock(engine) == 99
    raw = redis_conn.get(key)
    if versioned:
        assert decode(raw).tombstone and decode(raw).data is None
    else:
        assert raw is None
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 99


def test_versioned_value_without_a_version_removes_the_old_entry(db, engine, redis_conn, make_cache):
    """4. Versioned mode and no integer version in the value: committed, old entry tombstoned, ValueError naming the field."""
    cache = make_cache(versioned=True)
    cache.write(db, NS, PID, set_stock(11), product_dict)
    with pytest.raises(ValueError, match="'version'"):
        cache.write(db, NS, PID, set_stock(99), lambda p: {"id": p.id, "stock": p.stock})
    assert committed_stock(engine) == 99
    assert decode(redis_conn.get(cache.key(NS, PID))).tombstone
    assert cache.read(db, NS, PID, read_product, product_dict)["stock"] == 99


# -- 6. corrupt and foreign payloads --------------------------------------------------------


# Pickle bytes, written out so that no test imports pickle: {"id": "p-1", "stock": 50} at protocol 4,
# and a protocol-0 pickle that, were it ever loaded, would set an environment variable.
PICKLED_DICT = b"\x80\x04\x95\x1a\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x02id\x94\x8c\x03p-1\x94\x8c\x05stock\x94K2u."
PICKLED_EXPLOIT = b"cbuiltins\nexec\n(Vimport os; os.environ['WTSIM_UNPICKLED'] = '1'\ntR."

CORRUPT_PAYLOADS = {
    "garbage": b"\x80\xff\x00\x13garbage",
    "article-json": ARTICLE_PAYLOAD.encode(),
    "truncated": encode({"id": PID, "stock": 50}, 1).encode()[:-3],
    "json-list": b"[1, 2, 3]",
    "bool-version": json.dumps({"v": True, "d": {"id": PID, "stock": 50}}).encode(),
    "pickle": PICKLED_DICT,
    "foreign-with-v": json.dumps({"v": 10**6, "id": PID, "stock": 50}).encode(),
    "bool-tombstone": json.dumps({"v": None, "t": True}).encode(),
}


@pytest.mark.parametrize("payload", CORRUPT_PAYLOADS.values(), ids=CORRUPT_PAYLOADS.keys())
def test_corrupt_or_foreign_payload_is_a_miss_and_is_overwritten(db, engine, redis_conn, make_cache, versioned, payload):
    """6. A payload that is not our envelope reads as a miss, the DB value is returned and stored properly."""
    cache = make_cache(versioned=versioned)
    key = cache.key(NS, PID)
    redis_conn.set(key, payload)
    data = cache.read(db, NS, PID, read_product, product_dict)
    assert data["stock"] == committed_stock(engine) != 50
    assert cache.stats.corrupt == 1 and cache.stats.misses == 1 and cache.stats.hits == 0
    raw = redis_conn.get(key)
    assert json.loads(raw)["d"] == data  # a proper envelope now
    assert cache.read(db, NS, PID, must_not_read, product_dict) == data


@pytest.mark.parametrize("payload", CORRUPT_PAYLOADS.values(), ids=CORRUPT_PAYLOADS.keys())
def test_write_overwrites_a_corrupt_payload(db, redis_conn, make_cache, versioned, payload):
    """6. A write replaces whatever foreign bytes sit at the key."""
    cache = make_cache(versioned=versioned)
    redis_conn.set(cache.key(NS, PID), payload)
    cache.write(db, NS, PID, set_stock(17), product_dict)
    assert cache.read(db, NS, PID, must_not_read, product_dict)["stock"] == 17


# -- 8. JSON only ---------------------------------------------------------------------------


def test_entries_are_json_and_pickles_are_never_loaded(db, redis_conn, make_cache, versioned):
    """8. What the cache stores is JSON text; a pickle found at a key is never unpickled."""
    cache = make_cache(versioned=versioned)
    cache.write(db, NS, PID, set_stock(5), product_dict)
    stored = json.loads(redis_conn.get(cache.key(NS, PID)).decode("utf-8"))
    assert stored["d"]["stock"] == 5

    os.environ.pop("WTSIM_UNPICKLED", None)
    redis_conn.set(cache.key(NS, "p-2"), PICKLED_EXPLOIT)
    assert cache.read(db, NS, "p-2", lambda s: s.get(Product, "p-2"), product_dict)["id"] == "p-2"
    assert "WTSIM_UNPICKLED" not in os.environ


# -- 10. logging, never printing -------------------------------------------------------------


def test_never_prints_and_logs_only_through_wtsim_loggers(db, redis_conn, recorded_cache, capsys, caplog, versioned):
    """10. A full write/read/failure cycle prints nothing; every log record comes from a 'wtsim...' logger."""
    caplog.set_level(logging.DEBUG, logger="wtsim")
    cache = recorded_cache(versioned=versioned, breaker=False)
    cache.write(db, NS, PID, set_stock(5), product_dict)
    cache.read(db, NS, PID, must_not_read, product_dict)
    cache.invalidate(NS, PID)
    cache.read(db, NS, PID, read_product, product_dict)
    with pytest.raises(IntegrityError):
        cache.write(db, NS, PID, violate_not_null, product_dict)
    with pytest.raises(SerializeError):
        cache.write(db, NS, PID, set_stock(6), _raise)
    redis_conn.set(cache.key(NS, PID), b"\xffgarbage")
    cache.read(db, NS, PID, read_product, product_dict)
    down = redis.ConnectionError("refused")
    cache.proxy.fail = {"get": down, "set": down, "evalsha": down, "delete": down}
    cache.write(db, NS, PID, set_stock(7), product_dict)
    cache.read(db, NS, PID, read_product, product_dict)
    cache.proxy.fail = {}
    cache.read(db, NS, PID, read_product, product_dict)  # repairs

    assert capsys.readouterr() == ("", "")
    names = {r.name for r in caplog.records}
    assert names and all(n == "wtsim" or n.startswith("wtsim.") for n in names), names
    levels = {r.levelno for r in caplog.records}
    assert {logging.WARNING, logging.ERROR} <= levels


def test_library_is_silent_without_logging_configuration(tmp_path):
    """10. With no logging configured, even ERROR records reach neither stdout nor stderr."""
    script = textwrap.dedent(
        """
        import fakeredis
        from sqlalchemy.orm import Session
        from wtsim import WriteThroughCache, make_engine
        from wtsim.models import Product, load_catalog, product_dict

        engine = make_engine("sqlite://")
        load_catalog(engine)
        server = fakeredis.FakeServer()
        cache = WriteThroughCache(fakeredis.FakeRedis(server=server), breaker=False)

        def writer(session):
            product = session.get(Product, "p-1")
            product.stock += 1
            return product

        with Session(engine) as db:
            cache.write(db, "products", "p-1", writer, product_dict)
            server.connected = False  # set and delete fail: WARNING and ERROR records
            cache.write(db, "products", "p-1", writer, product_dict)
            server.connected = True
            cache.read(db, "products", "p-1", lambda s: s.get(Product, "p-1"), product_dict)
        assert cache.stats.cache_errors >= 2 and cache.stats.suspects_repaired == 1, cache.stats
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
