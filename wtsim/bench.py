"""``wtsim bench cache``: what a cache's policy layer costs over hand-written calls.

Both sides do the same I/O on the same servers, in one run, in pairs of short
blocks (a block of the one, then a block of the other, in turns which goes
first), so that drift in the machine's speed hits both alike:

* read:  ``cache.read`` of a cached key  vs  ``GET`` + ``json.loads``
* write: ``cache.write`` (ORM update, commit, cache update)  vs  the same calls
  by hand: ``SET`` (write-through), the Lua compare-and-set (versioned), or
  ``DEL`` (cache-aside)

for write-through (naive, versioned, and versioned with leases) and for
cache-aside; the same read and write (write-through, naive) for the asyncio
driver (:mod:`wtsim.aio`: ``await cache.read`` and ``await cache.write``)
against the same calls by hand on ``redis.asyncio`` and an ``AsyncSession``
(mode ``aio naive``); and for write-behind:

* write: ``WriteBehindCache.write`` of a cached key  vs  the same ``QUEUE_WRITE``
  Lua call made by hand with redis-py (one round trip each);
* drain: :class:`~wtsim.WriteBehindFlusher` emptying a stream of new rows into
  the database (``database_url``: PostgreSQL, or SQLite in a temporary file),
  in batches of 100  vs  one row per transaction (``batch=1``). Its "cache" and
  "raw" columns are the time per row at batch 100 and at batch 1, so the ratio
  is how many times faster batching drains; both rates are printed in rows/s.

A hit with leases is still one ``GET``: leases cost a round trip
only on a miss, so the read row shows that they cost a hit nothing. The ratio
is raw time / cache time: 1.0 means the policy layer is free, 0.8 means it
costs a fifth. It is the median of the pairs' ratios, and each time shown the
median of its blocks' per-operation times: the network's and the disk's hiccups
(a write's commit waits for the disk) would swing a single long run either way,
and they swing a ratio of medians taken over long rounds by several per cent,
more than a read hit's target leaves; paired short blocks hold it to about one.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from sqlalchemy import MetaData, String
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from . import codec, scripts
from .appliers import upsert_newer
from .cache import CacheAside, PolicyCache, WriteBehindCache, WriteThroughCache, default_stream
from .connections import make_engine, redis_client
from .flusher import WriteBehindFlusher
from .keys import entry_key
from .models import Product, load_catalog, product_dict

PID = "p-1"
NS = "products"

CASES: tuple[tuple[str, str, type[PolicyCache], dict, float], ...] = (
    # policy, mode, class, options, target ratio of a write (a read hit's is READ_HIT_TARGET)
    ("write-through", "naive", WriteThroughCache, {}, 0.8),
    ("write-through", "versioned", WriteThroughCache, {"versioned": True}, 0.8),
    ("write-through", "leases", WriteThroughCache, {"versioned": True, "leases": True}, 0.85),
    ("cache-aside", "naive", CacheAside, {}, 0.85),
)
"""What is measured, each with the ratio its write should reach."""

READ_HIT_TARGET = 0.95
"""A read hit (one GET and the envelope's decoding) against a bare GET + ``json.loads``: the ratio every
synchronous case should reach: the policy, the breaker and the key encoding cost a hit at most a twentieth."""

ASYNC_CASES: tuple[tuple[str, str, str, dict, float], ...] = (
    # policy, mode, class name in wtsim.aio, options, target ratio
    ("write-through", "aio naive", "AsyncWriteThroughCache", {}, 0.8),
)
"""What is measured of the asyncio driver, with the ratio it should reach (the synchronous one's)."""

WRITE_BEHIND_TARGET = 0.8
"""``WriteBehindCache.write`` against the bare ``QUEUE_WRITE`` call: the ratio it should reach."""
DRAIN_TARGET = 5.0
"""The flusher's drain rate at batch 100 over its rate at batch 1: at least this."""


def _per_op(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def _paired(cached: Callable[[], object], raw: Callable[[], object], n: int, rounds: int,
            between: Callable[[], object] | None = None) -> dict:
    """Time ``rounds`` pairs of blocks of ``n`` calls, the side that goes first in turns; see :func:`_summary`.

    ``between`` runs after each pair, outside the timing.
    """
    cache_t: list[float] = []
    raw_t: list[float] = []
    for i in range(rounds):
        for times, fn in _in_turns(i, (cache_t, cached), (raw_t, raw)):
            times.append(_per_op(fn, n))
        if between is not None:
            between()
    return _summary(cache_t, raw_t)


def _in_turns(i: int, cache_side: tuple, raw_side: tuple) -> tuple:
    """Pair ``i``'s two sides in the order they run: the cache first in even pairs, the raw calls in odd ones."""
    return (raw_side, cache_side) if i % 2 else (cache_side, raw_side)


def _summary(cache_t: list[float], raw_t: list[float]) -> dict:
    """A row's times (the medians of the blocks' seconds per operation) and its ratio (the median of the pairs')."""
    return {"cache_s": statistics.median(cache_t), "raw_s": statistics.median(raw_t),
            "ratio": statistics.median(r / c for c, r in zip(cache_t, raw_t))}


def bench_cache(
    redis_url: str | None = "redis://127.0.0.1:6379/0",
    *,
    reads: int = 20,
    writes: int = 5,
    rounds: int = 750,
    write_rounds: int = 150,
    database_url: str | None = None,
    drain_rows: int = 2000,
    drain_rounds: int = 3,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Measure every case of :data:`CASES`, then write-behind; one dict per (operation, policy, mode).

    ``cache_s`` and ``raw_s`` are seconds per operation (per row for the drain).
    Reads are timed in ``rounds`` pairs of blocks of ``reads`` calls (the queue
    write too), writes in ``write_rounds`` pairs of ``writes``; see :func:`_paired`.
    The drain runs ``drain_rows`` rows at batch 100 and a tenth of them at batch
    1, ``drain_rounds`` times, into ``database_url`` (``None``: a temporary SQLite
    file); its row also holds ``rows_per_s`` and ``database``.
    """
    redis = redis_client(redis_url, socket_timeout=5, connect_timeout=5)
    redis.ping()
    results = []
    with tempfile.TemporaryDirectory(prefix="wtsim-bench-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        load_catalog(engine)
        with Session(engine) as db:
            for policy, mode, cls, options, target in CASES:
                cache = cls(redis, prefix="wtsim-bench", **options)
                key = cache.key(NS, PID)
                redis.delete(key)
                for row in _bench_case(cache, redis, db, key, reads, writes, rounds, write_rounds, progress,
                                       f"{policy} {mode}"):
                    row_target = READ_HIT_TARGET if row["operation"] == "read" else target
                    results.append({**row, "policy": policy, "mode": mode, "target": row_target})
                redis.delete(key)
        engine.dispose()
        for policy, mode, class_name, options, target in ASYNC_CASES:
            rows = asyncio.run(_bench_async_case(redis_url, f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
                                                 class_name, options, reads, writes, rounds, write_rounds,
                                                 progress, f"{policy} {mode}"))
            results += [{**row, "policy": policy, "mode": mode, "target": target} for row in rows]
        results.append({**_bench_queue_write(redis, reads, rounds, progress),
                        "policy": "write-behind", "mode": "queue", "target": WRITE_BEHIND_TARGET})
        drain_url = database_url or f"sqlite:///{Path(tmp) / 'drain.db'}"
        results.append({**_bench_drain(redis, drain_url, drain_rows, drain_rounds, progress),
                        "policy": "write-behind", "mode": "batch100/1", "target": DRAIN_TARGET,
                        "database": _shown(database_url) if database_url else "sqlite (temporary file)"})
    return results


def _bench_queue_write(redis, n: int, rounds: int, progress) -> dict:
    """``WriteBehindCache.write`` of a cached key vs the same QUEUE_WRITE call by hand."""
    if progress:
        progress("write (write-behind queue)")
    cache = WriteBehindCache(redis, prefix="wtsim-bench-wb")
    key, stream, id_json = cache.key(NS, PID), cache.stream, json.dumps(PID)
    queue_write = redis.register_script(scripts.QUEUE_WRITE)
    counter = iter(range(10**9))
    row = {"name": "Widget", "price_cents": 100}

    def cached_write() -> None:
        cache.write(NS, PID, {**row, "stock": next(counter) % 1000})

    def raw_write() -> None:
        data_json = json.dumps({**row, "stock": next(counter) % 1000}, separators=(",", ":"), allow_nan=False)
        version, _ = queue_write(keys=[key, stream], args=[data_json, "", cache.max_pending, NS, id_json])
        int(version)

    redis.delete(key, stream)
    cache.write(NS, PID, row | {"stock": 0}, version_reader=lambda db: 0)  # cached from here on: one round trip
    try:  # (the stream kept short, outside the timing)
        return {"operation": "write", **_paired(cached_write, raw_write, n, rounds, lambda: redis.delete(stream))}
    finally:
        redis.delete(key, stream)


def _drain_model(table: str):
    class Base(DeclarativeBase):
        metadata = MetaData()

    class DrainRow(Base):
        __tablename__ = table
        id: Mapped[str] = mapped_column(String(64), primary_key=True)
        name: Mapped[str] = mapped_column(String(200))
        stock: Mapped[int]
        version: Mapped[int]

    return DrainRow


def _bench_drain(redis, database_url: str, rows: int, rounds: int, progress) -> dict:
    """Seconds per row for the flusher to drain fresh rows at batch 100 and at batch 1 (a tenth as many)."""
    if rows < 10:
        raise ValueError(f"drain_rows must be >= 10, got {rows!r}")
    prefix = "wtsim-bench-drain"
    stream = default_stream(prefix)
    engine = make_engine(database_url)
    model = _drain_model(f"wtsim_bench_drain_{os.getpid()}")
    model.metadata.drop_all(engine)
    model.metadata.create_all(engine)
    queue_write = redis.register_script(scripts.QUEUE_WRITE)
    appliers = {NS: upsert_newer(model)}
    flushers = {batch: WriteBehindFlusher(redis, engine, appliers, prefix=prefix, batch=batch, max_delay_s=0.01,
                                          claim_idle_s=None, consumer=f"bench-{batch}")
                for batch in (100, 1)}
    fresh = iter(range(10**9))
    per_row: dict[int, list[float]] = {100: [], 1: []}
    try:
        redis.delete(stream)
        for flusher in flushers.values():
            flusher.flush_once()  # creates the group, connects: outside the timing
        for r in range(rounds):
            for batch, n in ((100, rows), (1, rows // 10)):
                if progress:
                    progress(f"drain at batch {batch} (round {r + 1} of {rounds})")
                data_json = codec.encode_data({"name": "Widget", "stock": 1})
                with redis.pipeline(transaction=False) as pipe:  # n fresh rows: each is an INSERT
                    for _ in range(n):
                        entity = f"d-{next(fresh)}"
                        queue_write(keys=[entry_key(prefix, NS, entity), stream],
                                    args=[data_json, 0, 10**9, NS, json.dumps(entity)], client=pipe)
                    pipe.execute()
                drained, start = 0, time.perf_counter()
                while drained < n:
                    drained += flushers[batch].flush_once().read
                per_row[batch].append((time.perf_counter() - start) / n)
    finally:
        redis.delete(stream)
        keys = list(redis.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 1000):
            redis.delete(*keys[i:i + 1000])
        model.metadata.drop_all(engine)
        engine.dispose()
    c, r = statistics.median(per_row[100]), statistics.median(per_row[1])
    return {"operation": "drain", "cache_s": c, "raw_s": r, "ratio": r / c,
            "rows_per_s": {"batch_100": 1 / c, "batch_1": 1 / r}}


def _shown(url: str) -> str:
    """A database URL without its password, for printing."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def _bench_case(cache, redis, db, key, reads, writes, rounds, write_rounds, progress, label) -> list[dict]:
    counter = iter(range(10**9))
    versioned = cache.config.versioned
    set_if_newer = redis.register_script(scripts.SET_IF_NEWER)

    def writer(session: Session) -> Product:
        product = session.get(Product, PID)
        product.stock = next(counter) % 1000
        return product

    def cached_write() -> None:
        cache.write(db, NS, PID, writer, product_dict)

    def raw_write() -> None:
        product = writer(db)
        db.commit()
        if isinstance(cache, CacheAside):
            redis.delete(key)
            return
        payload = json.dumps({"v": product.version if versioned else None, "d": product_dict(product)})
        if versioned:
            set_if_newer(keys=[key], args=[payload, product.version, 3_600_000])
        else:
            redis.set(key, payload, ex=3600)

    def cached_read() -> None:
        cache.read(db, NS, PID, lambda session: session.get(Product, PID), product_dict)

    def raw_read() -> None:
        json.loads(redis.get(key))

    out = []
    for op, cached, raw, n, pairs in (("read", cached_read, raw_read, reads, rounds),
                                      ("write", cached_write, raw_write, writes, write_rounds)):
        if progress:
            progress(f"{op} ({label})")
        cached_write()
        cached_read()  # the key is cached from here on (cache-aside: the read populates it)
        out.append({"operation": op, **_paired(cached, raw, n, pairs)})
    return out


async def _bench_async_case(redis_url, database_url, class_name, options, reads, writes, rounds, write_rounds,
                            progress, label) -> list[dict]:
    """An asyncio cache's read hit and write vs the same calls by hand on redis.asyncio and an AsyncSession."""
    from sqlalchemy.ext.asyncio import AsyncSession

    from . import aio

    redis = aio.async_redis_client(redis_url, socket_timeout=5, connect_timeout=5)
    engine = aio.make_async_engine(database_url)
    cache = getattr(aio, class_name)(redis, prefix="wtsim-bench-aio", **options)
    key = cache.key(NS, PID)
    counter = iter(range(10**9))

    def writer(session: Session) -> Product:
        product = session.get(Product, PID)
        product.stock = next(counter) % 1000
        return product

    def reader(session: Session) -> Product | None:
        return session.get(Product, PID)

    async def per_op(fn, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await fn()
        return (time.perf_counter() - start) / n

    out = []
    try:
        async with AsyncSession(engine, expire_on_commit=False) as db:
            async def cached_write() -> None:
                await cache.write(db, NS, PID, writer, product_dict)

            async def raw_write() -> None:  # what one writes by hand with an AsyncSession
                product = await db.get(Product, PID)
                product.stock = next(counter) % 1000
                await db.commit()
                await redis.set(key, json.dumps({"v": None, "d": product_dict(product)}), ex=3600)

            async def cached_read() -> None:
                await cache.read(db, NS, PID, reader, product_dict)

            async def raw_read() -> None:
                json.loads(await redis.get(key))

            await redis.delete(key)
            for op, cached, raw, n, pairs in (("read", cached_read, raw_read, reads, rounds),
                                              ("write", cached_write, raw_write, writes, write_rounds)):
                if progress:
                    progress(f"{op} ({label})")
                await cached_write()
                await cached_read()  # the key is cached from here on
                cache_t: list[float] = []
                raw_t: list[float] = []
                for i in range(pairs):  # as _paired
                    for times, fn in _in_turns(i, (cache_t, cached), (raw_t, raw)):
                        times.append(await per_op(fn, n))
                out.append({"operation": op, **_summary(cache_t, raw_t)})
    finally:
        await redis.delete(key)
        await redis.aclose()
        await engine.dispose()
    return out


def format_cache_bench(rows: list[dict], redis_url: str | None = None) -> str:
    """The bench results as an aligned table, each ratio checked against its target."""
    lines = [f"Redis: {redis_url or 'embedded fakeredis'}"]
    lines.append(f"{'operation':<10}{'policy':<15}{'mode':<11}{'cache':>11}{'raw':>11}{'ratio':>8}{'target':>8}")
    for row in rows:
        verdict = "ok" if row["ratio"] >= row["target"] else "BELOW TARGET"
        lines.append(
            f"{row['operation']:<10}{row['policy']:<15}{row['mode']:<11}{row['cache_s'] * 1e6:>8.1f} µs"
            f"{row['raw_s'] * 1e6:>8.1f} µs{row['ratio']:>8.2f}{row['target']:>8.2f}  {verdict}"
        )
    for row in rows:
        if row["operation"] == "drain":
            rates = row["rows_per_s"]
            lines.append(f"drain: the flusher into {row['database']}: batch 100 {rates['batch_100']:,.0f} rows/s, "
                         f"batch 1 {rates['batch_1']:,.0f} rows/s (cache = µs per row at batch 100, raw = at batch 1)")
    return "\n".join(lines)
