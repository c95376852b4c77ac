"""The narrated walk-through behind ``wtsim demo`` (and ``make demo``).

Seven short scenes on the real :class:`~wtsim.WriteThroughCache`: a write, a
hit, a miss, a cache write refused after the commit, Redis down, Redis hung
(and the circuit breaker), Redis back (and the outage repair), then the
stats. Faults come from :class:`~wtsim.flaky.FlakyRedis`, so the demo runs the
same on the embedded fakeredis and on a real server, without stopping anyone's
Redis. Each scene prints what the database and Redis hold afterwards, sized
for a projector (under 80 columns).

On a real database the demo touches one table only, its own
``wtsim_demo_products`` (:class:`DemoProduct`), which it drops and reloads
from the sample catalog at every start, so every run tells the same story; in
Redis it deletes and writes keys under ``wtsim-demo:`` only. Both servers are
checked before the first scene: a server that does not answer, a URL
SQLAlchemy cannot use or a missing driver is a :class:`ValueError` naming
the fix, which ``wtsim`` prints as one line.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple, TextIO

import redis
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.orm import DeclarativeBase, Session

from . import codec
from .breaker import CircuitBreaker
from .cache import WriteThroughCache
from .connections import make_engine, redis_client
from .flaky import FlakyRedis
from .models import Product, product_dict, read_catalog
from .peek import SqlLog, peek

NS = "products"
PREFIX = "wtsim-demo"
HANG_S = 0.2
"""How long a call to the hung Redis costs when the client has no socket timeout to use (fakeredis)."""
COOLDOWN_S = 0.5


class Narrator:
    """Prints the scenes; bold headings when the terminal supports it."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.color = out.isatty() and not os.environ.get("NO_COLOR")
        self.scene = 0

    def heading(self, text: str) -> None:
        self.scene += 1
        line = f"{self.scene}  {text}"
        self.say("\n" + (f"\033[1m{line}\033[0m" if self.color else line))

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def item(self, label: str, text: str) -> None:
        self.say(f"   {label:<10} {text}")


class _DemoBase(DeclarativeBase):
    """The demo's own metadata: creating or dropping it never touches wtsim's other tables."""


class DemoProduct(_DemoBase):
    """:class:`~wtsim.models.Product`'s columns and optimistic locking, in the demo's own table."""

    __table__ = Product.__table__.to_metadata(_DemoBase.metadata, name="wtsim_demo_products")
    __mapper_args__ = {"version_id_col": __table__.c.version}


def reset_demo_table(engine: Engine) -> int:
    """Drop and recreate ``wtsim_demo_products``, load the sample catalog; return the row count."""
    table = DemoProduct.__table__
    table.drop(engine, checkfirst=True)
    table.create(engine)
    rows = read_catalog()
    with Session(engine) as session:
        session.add_all(DemoProduct(**row) for row in rows)
        session.commit()
    return len(rows)


class HangCost(NamedTuple):
    """What one call to a hung Redis costs with a client, and why."""

    seconds: float
    socket_timeout: bool  # True: the client's own socket timeout; False: the demo's HANG_S
    why: str


def hang_cost(client: redis.Redis) -> HangCost:
    """How long one call to a hung Redis costs with ``client``.

    A real redis-py client waits for its ``socket_timeout``; fakeredis has no
    socket (the timeout it reports is never used), nor has a client built
    without one, so the demo's hang lasts :data:`HANG_S`.
    """
    pool = client.connection_pool
    timeout = pool.connection_kwargs.get("socket_timeout")
    if pool.connection_class.__module__.startswith("fakeredis"):
        return HangCost(HANG_S, False, f"fakeredis has no socket, so FlakyRedis makes each call wait {_ms(HANG_S)}")
    if timeout is None:
        return HangCost(HANG_S, False, f"no socket timeout: a real hang would block; FlakyRedis waits {_ms(HANG_S)}")
    return HangCost(float(timeout), True, f"the client's socket_timeout is {timeout} s: FlakyRedis waits that long")


def run_demo(redis_url: str | None = None, database_url: str | None = None, out: TextIO | None = None) -> None:
    """Run the walk-through on fakeredis + SQLite, or on the servers named; print to ``out`` (stdout).

    Raises :class:`ValueError`, before any scene, when Redis does not answer a
    PING or the database cannot be connected to (its message names the fix).
    """
    n = Narrator(out or sys.stdout)
    with tempfile.TemporaryDirectory(prefix="wtsim-demo-") as tmp:
        base = _connect_redis(redis_url)
        engine = _connect_database(database_url or f"sqlite:///{Path(tmp) / 'demo.db'}")
        try:
            rows = reset_demo_table(engine)
            queries = SqlLog(engine)
            flaky = FlakyRedis(base)
            breaker = CircuitBreaker(failure_threshold=3, cooldown_s=COOLDOWN_S)
            cache = WriteThroughCache(flaky, default_ttl=3600, prefix=PREFIX, breaker=breaker)
            for key in base.scan_iter(match=f"{PREFIX}:*"):
                base.delete(key)

            n.say("wtsim demo: the write-through pattern, one step at a time")
            n.item("redis", _hide_password(redis_url) if redis_url else "embedded fakeredis (no server needed)")
            n.item("database", _hide_password(database_url) if database_url else "SQLite in a temporary file")
            n.item("table", f"{DemoProduct.__table__.name}, reset: {rows} products")
            n.item("cache", "WriteThroughCache(default_ttl=3600, versioned=False,")
            n.item("", "                  outage_repair=True)")

            with Session(engine) as db:
                _scenes(n, db, cache, flaky, base, queries)
        finally:
            engine.dispose()


def _scenes(n: Narrator, db: Session, cache: WriteThroughCache, redis: FlakyRedis, base, queries: SqlLog) -> None:
    bypassed = 0  # requests during which the cache skipped at least one operation

    def request(call: Callable[[], Any]) -> Any:
        nonlocal bypassed
        before = cache.stats.cache_skipped
        value = call()
        bypassed += cache.stats.cache_skipped > before
        return value

    def set_stock(pid: str, stock: int) -> DemoProduct:
        def db_writer(session: Session) -> DemoProduct:
            product = session.get(DemoProduct, pid)
            product.stock = stock
            return product

        return request(lambda: cache.write(db, NS, pid, db_writer, product_dict))

    def get(pid: str) -> dict | None:
        return request(lambda: cache.read(db, NS, pid, lambda session: session.get(DemoProduct, pid), product_dict))

    def show(pid: str) -> None:
        for line in str(peek(cache, db, NS, pid, model=DemoProduct)).splitlines():
            n.say(f"   {line}")

    def timed(call: Callable[[], Any]) -> tuple[Any, int, float]:
        before, start = queries.count, time.perf_counter()
        value = call()
        return value, queries.count - before, (time.perf_counter() - start) * 1000

    n.heading("A write goes to the database first, then to the cache")
    n.say('   cache.write(db, "products", "p-7", <set stock to 41>, product_dict)')
    written = set_stock("p-7", 41)
    show("p-7")
    n.item("payload", "a JSON envelope, never pickle: {\"v\": version, \"d\": row}")
    raw = base.get(cache.key(NS, "p-7"))
    n.item("", _short(raw, 64))
    if raw is not None and codec.decode(raw).version is None:
        n.item("", "v is null: naive mode (versioned=False) does not version")
        n.item("", f"entries; versioned=True would put the row's version, {written.version}, there")

    n.heading("Reading it back is a cache hit: no database query")
    data, sql, _ = timed(lambda: get("p-7"))
    n.item("read", f"p-7 stock={data['stock']}   SQL statements: {sql}   hits={cache.stats.hits}")

    n.heading("A product nobody wrote yet is a miss: read the DB, then populate")
    data, sql, _ = timed(lambda: get("p-8"))
    n.item("read", f"p-8 stock={data['stock']}   SQL statements: {sql}   misses={cache.stats.misses}")
    data, sql, _ = timed(lambda: get("p-8"))
    n.item("again", f"p-8 stock={data['stock']}   SQL statements: {sql}   (now cached)")

    n.heading("Redis refuses the cache write (out of memory) after the commit")
    redis.refuse_writes()
    set_stock("p-7", 40)
    n.say("   The write returned normally: the commit happened, so raising would make")
    n.say("   the caller retry and write twice. The old entry was deleted instead:")
    show("p-7")
    redis.recover()
    data = get("p-7")
    n.item("read", f"p-7 stock={data['stock']} (a miss, fresh from the database)")

    hang = hang_cost(base)
    if hang.socket_timeout:
        n.heading(f"Redis hangs: each call waits for the {_ms(hang.seconds)} socket timeout...")
    else:
        n.heading(f"Redis hangs: each call waits {_ms(hang.seconds)}, then times out...")
    n.say(f"   ({hang.why},")
    n.say("   then raises TimeoutError as redis-py does)")
    redis.hang(hang.seconds)
    for i in range(1, 7):
        data, _, ms = timed(lambda: get("p-9"))
        n.item(f"read {i}", f"p-9 stock={data['stock']}  {ms:6.0f} ms   breaker {cache.breaker.state}")
    n.say(f"   ...until {cache.breaker.failure_threshold} failures open the circuit breaker: then the cache")
    n.say(f"   is skipped for {COOLDOWN_S} s, and calls cost no timeout at all.")

    n.heading("While Redis is unreachable, writes go to the database only")
    redis.go_down()
    data, _, ms = timed(lambda: get("p-8"))
    n.item("read", f"p-8 stock={data['stock']} from the database in {ms:.0f} ms")
    n.item("", f"(the breaker is {cache.breaker.state}: Redis is not even asked)")
    set_stock("p-8", 7)
    n.item("write", "p-8 stock=7 committed; the cache could not be told, so the key")
    n.item("", f"is remembered for repair: {sorted(cache.state.suspects.keys)}")
    n.say("   Redis keeps its memory while unreachable, the old p-8 included:")
    show("p-8")

    n.heading("Redis is back: remembered keys are invalidated before anything is served")
    redis.recover()
    time.sleep(COOLDOWN_S)  # the breaker's cool-down: its next call is a probe
    data = get("p-8")
    n.item("read", f"p-8 stock={data['stock']}  (without outage repair: the stale value above)")
    n.item("repaired", f"{cache.stats.suspects_repaired} key(s); breaker {cache.breaker.state}")
    show("p-8")

    n.heading("What the cache counted")
    stats = cache.stats.as_dict()
    for name, value in stats.items():
        if value:
            n.say(f"   {name:<20}{value:>5}")
    if stats["cache_skipped"]:
        n.say("   cache_skipped counts operations the open breaker kept from Redis, not")
        n.say(f"   requests: {bypassed} requests skipped {stats['cache_skipped']} of them (a read skips its GET")
        n.say("   and its SET, a write its SET and its DEL).")
    n.say("\nNext: `make lab` opens the notebooks; `wtsim run article` simulates the load.")


def _connect_redis(url: str | None) -> redis.Redis:
    """The demo's Redis client, after a PING; a ValueError naming the fix when it does not answer."""
    client = redis_client(url)
    if url is not None:
        try:
            client.ping()
        except redis.RedisError as exc:
            client.close()
            raise ValueError(
                f"Redis at {_hide_password(url)} did not answer PING ({_one_line(exc)}): "
                "start it, or leave out --redis-url to use the embedded fakeredis"
            ) from None
    return client


def _connect_database(url: str) -> Engine:
    """An engine that has connected once; a ValueError naming the fix when it cannot."""
    shown = _hide_password(url)
    try:
        engine = make_engine(url, **_connect_timeout(url))
    except ImportError as exc:  # the URL names a driver that is not installed
        raise ValueError(f"database {shown}: {_driver_advice(url, exc)}") from None
    except ArgumentError as exc:  # unparsable, or no such dialect
        raise ValueError(
            f"database {shown}: not a URL SQLAlchemy can use ({_one_line(exc)}); "
            "e.g. sqlite:///demo.db or postgresql+psycopg://user@host/db"
        ) from None
    if engine.dialect.is_async:
        engine.dispose()
        raise ValueError(
            f"database {shown}: {engine.dialect.driver} is an asyncio driver; the demo needs a plain one, "
            "e.g. postgresql+psycopg://"
        )
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        fix = "check that its folder exists" if engine.dialect.name == "sqlite" else "start the server or fix the URL"
        raise ValueError(f"cannot connect to database {shown} ({_one_line(exc.orig)}): {fix}") from None
    return engine


DB_CONNECT_TIMEOUT_S = 5
"""How long the start-up check waits for PostgreSQL: a host that drops packets would otherwise stall it."""


def _connect_timeout(url: str) -> dict:
    """``connect_args`` giving psycopg a connect timeout, unless the URL sets one (libpq waits forever)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return {}  # make_engine reports it
    if parsed.get_backend_name() != "postgresql" or parsed.get_driver_name() not in ("psycopg", "psycopg2"):
        return {}
    if "connect_timeout" in parsed.query:
        return {}
    return {"connect_args": {"connect_timeout": DB_CONNECT_TIMEOUT_S}}


def _driver_advice(url: str, exc: ImportError) -> str:
    """What is missing for ``url`` and the ``pip install`` that brings it."""
    try:
        parsed = make_url(url)
        backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    except ArgumentError:
        backend, driver = "", exc.name or "?"
    module = (exc.name or "").split(".")[0]
    if isinstance(exc, ModuleNotFoundError) and module.lower() == driver.lower():
        problem = f"its driver {driver} is not installed"
    else:
        problem = f"its driver {driver} does not load ({_one_line(exc)})"
    if backend != "postgresql":
        return f"{problem}: pip install {module or driver}"
    if driver == "psycopg":
        return f'{problem}: pip install "wtsim[postgres]"'
    return f'{problem}: pip install {driver}, or pip install "wtsim[postgres]" and use postgresql+psycopg://'


def _hide_password(url: str) -> str:
    """``url`` with any password replaced by ***, for printing."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _one_line(exc: BaseException | None) -> str:
    return " ".join(str(exc).split())


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def _short(raw: bytes | None, width: int = 52) -> str:
    if raw is None:
        return "(absent)"
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= width else text[: width - 3] + "..."
