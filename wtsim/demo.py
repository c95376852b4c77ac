"""The narrated walk-through behind ``wtsim demo`` (and ``make demo``).

Seven short scenes on the real :class:`~wtsim.WriteThroughCache`: a write, a
hit, a miss, a cache write refused after the commit, Redis down, Redis hung
(and the circuit breaker), Redis back (and the outage repair), then the
stats. Faults come from :class:`~wtsim.flaky.FlakyRedis`, so the demo runs the
same on the embedded fakeredis and on a real server, without stopping anyone's
Redis. Each scene prints what the database and Redis hold afterwards, sized
for a projector (under 80 columns).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from sqlalchemy.orm import Session

from .breaker import CircuitBreaker
from .cache import WriteThroughCache
from .connections import make_engine, redis_client
from .flaky import FlakyRedis
from .models import Product, load_catalog, product_dict
from .peek import SqlLog, peek

NS = "products"
HANG_S = 0.2
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


def run_demo(redis_url: str | None = None, database_url: str | None = None, out: TextIO | None = None) -> None:
    """Run the walk-through on fakeredis + SQLite, or on the servers named; print to ``out`` (stdout)."""
    n = Narrator(out or sys.stdout)
    with tempfile.TemporaryDirectory(prefix="wtsim-demo-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'demo.db'}"
        engine = make_engine(url)
        rows = load_catalog(engine)
        queries = SqlLog(engine)
        base = redis_client(redis_url)
        redis = FlakyRedis(base)
        breaker = CircuitBreaker(failure_threshold=3, cooldown_s=COOLDOWN_S)
        cache = WriteThroughCache(redis, default_ttl=3600, prefix="wtsim-demo", breaker=breaker)
        for key in base.scan_iter(match="wtsim-demo:*"):
            base.delete(key)

        n.say("wtsim demo: the write-through pattern, one step at a time")
        n.item("redis", redis_url or "embedded fakeredis (no server needed)")
        n.item("database", f"{database_url or 'SQLite in a temporary file'} ({rows} products)")
        n.item("cache", "WriteThroughCache(default_ttl=3600, versioned=False, outage_repair=True)")

        with Session(engine) as db:
            _scenes(n, db, cache, redis, base, queries)
        engine.dispose()


def _scenes(n: Narrator, db: Session, cache: WriteThroughCache, redis: FlakyRedis, base, queries: SqlLog) -> None:
    def set_stock(pid: str, stock: int) -> Product:
        def db_writer(session: Session) -> Product:
            product = session.get(Product, pid)
            product.stock = stock
            return product

        return cache.write(db, NS, pid, db_writer, product_dict)

    def get(pid: str) -> dict | None:
        return cache.read(db, NS, pid, lambda session: session.get(Product, pid), product_dict)

    def show(pid: str) -> None:
        for line in str(peek(cache, db, NS, pid)).splitlines():
            n.say(f"   {line}")

    def timed(call: Callable[[], Any]) -> tuple[Any, int, float]:
        before, start = queries.count, time.perf_counter()
        value = call()
        return value, queries.count - before, (time.perf_counter() - start) * 1000

    n.heading("A write goes to the database first, then to the cache")
    n.say('   cache.write(db, "products", "p-7", <set stock to 41>, product_dict)')
    set_stock("p-7", 41)
    show("p-7")
    n.item("payload", "a JSON envelope, never pickle: {\"v\": version, \"d\": row}")
    n.item("", _short(base.get(cache.key(NS, "p-7")), 64))

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

    n.heading(f"Redis hangs: each call waits for the {HANG_S * 1000:.0f} ms socket timeout...")
    redis.hang(HANG_S)
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
    for name, value in cache.stats.as_dict().items():
        if value:
            n.say(f"   {name:<20}{value:>5}")
    n.say("\nNext: `make lab` opens the notebooks; `wtsim run article` simulates the load.")


def _short(raw: bytes | None, width: int = 52) -> str:
    if raw is None:
        return "(absent)"
    text = raw.decode("utf-8", "replace")
    return text if len(text) <= width else text[: width - 3] + "..."
