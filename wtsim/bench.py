"""``wtsim bench cache``: what a cache's policy layer costs over hand-written calls.

Both sides do the same I/O on the same servers, in one run, alternating in
rounds so that drift in the machine's speed hits both alike:

* read:  ``cache.read`` of a cached key  vs  ``GET`` + ``json.loads``
* write: ``cache.write`` (ORM update, commit, cache update)  vs  the same calls
  by hand: ``SET`` (write-through), the Lua compare-and-set (versioned), or
  ``DEL`` (cache-aside)

for write-through (naive, versioned, and versioned with leases) and for
cache-aside. A hit with leases is still one ``GET``: leases cost a round trip
only on a miss, so the read row shows that they cost a hit nothing. The ratio
is raw time / cache time: 1.0 means the policy layer is free, 0.8 means it
costs a fifth. Each figure is the median of the rounds' per-operation times: a
write's commit waits for the disk, whose hiccups would swing a single long run
either way.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from sqlalchemy.orm import Session

from . import scripts
from .cache import CacheAside, PolicyCache, WriteThroughCache
from .connections import make_engine, redis_client
from .models import Product, load_catalog, product_dict

PID = "p-1"
NS = "products"

CASES: tuple[tuple[str, str, type[PolicyCache], dict, float], ...] = (
    # policy, mode, class, options, target ratio
    ("write-through", "naive", WriteThroughCache, {}, 0.8),
    ("write-through", "versioned", WriteThroughCache, {"versioned": True}, 0.8),
    ("write-through", "leases", WriteThroughCache, {"versioned": True, "leases": True}, 0.85),
    ("cache-aside", "naive", CacheAside, {}, 0.85),
)
"""What is measured, each with the ratio it should reach."""


def _per_op(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def bench_cache(
    redis_url: str | None = "redis://127.0.0.1:6379/0",
    *,
    reads: int = 1000,
    writes: int = 50,
    rounds: int = 15,
    progress: Callable[[str], None] | None = None,
) -> list[dict]:
    """Measure every case of :data:`CASES`; one dict per (operation, policy, mode), seconds per op."""
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
                for row in _bench_case(cache, redis, db, key, reads, writes, rounds, progress, f"{policy} {mode}"):
                    results.append({**row, "policy": policy, "mode": mode, "target": target})
                redis.delete(key)
        engine.dispose()
    return results


def _bench_case(cache, redis, db, key, reads, writes, rounds, progress, label) -> list[dict]:
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
    for op, cached, raw, n in (("read", cached_read, raw_read, reads), ("write", cached_write, raw_write, writes)):
        if progress:
            progress(f"{op} ({label})")
        cached_write()
        cached_read()  # the key is cached from here on (cache-aside: the read populates it)
        cache_t, raw_t = [], []
        for _ in range(rounds):
            raw_t.append(_per_op(raw, n))
            cache_t.append(_per_op(cached, n))
        c, r = statistics.median(cache_t), statistics.median(raw_t)
        out.append({"operation": op, "cache_s": c, "raw_s": r, "ratio": r / c})
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
    return "\n".join(lines)
