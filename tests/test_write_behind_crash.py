"""Write-behind under kill -9 and outages, against real processes.

Each test starts its own ``redis-server`` (tests/servers.py) and ``wtsim flush``
processes (tests/flush_process.py), whose appliers (tests/crash_appliers.py)
log every write that took effect in the same transaction, so a rolled-back
batch leaves no trace and applies can be counted. The database is PostgreSQL
when it answers (required when ``WTSIM_REQUIRE_SERVERS=1``), else a SQLite
file; each test has its own table.

What is "acknowledged": a version that ``WriteBehindCache.write`` returned to
the client. What the flusher acknowledged: entries it ``XACK``-ed and deleted,
so ``XLEN`` counts the rest.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from collections import defaultdict

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from crash_appliers import NS, models
from flush_process import FlushProcess
from servers import REQUIRE_SERVERS, RedisServer
from wtsim import WriteBehindCache, WriteQueueFull, codec, make_engine, redis_client
from wtsim.proxy import FaultProxy

pytestmark = pytest.mark.redis_server

DATABASE_URL = os.environ.get("WTSIM_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
APPLIERS = "crash_appliers:APPLIERS"
PREFIX = "crash"


class Database:
    """The test's database: its URL, an engine, its two tables; ``versions()`` and ``applied()`` read them."""

    def __init__(self, url: str, kind: str, table: str) -> None:
        self.url, self.kind, self.table = url, kind, table
        self.engine = make_engine(url)
        self.metadata, self.Item, self.Applied = models(table)
        self.metadata.create_all(self.engine)

    def versions(self) -> dict[str, int]:
        with Session(self.engine) as db:
            return dict(db.execute(select(self.Item.id, self.Item.version)).all())

    def count(self) -> int:
        with Session(self.engine) as db:
            return db.scalar(select(func.count()).select_from(self.Item))

    def applied(self) -> list[tuple[str, int, str]]:
        """Every write that took effect, in commit order: (id, version, consumer)."""
        with Session(self.engine) as db:
            rows = db.execute(select(self.Applied.item_id, self.Applied.version, self.Applied.consumer)
                              .order_by(self.Applied.seq)).all()
        return [tuple(r) for r in rows]

    def env(self, consumer: str, **extra: str) -> dict[str, str]:
        return {"WTSIM_CRASH_TABLE": self.table, "WTSIM_CRASH_CONSUMER": consumer, **extra}

    def close(self) -> None:
        self.metadata.drop_all(self.engine)
        self.engine.dispose()


@pytest.fixture
def database(tmp_path):
    """PostgreSQL when it answers (it must when servers are required), else a SQLite file."""
    table = f"wtsim_crash_{uuid.uuid4().hex[:10]}"
    try:
        probe = make_engine(DATABASE_URL)
        with probe.connect():
            pass
        probe.dispose()
        db = Database(DATABASE_URL, "postgresql", table)
    except Exception as exc:  # driver missing, refused: fall back to SQLite
        if REQUIRE_SERVERS:
            pytest.fail(f"PostgreSQL at {DATABASE_URL} not reachable: {exc} (WTSIM_REQUIRE_SERVERS=1)")
        db = Database(f"sqlite:///{tmp_path / 'crash.db'}", "sqlite", table)
    yield db
    db.close()


class Client:
    """The application: a WriteBehindCache on ``redis_url``, remembering the last version acknowledged per key."""

    def __init__(self, redis_url: str, database: Database, **options) -> None:
        self.database = database
        self.redis = redis_client(redis_url, socket_timeout=5, connect_timeout=5)
        self.cache = WriteBehindCache(self.redis, prefix=PREFIX, **options)
        self.acked: dict[str, int] = {}
        self.writes = 0

    def write(self, key: str, stock: int) -> int:
        def version_reader(db: Session) -> int | None:
            with Session(self.database.engine) as session:
                row = session.get(self.database.Item, key)
                return None if row is None else row.version

        version = self.cache.write(NS, key, {"stock": stock}, version_reader=version_reader)
        self.acked[key] = version
        self.writes += 1
        return version

    def pending(self) -> int:
        return self.redis.xlen(self.cache.stream)

    def unacked(self) -> int:
        """Entries read by some flusher and not acknowledged (the group's pending list)."""
        return self.redis.xpending(self.cache.stream, "wtsim-flushers")["pending"]


def wait_until(condition, what: str, timeout: float = 20.0, log: str | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}" + (f"\n{log}" if log else ""))
        time.sleep(0.02)


def drained(client: Client) -> bool:
    return client.pending() == 0 and client.database.versions() == client.acked


def flusher(server_url: str, database: Database, tmp_path, consumer: str, *args: str, env=None,
            db_url: str | None = None, log_name: str | None = None) -> FlushProcess:
    log = tmp_path / f"flush-{log_name or consumer}.log"
    return FlushProcess(server_url, db_url or database.url, log, "--prefix", PREFIX,
                        "--appliers", APPLIERS, "--consumer", consumer, *args,
                        env=database.env(consumer, **(env or {})))


def assert_applied_once_in_effect(database: Database, acked: dict[str, int]) -> list[tuple[str, int, str]]:
    """Each key's effective writes have rising versions, none twice, ending at the last acknowledged one."""
    log = database.applied()
    by_key: dict[str, list[int]] = defaultdict(list)
    for key, version, _ in log:
        by_key[key].append(version)
    assert set(by_key) == set(acked)
    for key, versions in by_key.items():
        assert versions == sorted(set(versions)), (key, versions)  # never the same version twice, never backwards
        assert versions[-1] == acked[key], (key, versions, acked[key])
    assert database.versions() == acked
    return log


# -- 1. kill -9 of a flusher in the middle of a batch ----------------------------------------

@pytest.mark.parametrize("taker", ["another", "restarted"])
def test_a_flusher_killed_mid_batch_loses_nothing_and_its_batch_is_applied_once(taker, server, database, tmp_path):
    """Flusher a blocks inside its first transaction (10th row); kill -9; b (or a again) applies everything once."""
    client = Client(server.url, database)
    for i in range(120):  # 60 keys, versions 1 and 2
        client.write(f"k{i % 60}", i)
    mark = tmp_path / "in-the-middle"
    with flusher(server.url, database, tmp_path, "a", "--batch", "100",
                 env={"WTSIM_CRASH_BLOCK_AT": "10", "WTSIM_CRASH_MARK": str(mark)}) as a:
        a.start()
        wait_until(mark.exists, "flusher a reaches the 10th row of its batch", log=a.log())
        assert client.unacked() == 100 and client.pending() == 120  # a holds 100, unacknowledged
        a.kill()
    assert database.applied() == [] and database.versions() == {}  # its 9 upserts were rolled back with it
    for i in range(20):  # the application goes on writing while no flusher runs
        client.write(f"k{i % 10}" if i < 10 else f"new{i}", 1000 + i)

    name, args = ("b", ("--claim-idle-s", "0.3")) if taker == "another" else ("a", ())
    with flusher(server.url, database, tmp_path, name, *args, log_name=f"{name}-after") as taker_proc:
        taker_proc.start()
        wait_until(lambda: drained(client) and client.unacked() == 0, "everything flushed", log=taker_proc.log())
        assert taker_proc.stop(signal.SIGTERM) == 0, taker_proc.log()
    log = assert_applied_once_in_effect(database, client.acked)
    assert {consumer for _, _, consumer in log} == {name}
    claimed = int(taker_proc.log().rsplit("stopped: ", 1)[1].split("claimed=")[1].split()[0])
    assert claimed == (100 if taker == "another" else 0)  # taken over from a, or re-read as a's own
    assert client.redis.xlen(f"{client.cache.stream}:dead") == 0


# -- 2. the database down for a while --------------------------------------------------------

def test_a_database_outage_grows_the_queue_loses_nothing_and_drains_after(server, database, tmp_path):
    """PostgreSQL behind wtsim's fault proxy set ``down`` (connections refused), or SQLite locked by another process."""
    client = Client(server.url, database)
    if database.kind == "postgresql":
        url = make_url(database.url)
        proxy = FaultProxy("127.0.0.1", 0, url.host or "127.0.0.1", url.port or 5432).start()
        flusher_url = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    else:
        proxy, flusher_url = None, database.url
    try:
        with flusher(server.url, database, tmp_path, "f", db_url=flusher_url) as f:
            f.start()
            for i in range(30):
                client.write(f"k{i}", i)
            wait_until(lambda: drained(client), "the first writes flushed", log=f.log())
            before = database.versions()

            if proxy is not None:
                proxy.set_mode("down")  # the database is gone: refused, open connections reset
            else:
                locker = sqlite3.connect(make_url(database.url).database, timeout=5)
                locker.execute("BEGIN EXCLUSIVE")  # no writer gets in
            for i in range(25):
                client.write(f"k{i}" if i % 2 else f"down-{i}", 100 + i)
            # The flusher takes a batch (whatever had arrived) and retries it, 5 attempts, a pause, again...
            taken = wait_until(client.unacked, "the flusher took a batch", log=f.log())
            if proxy is not None:
                f.wait_for("database unavailable after 5 attempts")
            for i in range(25):
                client.write(f"k{i}" if i % 2 else f"down-more-{i}", 200 + i)
            # ...and nothing leaves the queue while the database is down.
            assert client.pending() == 50 and client.unacked() == taken
            assert database.versions() == before and client.redis.xlen(f"{client.cache.stream}:dead") == 0

            if proxy is not None:
                proxy.set_mode("ok")  # back, on the same port
            else:
                locker.rollback()
                locker.close()
            wait_until(lambda: drained(client), "the queue drained after the outage", log=f.log())
            assert client.unacked() == 0 and client.redis.xlen(f"{client.cache.stream}:dead") == 0
            assert f.stop() == 0, f.log()
    finally:
        if proxy is not None:
            proxy.close()
    assert_applied_once_in_effect(database, client.acked)


# -- 3. Redis killed with kill -9 ------------------------------------------------------------

PERSISTENCE = {
    "appendonly-no": (),
    # everysec: Redis write()s the AOF to the kernel before it replies, so killing the process loses nothing;
    # only a power loss or kernel crash loses the last second, which no test here can cause.
    "appendfsync-everysec": ("--appendonly", "yes", "--appendfsync", "everysec"),
    "appendfsync-always": ("--appendonly", "yes", "--appendfsync", "always"),
}


@pytest.mark.parametrize("persistence", PERSISTENCE)
def test_redis_kill_9_loses_exactly_the_unflushed_writes_without_an_aof(persistence, database, tmp_path):
    """Flushed writes survive anyway; the unflushed are all lost without persistence, none with an AOF."""
    with RedisServer(tmp_path / "redis", options=PERSISTENCE[persistence]) as server:
        client = Client(server.url, database)
        with flusher(server.url, database, tmp_path, "f") as f:
            f.start()
            for i in range(40):
                client.write(f"k{i % 20}", i)
            wait_until(lambda: drained(client), "the first writes flushed", log=f.log())
            assert f.stop() == 0, f.log()
        flushed = dict(client.acked)
        for i in range(30):  # acknowledged to the client, never flushed: the flusher is stopped
            client.write(f"k{i % 10}" if i < 20 else f"new{i}", 100 + i)
        unflushed = client.pending()
        assert unflushed == 30

        # Versions of a key are consecutive, one per write: acknowledged minus in the database counts writes.
        not_in_db = sum(v - database.versions().get(k, 0) for k, v in client.acked.items())
        assert not_in_db == client.writes - 40 == unflushed

        server.stop()  # kill -9
        server.start()  # same port, same directory
        if persistence == "appendonly-no":
            assert client.pending() == 0 and client.redis.dbsize() == 0  # the 30 acknowledged writes are gone
            assert database.versions() == flushed  # exactly what the flusher had acknowledged survives
            # The cache forgot them, so the next write of k0 takes its base from the database: a version
            # that was acknowledged once, then lost, is handed out again.
            assert client.acked["k0"] > flushed["k0"]
            assert client.write("k0", -1) == flushed["k0"] + 1
            return
        assert client.pending() == 30  # the stream came back from the AOF...
        for key, version in client.acked.items():
            entry = codec.decode(client.redis.get(client.cache.key(NS, key)))
            assert entry.version == version and entry.dirty == (version != flushed.get(key))  # ...and the entries
        with flusher(server.url, database, tmp_path, "g") as g:
            g.start()
            wait_until(lambda: drained(client), "the reloaded queue flushed", log=g.log())
            assert g.stop() == 0, g.log()
        assert_applied_once_in_effect(database, client.acked)


# -- 4. a burst larger than the flusher's throughput -----------------------------------------

DELAY_S = 0.006  # per row applied: the flusher writes at most ~165 rows/s, well below a loaded machine's burst


def test_a_burst_grows_the_queue_and_the_lag_and_both_come_back(server, database, tmp_path):
    client = Client(server.url, database)
    with flusher(server.url, database, tmp_path, "f", "--batch", "20",
                 env={"WTSIM_CRASH_DELAY_S": str(DELAY_S)}) as f:
        f.start()
        started = time.monotonic()
        for i in range(800):  # distinct keys: nothing to coalesce
            client.write(f"b{i}", i)
        burst_s = time.monotonic() - started
        after_burst = client.pending()
        # The flusher applied at most burst_s / DELAY_S rows meanwhile; the rest waits.
        assert after_burst >= 800 - burst_s / DELAY_S - 20
        assert after_burst >= 400, f"burst took {burst_s:.2f}s: too slow to outrun the flusher"
        samples = []  # (seconds since the burst, XLEN, rows not yet in the database, age of the oldest entry)
        while True:
            seconds, micros = client.redis.time()
            now_ms = seconds * 1000 + micros // 1000
            oldest = client.redis.xrange(client.cache.stream, count=1)
            age = (now_ms - int(oldest[0][0].split(b"-")[0])) / 1000 if oldest else 0.0
            length = client.pending()
            samples.append((time.monotonic() - started, length, 800 - database.count(), age))
            if length == 0:
                break
            assert time.monotonic() - started < 30, samples[-5:]
            time.sleep(0.05)
        wait_until(lambda: drained(client), "the burst flushed", log=f.log())
        assert f.stop() == 0, f.log()
    lengths = [s[1] for s in samples]
    assert lengths[0] >= 400 and lengths[-1] == 0
    assert all(b <= a for a, b in zip(lengths, lengths[1:]))  # no writer: the queue only shrinks
    # The last of >= 400 waiting rows waits for those ahead of it, >= 6 ms each: over 2 s (0.5 s leaves room
    # for a batch in progress and the sampling interval).
    peak_age = max(s[3] for s in samples)
    assert peak_age >= 0.5, samples
    assert samples[-1][2] == 0 and samples[-1][3] == 0.0
    assert_applied_once_in_effect(database, client.acked)


def test_past_max_pending_a_write_is_refused_and_writes_nothing(server, database, tmp_path):
    """The queue holds at most max_pending entries; a refused write leaves no entry, no cache value, no row."""
    client = Client(server.url, database, max_pending=300)
    refused, lengths = [], []
    with flusher(server.url, database, tmp_path, "f", "--batch", "20",
                 env={"WTSIM_CRASH_DELAY_S": str(DELAY_S)}) as f:
        f.start()
        for i in range(900):
            try:
                client.write(f"m{i}", i)
            except WriteQueueFull as exc:
                refused.append((f"m{i}", exc.pending, exc.limit))
            lengths.append(client.pending())
        assert max(lengths) <= 300
        assert 0 < len(refused) and len(refused) + len(client.acked) == 900
        assert {(pending, limit) for _, pending, limit in refused} == {(300, 300)}
        for key, _, _ in refused:
            assert client.redis.get(client.cache.key(NS, key)) is None
        wait_until(lambda: drained(client), "the accepted writes flushed", log=f.log())
        assert f.stop() == 0, f.log()
    assert set(database.versions()) == set(client.acked)  # the refused keys were never written
    assert_applied_once_in_effect(database, client.acked)


# -- what partial persistence and eviction do (the README's "What a crash can lose") ----------

def in_process_flusher(client: Client) -> "WriteBehindFlusher":
    from crash_appliers import _applier

    from wtsim import WriteBehindFlusher

    return WriteBehindFlusher(client.redis, client.database.engine, {NS: _applier(client.database.table)},
                              prefix=PREFIX, max_delay_s=0.01, claim_idle_s=None)


def flush_all(flusher) -> None:
    while flusher.flush_once().read:
        pass


def test_an_rdb_snapshot_restores_old_versions_and_the_next_write_of_such_a_key_is_lost(database, tmp_path):
    """Restored from a snapshot, the cache is behind the database: a version is handed out twice, the flusher refuses it."""
    with RedisServer(tmp_path / "redis") as server:
        client = Client(server.url, database)
        flusher = in_process_flusher(client)
        client.write("k", 1)
        flush_all(flusher)
        client.redis.save()  # the snapshot: k clean at version 1
        assert client.write("k", 2) == 2
        flush_all(flusher)  # the database has version 2
        client.write("x", 3)  # acknowledged, not flushed
        server.stop()  # kill -9
        server.start()  # loads the snapshot
        assert client.pending() == 0 and client.redis.get(client.cache.key(NS, "x")) is None  # x is lost
        assert codec.decode(client.redis.get(client.cache.key(NS, "k"))).version == 1  # k is behind the database
        assert client.write("k", 4) == 2  # version 2 again
        flush_all(flusher)
        assert database.versions() == {"k": 2}
        with Session(database.engine) as db:
            assert db.get(database.Item, "k").stock == 2  # the write of stock 4 never reached the database...
        assert codec.decode(client.redis.get(client.cache.key(NS, "k"))).data == {"stock": 4}  # ...the cache says it did


@pytest.mark.parametrize("policy", ["noeviction", "volatile-lru", "allkeys-lru"])
def test_maxmemory_policy_and_queued_writes(policy, database, tmp_path):
    """noeviction and volatile-*: at maxmemory a write fails and queues nothing. allkeys-*: the queue itself is evicted."""
    with RedisServer(tmp_path / "redis", options=("--maxmemory", "2mb", "--maxmemory-policy", policy)) as server:
        client = Client(server.url, database, breaker=False)
        big = "y" * 200
        error = None
        for i in range(20_000):
            try:
                client.cache.write(NS, f"k{i}", {"stock": i, "pad": big}, version_reader=lambda db: 0)
            except Exception as exc:
                error = exc
                break
            client.writes += 1
            if policy == "allkeys-lru" and client.pending() < client.writes:
                break
        if policy == "allkeys-lru":
            assert error is None and client.redis.info("stats")["evicted_keys"] > 0
            assert client.pending() < client.writes  # acknowledged writes evicted from the stream: lost
        else:
            from wtsim import CacheRejected

            assert isinstance(error, CacheRejected) and "OutOfMemoryError" in str(error)
            assert client.pending() == client.writes  # every acknowledged write is queued...
            assert client.redis.get(client.cache.key(NS, f"k{client.writes}")) is None  # ...the refused one is not
            assert client.redis.info("stats")["evicted_keys"] == 0
