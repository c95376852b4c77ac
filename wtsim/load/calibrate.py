"""Measure the servers before a load run, so the simulator predicts with this machine's numbers.

The simulator's timing fields are what a request waits for: ``cache_rtt_s``
(one cache op, as the client sees it), ``db_read_s`` and ``db_write_s`` (a
query, and a write with its commit, from the pool's checkout to the answer),
and ``db_connections`` (the pool). :func:`calibrate` measures each as the
median of a few hundred sequential operations, through the same client and
sessions the run uses (and so through its proxy, when it has one).

It also measures what the *client* spends in CPU on a cache hit, a miss (a
read that goes to the database and populates), a write and a database read
alone: a load run is one Python process, and :func:`wtsim.load.run.check_rate`
refuses a scenario whose busiest predicted second would need more than one
core of it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from . import table
from .database import serve

CALIBRATION_ROUNDS = 120
"""Operations per measurement; the calibration needs rows 1 .. this many in the table."""
CALIBRATION_NAMESPACE = "calibration"
"""Keys the calibration caches, next to the run's (the same prefix, deleted before the run)."""


@dataclass(frozen=True)
class Calibration:
    """This machine's numbers, in seconds: what the simulator is given, and the client's CPU costs."""

    cache_rtt_s: float
    db_read_s: float
    db_write_s: float
    db_connections: int
    cpu_hit_s: float
    cpu_miss_s: float
    cpu_write_s: float
    cpu_db_read_s: float = 0.0
    """A database read alone (what a read costs when it skips the cache)."""

    def overrides(self) -> dict[str, Any]:
        """The scenario fields this calibration sets."""
        return {"cache_rtt_s": self.cache_rtt_s, "db_read_s": self.db_read_s,
                "db_write_s": self.db_write_s, "db_connections": self.db_connections}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def calibrate(client: Any, sessions: Any, db_connections: int, prefix: str, *,
                    rounds: int = CALIBRATION_ROUNDS) -> Calibration:
    """Measure ``client`` (a ``redis.asyncio`` client) and ``sessions`` (a session factory).

    The table must hold rows 1 .. ``rounds``; the writes change them (the run resets the table after).
    """
    from ..aio import AsyncWriteThroughCache

    keys = [1 + i % 50 for i in range(rounds)]
    probe = f"{prefix}:calibration-probe"
    await client.set(probe, "x")
    rtt = await _median(rounds, lambda i: client.get(probe))
    await client.delete(probe)

    async def read(i: int) -> Any:
        async with sessions() as session:
            return await session.run_sync(table.reader(keys[i]))

    async def write(i: int) -> Any:
        async with sessions() as session:
            row = await session.run_sync(table.writer(keys[i]))
            await session.commit()
            return row

    await read(0)  # the pool's first connection, outside the measurement
    db_read = await _median(rounds, read)
    cpu_db_read = await _cpu(rounds, read)
    db_write = await _median(rounds // 2, write)

    cache = AsyncWriteThroughCache(client, None, prefix=prefix, breaker=False, clock=time.monotonic)

    async def cached_read(key: int) -> Any:
        return await serve(cache, cache.policy.read(cache.state, CALIBRATION_NAMESPACE, key, table.reader(key),
                                                    table.serialize), sessions)

    async def cached_write(key: int) -> Any:
        return await serve(cache, cache.policy.write(cache.state, CALIBRATION_NAMESPACE, key, table.writer(key),
                                                     table.serialize), sessions)

    misses = list(range(1, rounds + 1))
    cpu_miss = await _cpu(rounds, lambda i: cached_read(misses[i]))  # each key once: every read misses
    cpu_hit = await _cpu(rounds, lambda i: cached_read(misses[i]))  # now cached: every read hits
    cpu_write = await _cpu(rounds // 2, lambda i: cached_write(misses[i]))
    return Calibration(cache_rtt_s=rtt, db_read_s=db_read, db_write_s=db_write, db_connections=db_connections,
                       cpu_hit_s=cpu_hit, cpu_miss_s=cpu_miss, cpu_write_s=cpu_write, cpu_db_read_s=cpu_db_read)


async def _median(rounds: int, op: Any) -> float:
    """The median wall time of ``op(i)``, awaited one after the other."""
    times = []
    for i in range(rounds):
        start = time.perf_counter()
        await op(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def _cpu(rounds: int, op: Any) -> float:
    """The process's CPU time per ``op(i)`` (every thread: the database driver's, the proxies')."""
    start = time.process_time()
    for i in range(rounds):
        await op(i)
    return (time.process_time() - start) / rounds
