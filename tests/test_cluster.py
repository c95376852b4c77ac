"""Redis Cluster: what only a cluster can break, on private clusters the tests start.

The contract suites (``test_cache_contract``, ``test_cache_aside_contract``)
already run on the session's cluster. Here: a namespace purge that must reach
every primary, tombstones over keys of many slots, write-behind refusing a
cluster, and failovers (``kill -9`` of a primary) on clusters of their own.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import pytest
import redis
from redis.cluster import RedisCluster
from sqlalchemy import select
from sqlalchemy.orm import Session

from servers import RedisClusterServers, redis_server_binary
from wtsim import (CacheAside, CircuitBreaker, WriteBehindCache, WriteBehindFlusher, WriteThroughCache, make_engine,
                   redis_client)
from wtsim.codec import decode, encode
from wtsim.keys import namespace_prefix
from wtsim.models import Product, load_catalog, product_dict
from wtsim.ops import CacheGet, CachePurge, CacheTombstone, CacheUnavailable

pytestmark = pytest.mark.redis_server


@pytest.fixture
def prefix(cluster_redis):
    """A prefix of this test alone; its keys are deleted afterwards."""
    name = f"wtk{uuid.uuid4().hex[:10]}"
    yield name
    keys = list(cluster_redis.scan_iter(match=f"{name}:*", count=1000))
    if keys:
        cluster_redis.delete(*keys)


def primary_port(client: RedisCluster, key: str) -> int:
    return client.get_node_from_key(key).port


# -- purge and tombstones over many slots ---------------------------------------------------


def test_purge_reaches_every_primary_and_keeps_other_keys(cluster_redis, prefix):
    cache = WriteThroughCache(cluster_redis, prefix=prefix)
    doomed = [cache.key("items", i) for i in range(300)]
    kept = [cache.key("other", i) for i in range(50)] + [f"{prefix}x:{{items:{i}}}" for i in range(50)]
    for key in doomed + kept:
        cluster_redis.set(key, b"x")
    assert len(Counter(primary_port(cluster_redis, k) for k in doomed)) == 3  # on every primary
    assert len({cluster_redis.keyslot(k) for k in doomed}) > 250  # in many slots

    assert cache.perform(CachePurge(namespace_prefix(prefix, "items")), None) == len(doomed)

    assert sum(cluster_redis.exists(k) for k in doomed) == 0
    assert sum(cluster_redis.exists(k) for k in kept) == len(kept)


def test_overflowing_suspects_purge_the_namespace_on_every_primary(cluster_redis, prefix, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    load_catalog(engine)
    cache = WriteThroughCache(cluster_redis, prefix=prefix, versioned=True, max_suspects=2, breaker=False)
    with Session(engine) as db:
        ids = db.scalars(select(Product.id).limit(40)).all()
        for pid in ids:  # cached all over the cluster
            cache.read(db, "products", pid, lambda s, pid=pid: s.get(Product, pid), product_dict)
    assert len(Counter(primary_port(cluster_redis, cache.key("products", p)) for p in ids)) == 3
    for pid in ids[:3]:  # more than max_suspects: the namespace is remembered instead of the keys
        cache.state.suspects.add(cache.key("products", pid), None, namespace_prefix(prefix, "products"))
    assert cache.state.suspects.namespaces

    with Session(engine) as db:
        cache.read(db, "products", "nothing-here", lambda s: None, product_dict)  # repairs first

    assert cache.stats.namespaces_purged == 1
    assert sum(cluster_redis.exists(cache.key("products", p)) for p in ids) == 0


def test_tombstones_over_many_slots_each_land_on_their_primary(cluster_redis, prefix):
    cache = CacheAside(cluster_redis, prefix=prefix, versioned=True, tombstone_ttl=30)
    keys = [cache.key("items", i) for i in range(60)]
    for i, key in enumerate(keys):
        cluster_redis.set(key, encode({"i": i, "version": 5}, 5))
    newer = keys[::3]  # these hold version 5, newer than the tombstones' 4: kept
    entries = tuple((k, 4 if k in newer else 7) for k in keys)

    cache.perform(CacheTombstone(entries, 30.0), None)

    assert len(Counter(primary_port(cluster_redis, k) for k in keys)) == 3
    for key, version in entries:
        entry = decode(cluster_redis.get(key))
        if key in newer:
            assert entry.data is not None and entry.version == 5, key
        else:
            assert entry.tombstone and entry.version == 7, key
            assert 25_000 < cluster_redis.pttl(key) <= 30_000


def test_failed_invalidations_over_many_slots_are_repaired_when_the_cache_answers(cluster_redis, prefix):
    cache = CacheAside(cluster_redis, prefix=prefix, versioned=True, tombstone_ttl=30, breaker=False)
    keys = {cache.key("items", i): i for i in range(30)}
    for key in keys:
        cluster_redis.set(key, encode({"stale": True, "version": 1}, 1))
        cache.state.suspects.add(key, 2, namespace_prefix(prefix, "items"))  # as an invalidation that failed

    assert cache.read(None, "items", "other", lambda s: None, dict) is None  # the first op repairs

    assert cache.stats.suspects_repaired == len(keys) and not cache.state.suspects.keys
    assert all(decode(cluster_redis.get(k)).tombstone for k in keys)


# -- the cluster's errors -----------------------------------------------------------------


@pytest.mark.parametrize("error", [
    redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down"),
    redis.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"),
    redis.exceptions.TryAgainError("TRYAGAIN"),
    redis.exceptions.SlotNotCoveredError("slot 42 is not covered"),
    redis.exceptions.RedisClusterException("Redis Cluster cannot be connected"),
    redis.exceptions.MaxConnectionsError("Too many connections"),
])
def test_cluster_errors_are_cache_unavailable(cluster_redis, prefix, monkeypatch, error):
    cache = WriteThroughCache(cluster_redis, prefix=prefix)

    def fails(*args, **kwargs):
        raise error

    monkeypatch.setattr(cluster_redis, "get", fails)
    with pytest.raises(CacheUnavailable, match=type(error).__name__):
        cache.perform(CacheGet(cache.key("items", 1)), None)


def test_write_behind_refuses_a_cluster(cluster_redis, tmp_path):
    with pytest.raises(TypeError, match="WriteBehindCache needs one Redis.*different hash slots"):
        WriteBehindCache(cluster_redis)
    with pytest.raises(TypeError, match="WriteBehindFlusher needs one Redis.*different hash slots"):
        WriteBehindFlusher(cluster_redis, make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"), {})


def test_redis_client_makes_a_fail_fast_cluster_client(redis_cluster_servers):
    client = redis_client(redis_cluster_servers.url, cluster=True)
    try:
        assert isinstance(client, RedisCluster)
        assert len(client.get_primaries()) == 3
        assert client.retry.get_retries() == 0
    finally:
        client.close()
    with pytest.raises(ValueError, match="redis://, rediss://"):
        redis_client("unix:///tmp/redis.sock", cluster=True)
    with pytest.raises(ValueError, match="needs the url"):
        redis_client(None, cluster=True)


# -- failover ------------------------------------------------------------------------------


@pytest.fixture
def own_cluster(tmp_path):
    """A cluster of this test alone (it will kill a node)."""
    redis_server_binary()
    with RedisClusterServers(tmp_path / "cluster") as servers:
        yield servers


@pytest.fixture
def catalog_engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    load_catalog(engine)
    yield engine
    engine.dispose()


def db_rows(engine) -> dict[str, dict]:
    with Session(engine) as s:
        return {p.id: product_dict(p) for p in s.scalars(select(Product))}


def bump_stock(pid: str):
    def writer(session: Session) -> Product:
        product = session.get(Product, pid)
        product.stock += 1
        return product

    return writer


def reader(pid: str):
    return lambda session: session.get(Product, pid)


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting until {what}")
        time.sleep(0.02)


def test_failover_under_load_loses_no_commit_and_serves_nothing_stale(own_cluster, catalog_engine):
    """kill -9 a primary while a writer and a reader run; after the promotion the cache answers, fresh.

    Writes go on through the outage: each commits, and its cache update fails
    (or the open breaker skips it), so the promoted replica holds an older
    version of those keys. Nothing writes them after the promotion: they are
    fresh only because outage repair tombstoned every key it could not update
    before the cache served anything again (with ``outage_repair=False`` this
    test fails on a stale entry).
    """
    client = redis_client(own_cluster.url, cluster=True, socket_timeout=1, connect_timeout=1)
    inspect = RedisCluster.from_url(own_cluster.url)
    cache = WriteThroughCache(client, prefix="fo", versioned=True,
                              breaker=CircuitBreaker(failure_threshold=3, cooldown_s=0.2))
    ids = sorted(db_rows(catalog_engine))[:60]
    initial = {pid: row["version"] for pid, row in db_rows(catalog_engine).items()}
    victim = own_cluster.node(primary_port(inspect, cache.key("products", ids[0])))
    victim_slot = inspect.keyslot(cache.key("products", ids[0]))
    on_victim = [p for p in ids if primary_port(inspect, cache.key("products", p)) == victim.port]
    assert len(on_victim) >= 5
    (victim_replica,) = own_cluster.replicas_of(victim)

    stop_writes, stop_reads = threading.Event(), threading.Event()
    committed: dict[str, int] = {}  # the version each successful write returned
    writes_ok = Counter()
    errors: list[BaseException] = []

    def write_load() -> None:
        with Session(catalog_engine) as db:
            n = 0
            while not stop_writes.is_set():
                pid = ids[n % len(ids)]
                n += 1
                try:
                    product = cache.write(db, "products", pid, bump_stock(pid), product_dict)
                    committed[pid] = product.version
                    writes_ok[pid] += 1
                except BaseException as exc:  # nothing may escape: a cache failure is never a failed write
                    errors.append(exc)
                    return

    def read_load() -> None:
        with Session(catalog_engine) as db:
            n = 0
            while not stop_reads.is_set():
                pid = ids[(n * 7) % len(ids)]
                n += 1
                try:
                    cache.read(db, "products", pid, reader(pid), product_dict)
                except BaseException as exc:
                    errors.append(exc)
                    return

    threads = [threading.Thread(target=f, daemon=True) for f in (write_load, read_load)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: sum(writes_ok.values()) >= 100 or errors, 30, "100 writes went through")
        errors_before = cache.stats.cache_errors
        victim.stop()  # kill -9, mid-load
        killed_at = time.monotonic()
        wait_until(lambda: cache.stats.cache_errors > errors_before or errors, 10, "the cache saw the failure")
        writes_then = sum(writes_ok.values())
        # Every key is written while its primary is dead or the breaker open: each such write commits,
        # but its cache update fails or is skipped, so Redis keeps the older version it had.
        wait_until(lambda: sum(writes_ok.values()) >= writes_then + len(ids) or errors, 30,
                   "the load went round every key during the outage")
        promoted = own_cluster.wait_failover(victim, victim_slot)
        promoted_after = time.monotonic() - killed_at
        assert promoted is victim_replica
        # From here on, no write refreshes an entry: what is fresh now was repaired.
        stop_writes.set()
        threads[0].join(timeout=30)
        hits_then = cache.stats.hits
        wait_until(lambda: (cache.stats.hits > hits_then + 50 and not cache.state.suspects) or errors,
                   30, "the cache answered the readers again")
    finally:
        stop_writes.set()
        stop_reads.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors
    assert cache.stats.cache_errors > errors_before  # the outage was seen ...
    assert cache.stats.suspects_repaired >= len(on_victim)  # ... and what it could not be told was repaired

    # Nothing the database committed is lost: every acknowledged write is there, no other.
    rows = db_rows(catalog_engine)
    for pid in ids:
        assert rows[pid]["version"] == committed[pid] == initial[pid] + writes_ok[pid], pid

    # Nothing is served stale: every entry Redis holds is the row, and reads through the cache agree.
    hits_before = cache.stats.hits
    with Session(catalog_engine) as db:
        for pid in ids:
            raw = inspect.get(cache.key("products", pid))
            entry = decode(raw) if raw is not None else None
            if entry is not None and entry.data is not None:
                assert entry.data == rows[pid], (pid, entry.data, rows[pid])
            assert cache.read(db, "products", pid, reader(pid), product_dict) == rows[pid], pid
        assert cache.stats.hits - hits_before >= len(ids) // 2  # answered by the cache, not only the database

        # And writes reach the promoted primary again.
        for pid in on_victim:
            written = product_dict(cache.write(db, "products", pid, bump_stock(pid), product_dict))
            assert decode(inspect.get(cache.key("products", pid))).data == written == db_rows(catalog_engine)[pid]
    print(f"promotion {promoted_after:.1f}s after the kill; stats {cache.stats.as_dict()}")
    client.close()
    inspect.close()


def cut_off_replica(own_cluster, cache, db, pid, primary_options: dict | None = None):
    """Write version N of ``pid`` and wait until the replica has it; then cut the replica off for good.

    Answers ``(primary, row N, replica client)``: the primary has
    ``primary_options`` set (``CONFIG SET``) before the cut.
    """
    key = cache.key("products", pid)
    primary = own_cluster.node(cache.redis.get_node_from_key(key).port)
    (replica,) = own_cluster.replicas_of(primary)
    old = product_dict(cache.write(db, "products", pid, bump_stock(pid), product_dict))
    r = replica.client(single_connection_client=True)
    r.execute_command("READONLY")
    with primary.client() as p:
        wait_until(lambda: r.get(key) == p.get(key), 5, "the replica has version N")
        for name, value in (primary_options or {}).items():
            p.config_set(name, value)
        r.config_set("masterauth", "not-the-password")  # it cannot re-sync once cut off
        p.client_kill_filter(_type="replica")
    wait_until(lambda: r.info("replication")["master_link_status"] == "down", 5, "the replica is cut off")
    return primary, old, r


def reads_until_a_hit(cache, engine, pid, timeout: float) -> list[dict]:
    """Read ``pid`` through the cache until one read is a hit; answer every row served."""
    served: list[dict] = []
    with Session(engine) as db:
        def hit() -> bool:
            hits = cache.stats.hits
            served.append(cache.read(db, "products", pid, reader(pid), product_dict))
            return cache.stats.hits > hits
        wait_until(hit, timeout, "the cache answers again")
    return served


def test_an_update_the_dead_primary_never_replicated_is_stale_until_its_ttl(own_cluster, catalog_engine):
    """The gap: Redis replicates asynchronously, so a failover can lose an *acknowledged* update.

    The cache stored version N+1 on the primary (acknowledged, so nothing is
    remembered for repair), the replica still had version N, the primary died
    and the replica was promoted: the cache serves version N until the entry's
    TTL runs out, while the database has N+1. The test provokes it for sure by
    cutting the replication link before the update.
    """
    ttl = 8.0
    client = redis_client(own_cluster.url, cluster=True, socket_timeout=1, connect_timeout=1)
    cache = WriteThroughCache(client, prefix="gap", versioned=True, default_ttl=ttl,
                              breaker=CircuitBreaker(failure_threshold=1, cooldown_s=0.2))
    pid = sorted(db_rows(catalog_engine))[0]
    key = cache.key("products", pid)
    with Session(catalog_engine) as db:
        written_at = time.monotonic()  # before version N is cached: the stale entry's TTL runs from then
        primary, old, r = cut_off_replica(own_cluster, cache, db, pid)
        new = product_dict(cache.write(db, "products", pid, bump_stock(pid), product_dict))
    with primary.client() as p:
        assert decode(p.get(key)).version == new["version"] == old["version"] + 1  # acknowledged ...
    assert decode(r.get(key)).version == old["version"]  # ... never replicated
    assert cache.stats.cache_sets == 2 and not cache.state.suspects  # so nothing to repair
    r.close()

    primary.stop()
    own_cluster.wait_failover(primary, client.keyslot(key))
    served = reads_until_a_hit(cache, catalog_engine, pid, 10)
    assert time.monotonic() - written_at < ttl, "the failover outlasted the TTL: nothing to show"
    assert served[-1] == old != db_rows(catalog_engine)[pid] == new  # stale: the gap

    with Session(catalog_engine) as db:
        wait_until(lambda: cache.read(db, "products", pid, reader(pid), product_dict) == new,
                   ttl + 5, "the stale entry expired")  # ... bounded by the TTL
    assert time.monotonic() - written_at >= ttl - 0.5
    client.close()


def test_min_replicas_to_write_turns_the_gap_into_a_repair(own_cluster, catalog_engine):
    """With ``min-replicas-to-write 1`` the primary refuses the update its replica would not get.

    Once the replica lags more than ``min-replicas-max-lag`` (1 s), the
    primary answers NOREPLICAS: the update and the invalidation are refused
    (``CacheRejected``), the key is remembered, and outage repair tombstones it
    on the promoted replica before anything is served. Only the updates of the
    first ``min-replicas-max-lag`` seconds after the link broke stay exposed.
    """
    client = redis_client(own_cluster.url, cluster=True, socket_timeout=1, connect_timeout=1)
    cache = WriteThroughCache(client, prefix="gap", versioned=True, default_ttl=60,
                              breaker=CircuitBreaker(failure_threshold=1, cooldown_s=0.2))
    pid = sorted(db_rows(catalog_engine))[0]
    key = cache.key("products", pid)
    with Session(catalog_engine) as db:
        primary, old, r = cut_off_replica(own_cluster, cache, db, pid,
                                          {"min-replicas-to-write": 1, "min-replicas-max-lag": 1})
        with primary.client() as p:
            wait_until(lambda: p.info("replication").get("min_slaves_good_slaves") == 0, 10,
                       "the primary counts no good replica")
            new = product_dict(cache.write(db, "products", pid, bump_stock(pid), product_dict))
            assert decode(p.get(key)).version == old["version"]  # refused: the primary has N too
    assert new["version"] == old["version"] + 1 == db_rows(catalog_engine)[pid]["version"]
    assert key in cache.state.suspects.keys and cache.stats.cache_errors >= 2  # update and invalidation
    r.close()

    primary.stop()
    own_cluster.wait_failover(primary, client.keyslot(key))
    served = reads_until_a_hit(cache, catalog_engine, pid, 10)
    assert served and all(row == new for row in served), served  # never version N
    assert cache.stats.suspects_repaired == 1
    client.close()
