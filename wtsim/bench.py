"""``wtsim bench cache``: what the cache's policy layer costs over hand-written calls.

Both sides do the same I/O on the same servers, in one run, alternating in
rounds so that drift in the machine's speed hits both alike:

* read:  ``cache.read`` of a cached key  vs  ``GET`` + ``json.loads``
* write: ``cache.write`` (ORM update, commit, SET)  vs  the same three calls by hand

for ``versioned=False`` and ``versioned=True`` (where the SET is the Lua
compare-and-set). The ratio is raw time / cache time: 1.0 means the policy
layer is free, 0.8 means it costs a fifth. Each figure is the median of the
rounds' per-operation times: a write's commit waits for the disk, whose
hiccups would swing a single long run either way.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

from sqlalchemy.orm import Session

from .cache import WriteThroughCache
from .connections import make_engine, redis_client
from .models import Product, load_catalog, product_dict

PID = "p-1"
NS = "products"


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
    """Measure the four ratios; one dict per (operation, mode) with seconds per op."""
    redis = redis_client(redis_url, socket_timeout=5, connect_timeout=5)
    redis.ping()
    results = []
    with tempfile.TemporaryDirectory(prefix="wtsim-bench-") as tmp:
        engine = make_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
        load_catalog(engine)
        with Session(engine) as db:
            for versioned in (False, True):
                cache = WriteThroughCache(redis, prefix="wtsim-bench", versioned=versioned)
                key = cache.key(NS, PID)
                results += _bench_mode(cache, redis, db, key, versioned, reads, writes, rounds, progress)
                redis.delete(key)
        engine.dispose()
    return results


def _bench_mode(cache, redis, db, key, versioned, reads, writes, rounds, progress) -> list[dict]:
    mode = "versioned" if versioned else "naive"
    counter = iter(range(10**9))

    def writer(session: Session) -> Product:
        product = session.get(Product, PID)
        product.stock = next(counter) % 1000
        return product

    def cached_write() -> None:
        cache.write(db, NS, PID, writer, product_dict)

    def raw_write() -> None:
        product = writer(db)
        db.commit()
        payload = json.dumps({"v": product.version if versioned else None, "d": product_dict(product)})
        if versioned:
            cache._set_if_newer(keys=[key], args=[payload, product.version, 3_600_000])
        else:
            redis.set(key, payload, ex=3600)

    def cached_read() -> None:
        cache.read(db, NS, PID, lambda session: session.get(Product, PID), product_dict)

    def raw_read() -> None:
        json.loads(redis.get(key))

    cached_write()  # the key is cached from here on
    out = []
    for op, cached, raw, n in (("read", cached_read, raw_read, reads), ("write", cached_write, raw_write, writes)):
        if progress:
            progress(f"{op} ({mode})")
        cache_t, raw_t = [], []
        for _ in range(rounds):
            raw_t.append(_per_op(raw, n))
            cache_t.append(_per_op(cached, n))
        c, r = statistics.median(cache_t), statistics.median(raw_t)
        out.append({"operation": op, "mode": mode, "cache_s": c, "raw_s": r, "ratio": r / c})
    return out


def format_cache_bench(rows: list[dict], target: float = 0.8) -> str:
    """The bench results as an aligned table, with the target checked."""
    lines = [f"{'operation':<10}{'mode':<11}{'cache':>11}{'raw':>11}{'ratio':>8}  target >= {target}"]
    for row in rows:
        verdict = "ok" if row["ratio"] >= target else "BELOW"
        lines.append(
            f"{row['operation']:<10}{row['mode']:<11}{row['cache_s'] * 1e6:>8.1f} µs"
            f"{row['raw_s'] * 1e6:>8.1f} µs{row['ratio']:>8.2f}  {verdict}"
        )
    return "\n".join(lines)
