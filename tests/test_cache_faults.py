"""Fault tests of WriteThroughCache against a redis-server of its own (issue 2, points 2, 3, 5, 6, 7).

Each test starts a private ``redis-server`` on a free port (see ``servers.py``),
because it kills, hangs or limits it; the shared Redis is never touched. The
cache uses ``wtsim.redis_client`` (fail-fast timeouts of 0.25 s, no retries), the
database is SQLite in the test's ``tmp_path``. Cool-downs of the circuit
breaker run on a fake clock, never on sleeps.
"""

from __future__ import annotations

import logging
import pickle
import time

import pytest
from sqlalchemy.orm import Session

from servers import HangProxy
from wtsim import CircuitBreaker, WriteThroughCache, codec, make_engine, redis_client
from wtsim.keys import namespace_prefix
from wtsim.models import Product, load_catalog, product_dict

pytestmark = pytest.mark.redis_server

NS = "products"
PID = "p-1"  # the catalog row: stock 333, version 1
COOLDOWN = 5.0


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def proxy(server):
    """A HangProxy in front of the private server."""
    with HangProxy.for_server(server) as px:
        yield px


@pytest.fixture
def engine(tmp_path):
    """SQLite only (overrides the conftest engine): these tests are about Redis."""
    eng = make_engine(f"sqlite:///{tmp_path / 'faults.db'}")
    load_catalog(eng, reset=True)
    yield eng
    eng.dispose()


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def make_cache(clock):
    """Factory: a WriteThroughCache on a fail-fast client of ``url``, breaker on the fake clock."""
    clients = []

    def make(url: str, *, threshold: int = 3, breaker: bool = True, **options) -> WriteThroughCache:
        client = redis_client(url)
        clients.append(client)
        if breaker:
            options["breaker"] = CircuitBreaker(failure_threshold=threshold, cooldown_s=COOLDOWN, clock=clock)
        else:
            options["breaker"] = False
        return WriteThroughCache(client, **options)

    yield make
    for client in clients:
        client.close()


def get_product(pid: str = PID):
    return lambda db: db.get(Product, pid)


def set_stock(stock: int, pid: str = PID):
    def writer(db):
        product = db.get(Product, pid)
        product.stock = stock
        return product

    return writer


def db_row(engine, pid: str = PID) -> dict:
    """The row as the database has it now, read on a session of its own."""
    with Session(engine) as s:
        return product_dict(s.get(Product, pid))


def cached(raw, cache: WriteThroughCache, pid: str = PID, ns: str = NS) -> codec.Entry | None:
    """What Redis holds at the entry's key, decoded; ``None`` when there is no key."""
    payload = raw.get(cache.key(ns, pid))
    return None if payload is None else codec.decode(payload)


# -- point 5: Redis refuses connections ----------------------------------------------------------


@pytest.mark.parametrize("breaker", [True, False], ids=["breaker", "no-breaker"])
def test_refused_redis_reads_and_writes_use_the_database_fast(server, engine, db, make_cache, clock, breaker):
    """Redis down (refusing): reads come from the DB, writes commit DB-only, no exception, fast."""
    cache = make_cache(server.url, breaker=breaker)
    assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 333  # cached while up
    server.stop()

    started = time.monotonic()
    for i in range(10):
        product = cache.write(db, NS, PID, set_stock(100 + i), product_dict)
        assert product.stock == 100 + i  # the committed result, not an error
        assert db_row(engine)["stock"] == 100 + i
        data = cache.read(db, NS, PID, get_product(), product_dict)
        assert data["stock"] == 100 + i and data["version"] == 2 + i
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"20 calls on a refusing Redis took {elapsed:.2f}s"

    stats = cache.stats
    assert stats.db_writes == 10 and stats.cache_errors >= 1
    if breaker:
        assert cache.breaker.state == "open"
        assert stats.cache_skipped > 0
    else:
        assert stats.cache_errors >= 20  # every call asked Redis, and was refused at once
    assert cache.key(NS, PID) in cache.state.suspects.keys  # written while down: remembered


def test_refused_redis_back_again_serves_from_the_cache(server, engine, db, make_cache, clock, raw):
    """Redis down and back: once the cool-down ends, a probe closes the breaker and reads hit again."""
    cache = make_cache(server.url)
    cache.read(db, NS, PID, get_product(), product_dict)
    server.stop()
    for i in range(5):
        cache.write(db, NS, PID, set_stock(i), product_dict)
    assert cache.breaker.state == "open"

    server.start()  # same port, empty
    clock.advance(COOLDOWN)
    assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 4  # the probe
    assert cache.breaker.state == "closed"
    assert not cache.state.suspects
    hits = cache.stats.hits
    assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 4
    assert cache.stats.hits == hits + 1
    assert cached(raw, cache).data["stock"] == 4


# -- point 5: Redis hangs ------------------------------------------------------------------------


def test_hung_redis_costs_timeouts_only_until_the_breaker_opens(proxy, db, make_cache, clock):
    """A hung Redis: the first calls pay the socket timeout, then the breaker skips Redis entirely."""
    cache = make_cache(proxy.url, threshold=3)
    cache.read(db, NS, PID, get_product(), product_dict)
    assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 333
    assert cache.stats.hits == 1

    proxy.hang()
    started = time.monotonic()
    while cache.breaker.state == "closed":
        assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 333
        assert time.monotonic() - started < 5, "the breaker never opened"
    paid = time.monotonic() - started
    assert cache.stats.cache_errors == 3  # exactly failure_threshold timeouts were paid
    assert paid >= 0.5  # they were real socket timeouts (3 x 0.25 s)
    assert cache.breaker.state == "open"

    skipped = cache.stats.cache_skipped
    started = time.monotonic()
    for _ in range(20):
        assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 333
    elapsed = time.monotonic() - started
    assert elapsed < 0.2, f"20 reads with the breaker open took {elapsed:.2f}s"
    assert cache.breaker.state == "open"
    assert cache.stats.cache_skipped >= skipped + 20
    assert cache.stats.cache_errors == 3

    proxy.resume()
    clock.advance(COOLDOWN - 0.1)
    assert cache.breaker.state == "open"  # still cooling down: no probe yet
    clock.advance(0.1)
    hits = cache.stats.hits
    assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 333  # the probe
    assert cache.breaker.state == "closed"
    assert cache.stats.hits == hits + 1  # served from the cache again
    cache.read(db, NS, PID, get_product(), product_dict)
    assert cache.stats.hits == hits + 2


def test_hung_redis_probe_that_fails_reopens_the_breaker(proxy, db, make_cache, clock):
    """After the cool-down one probe goes out; when Redis still hangs it opens again for a cool-down."""
    cache = make_cache(proxy.url, threshold=1)
    proxy.hang()
    cache.read(db, NS, PID, get_product(), product_dict)
    assert cache.breaker.state == "open" and cache.stats.cache_errors == 1
    clock.advance(COOLDOWN)
    started = time.monotonic()
    for _ in range(5):
        assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 333
    assert time.monotonic() - started < 1.0  # not five timeouts: one probe, the rest skipped
    assert cache.stats.cache_errors == 2
    assert cache.breaker.state == "open"


# -- point 2: the cache update fails after the commit ------------------------------------------


@pytest.mark.parametrize("versioned", [False, True], ids=["naive", "versioned"])
def test_oom_write_returns_committed_result_and_invalidates(server, raw, engine, db, make_cache, versioned):
    """Writes refused with OOM: the write returns the committed result, the old entry goes, reads see the new row."""
    cache = make_cache(server.url, versioned=versioned)
    cache.read(db, NS, PID, get_product(), product_dict)
    assert cached(raw, cache).data["stock"] == 333

    raw.config_set("maxmemory-policy", "noeviction")
    raw.config_set("maxmemory", 1)
    with pytest.raises(Exception, match="maxmemory"):
        raw.set("probe", "x")  # the server does refuse writes now

    product = cache.write(db, NS, PID, set_stock(7), product_dict)
    assert product.stock == 7 and product.version == 2
    assert db_row(engine)["stock"] == 7
    assert cache.stats.cache_errors >= 1  # versioned: the tombstone (a write) is refused too, then DEL
    assert cache.stats.invalidations == 1
    assert raw.exists(cache.key(NS, PID)) == 0  # the old entry is gone (DEL works under OOM)
    assert not cache.state.suspects

    data = cache.read(db, NS, PID, get_product(), product_dict)
    assert data["stock"] == 7 and data["version"] == 2  # never the old 333
    assert cache.stats.hits == 0 and cache.stats.misses == 2  # from the DB, not the cache
    assert cache.breaker.state == "closed"  # an error reply is not an outage


# -- point 3: the invalidation fails too -------------------------------------------------------


@pytest.mark.parametrize(
    "versioned,outage_repair",
    [(False, True), (True, True), (False, False)],
    ids=["naive-repair", "versioned-repair", "naive-no-repair"],
)
def test_key_written_while_redis_hung_is_invalidated_before_it_is_served(
    proxy, raw, engine, db, make_cache, caplog, versioned, outage_repair
):
    """v1 cached, Redis hangs, v2 written DB-only, Redis back with v1: the read gives v2 (v1 without repair)."""
    cache = make_cache(proxy.url, versioned=versioned, outage_repair=outage_repair)
    cache.read(db, NS, PID, get_product(), product_dict)  # v1 cached

    proxy.hang()
    with caplog.at_level(logging.ERROR, logger="wtsim"):
        product = cache.write(db, NS, PID, set_stock(7), product_dict)
    assert product.stock == 7 and product.version == 2
    assert cache.stats.cache_errors == 2  # the update and the invalidation both timed out
    assert cache.key(NS, PID) in cache.state.suspects.keys
    assert any(r.levelno == logging.ERROR and "remembered" in r.getMessage() for r in caplog.records)

    proxy.resume()
    assert cached(raw, cache).data["stock"] == 333  # Redis still holds v1 behind the proxy
    data = cache.read(db, NS, PID, get_product(), product_dict)
    if outage_repair:
        assert data["stock"] == 7 and data["version"] == 2
        assert cache.stats.suspects_repaired == 1
        assert not cache.state.suspects
        assert cached(raw, cache).data["stock"] == 7
        assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 7
    else:
        # The article's flaw: the stale entry is served until its TTL runs out.
        assert data["stock"] == 333 and data["version"] == 1
        assert db_row(engine)["stock"] == 7


def test_keys_written_while_the_breaker_is_open_are_remembered(proxy, raw, db, make_cache, clock):
    """Writes skipped by the open breaker remember their key; the repair runs before the probe's read."""
    cache = make_cache(proxy.url, threshold=1)
    cache.read(db, NS, PID, get_product(), product_dict)  # v1 cached
    proxy.hang()
    cache.read(db, NS, "p-2", get_product("p-2"), product_dict)  # one timeout trips the breaker
    assert cache.breaker.state == "open"

    started = time.monotonic()
    product = cache.write(db, NS, PID, set_stock(7), product_dict)
    assert time.monotonic() - started < 0.2  # no timeout paid: Redis was skipped
    assert product.stock == 7
    assert cache.key(NS, PID) in cache.state.suspects.keys
    assert cache.stats.cache_errors == 1 and cache.stats.cache_skipped >= 2
    assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 7  # from the DB

    proxy.resume()
    clock.advance(COOLDOWN)
    assert cached(raw, cache).data["stock"] == 333  # the stale v1 is still in Redis
    assert cache.read(db, NS, PID, get_product(), product_dict)["stock"] == 7
    assert cache.breaker.state == "closed"
    assert cache.stats.suspects_repaired == 1
    assert cached(raw, cache).data["stock"] == 7


def test_too_many_remembered_keys_purge_the_namespace(proxy, raw, engine, db, make_cache, clock):
    """Past max_suspects the namespace is remembered instead, and the repair purges all of its keys."""
    cache = make_cache(proxy.url, threshold=1, max_suspects=3)
    pids = [f"p-{i}" for i in range(1, 8)]
    for pid in pids:
        cache.read(db, NS, pid, get_product(pid), product_dict)
    other = "products-archive"  # shares the prefix "products" as text, not as a namespace
    cache.read(db, other, PID, get_product(), product_dict)
    assert len(raw.keys(namespace_prefix(cache.config.prefix, NS) + "*")) == 7

    proxy.hang()
    cache.read(db, NS, PID, get_product(), product_dict)  # trips the breaker
    for i, pid in enumerate(pids[:5]):
        cache.write(db, NS, pid, set_stock(i, pid), product_dict)
    suspects = cache.state.suspects
    assert len(suspects.keys) == 0  # the namespace replaced its keys
    assert list(suspects.namespaces) == [namespace_prefix(cache.config.prefix, NS)]

    proxy.resume()
    clock.advance(COOLDOWN)
    hits = cache.stats.hits
    assert cache.read(db, other, PID, get_product(), product_dict)["stock"] == 333
    assert cache.stats.hits == hits + 1  # the other namespace survived the purge
    assert cache.stats.namespaces_purged == 1
    assert raw.keys(namespace_prefix(cache.config.prefix, NS) + "*") == []
    assert raw.exists(cache.key(other, PID)) == 1
    assert not suspects
    assert cache.read(db, NS, "p-1", get_product("p-1"), product_dict)["stock"] == 0
    assert cache.read(db, NS, "p-6", get_product("p-6"), product_dict)["stock"] == db_row(engine, "p-6")["stock"]


# -- point 6: a corrupt or foreign payload ---------------------------------------------------


@pytest.mark.parametrize("versioned", [False, True], ids=["naive", "versioned"])
@pytest.mark.parametrize(
    "payload",
    [b"\x80\x81\xfe not utf-8", b'{"v": 1, "d": ', b'{"foo": 1}', b"[1, 2, 3]", pickle.dumps({"d": {"stock": 1}})],
    ids=["bytes", "truncated", "foreign-json", "json-list", "pickle"],
)
def test_corrupt_payload_is_a_miss_and_is_overwritten(server, raw, db, make_cache, versioned, payload):
    """Whatever another program left at the key is a miss; the DB value replaces it."""
    cache = make_cache(server.url, versioned=versioned)
    raw.set(cache.key(NS, PID), payload)
    data = cache.read(db, NS, PID, get_product(), product_dict)
    assert data["stock"] == 333
    assert cache.stats.misses == 1 and cache.stats.corrupt == 1 and cache.stats.cache_sets == 1
    entry = cached(raw, cache)
    assert entry.data == data
    assert cache.read(db, NS, PID, get_product(), product_dict) == data
    assert cache.stats.hits == 1


# -- point 7: injective keys -----------------------------------------------------------------


def test_colliding_keys_of_the_article_are_different_entries(server, raw, db, make_cache):
    """("a:b", "c") and ("a", "b:c") share the article's key, but not ours: writing one leaves the other."""
    assert f"wtc:{'a:b'}:{'c'}" == f"wtc:{'a'}:{'b:c'}"  # the article's scheme collides
    cache = make_cache(server.url)
    first, second = ("a:b", "c"), ("a", "b:c")
    assert cache.key(*first) != cache.key(*second)

    def value(v):
        return lambda db: {"who": v}

    cache.write(db, *first, value("first"), dict)
    cache.write(db, *second, value("second"), dict)
    assert raw.dbsize() == 2

    def must_hit(db):
        raise AssertionError("expected a cache hit")

    assert cache.read(db, *first, must_hit, dict) == {"who": "first"}
    assert cache.read(db, *second, must_hit, dict) == {"who": "second"}
    cache.write(db, *second, value("second, again"), dict)
    assert cache.read(db, *first, must_hit, dict) == {"who": "first"}


def test_keys_with_any_characters_are_distinct_entries_with_one_hash_tag(server, raw, db, make_cache):
    """':', spaces, braces, glob characters and unicode never make two entries share a key."""
    pairs = [
        ("a:b", "c"), ("a", "b:c"), ("a b", "c"), ("a", "b c"), ("{a}", "b"), ("a", "{b}"),
        ("a}", "{b"), ("*", "?"), ("[x]", "\\"), ("ü", "ß"), ("%3A", ":"), (":", "%3A"), ("", "x"), ("x", ""),
    ]
    cache = make_cache(server.url)
    keys = {cache.key(ns, eid) for ns, eid in pairs}
    assert len(keys) == len(pairs)
    for key in keys:
        # Exactly one {...}: Redis Cluster hashes only "namespace:entity", so an entry's keys share a slot.
        assert key.count("{") == 1 and key.count("}") == 1 and key.endswith("}")
    for i, (ns, eid) in enumerate(pairs):
        cache.write(db, ns, eid, lambda db, i=i: {"i": i}, dict)
    assert raw.dbsize() == len(pairs)
    for i, (ns, eid) in enumerate(pairs):
        assert cache.read(db, ns, eid, lambda db: None, dict) == {"i": i}
    assert cache.stats.hits == len(pairs)


# -- versioned mode on a real Redis ----------------------------------------------------------


def versioned_row(version: int, stock: int) -> dict:
    return {"id": PID, "stock": stock, "version": version}


def test_versioned_compare_and_set_refuses_an_older_version(server, raw, db, make_cache):
    """The Lua compare-and-set keeps the newest version: an older one never replaces it."""
    cache = make_cache(server.url, versioned=True)
    cache.write(db, NS, PID, lambda db: versioned_row(5, 50), dict)
    cache.write(db, NS, PID, lambda db: versioned_row(3, 30), dict)  # late and older
    assert cache.stats.refused_older == 1
    entry = cached(raw, cache)
    assert entry.version == 5 and entry.data["stock"] == 50
    cache.write(db, NS, PID, lambda db: versioned_row(6, 60), dict)
    assert cached(raw, cache).data["stock"] == 60
    assert cache.stats.cache_sets == 2


def wait_until_gone(raw, key: str, limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while raw.exists(key):
        assert time.monotonic() < deadline, f"{key} did not expire"
        time.sleep(0.02)


def test_versioned_tombstone_refuses_older_populate_and_expires(server, raw, db, make_cache):
    """A tombstone of version 5 refuses a populate of version 4, until it expires."""
    cache = make_cache(server.url, versioned=True, tombstone_ttl=0.3)
    cache.write(db, NS, PID, lambda db: versioned_row(4, 40), dict)
    assert cache.invalidate(NS, PID, version=5)
    entry = cached(raw, cache)
    assert entry.tombstone and entry.version == 5
    assert 0 < raw.pttl(cache.key(NS, PID)) <= 300

    data = cache.read(db, NS, PID, lambda db: versioned_row(4, 40), dict)  # a slow reader's older row
    assert data["version"] == 4  # it answers what it read ...
    assert cache.stats.refused_older == 1  # ... but may not cache it
    assert cached(raw, cache).tombstone

    assert cache.read(db, NS, PID, lambda db: versioned_row(5, 50), dict)["version"] == 5
    assert cached(raw, cache).data["stock"] == 50  # the invalidated version itself may come back

    cache.invalidate(NS, PID, version=6)
    wait_until_gone(raw, cache.key(NS, PID))
    cache.read(db, NS, PID, lambda db: versioned_row(4, 40), dict)
    assert cached(raw, cache).version == 4  # once the tombstone expired, populating works again
    assert cache.stats.refused_older == 1


def test_versioned_tombstone_of_unknown_version_refuses_every_populate(server, raw, db, make_cache):
    """cache.invalidate without a version leaves a tombstone that refuses any populate until it expires."""
    cache = make_cache(server.url, versioned=True, tombstone_ttl=0.3)
    cache.write(db, NS, PID, lambda db: versioned_row(4, 40), dict)
    assert cache.invalidate(NS, PID)
    cache.read(db, NS, PID, lambda db: versioned_row(99, 990), dict)
    assert cache.stats.refused_older == 1
    entry = cached(raw, cache)
    assert entry.tombstone and entry.version is None
    wait_until_gone(raw, cache.key(NS, PID))
    cache.read(db, NS, PID, lambda db: versioned_row(99, 990), dict)
    assert cached(raw, cache).version == 99


@pytest.mark.parametrize("factory", ["sync", "async"])
def test_a_new_connection_does_not_look_up_the_driver_version(factory, monkeypatch):
    """Under a fault nearly every request opens a connection: it must not read package metadata each time."""
    import importlib.metadata

    from wtsim.aio import async_redis_client

    pytest.importorskip("redis.driver_info", reason="redis-py before 7 computes its version once, at import")

    make = redis_client if factory == "sync" else async_redis_client
    client = make("redis://127.0.0.1:1/0", max_connections=10)

    def no_lookup(name):
        raise AssertionError(f"importlib.metadata.version({name!r}) for a new connection")

    monkeypatch.setattr(importlib.metadata, "version", no_lookup)
    first, second = (client.connection_pool.make_connection() for _ in range(2))
    assert first.driver_info is second.driver_info is not None  # one description, made once, for all
