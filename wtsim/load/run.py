"""One load run: a scenario in real time, against real Redis and SQL, judged by the simulator's oracle.

How a run goes (:func:`run_load`):

1. **Servers.** Redis is a private ``redis-server`` on a free port when the
   binary is installed and no URL is given (else the given or the local one);
   the database is a SQLite file in a temporary folder unless a URL is given.
   The run touches only its own keys (a prefix of its own) and its own table
   (:mod:`wtsim.load.table`), and deletes its keys at the end.
2. **Calibration** (:func:`wtsim.load.calibrate.calibrate`): the cache round
   trip, the database read and write service times, and what a hit and a
   database read cost the client in CPU, measured on these servers.
3. **Prediction.** The scenario with the calibrated times, simulated with the
   same seed. Its busiest second tells whether one client process can drive
   the scenario: if not, the run is refused before it starts (:class:`LoadTooHigh`).
4. **The run.** ``app_servers`` clients, each a cache instance of its own
   (its breaker, its repair memory, its counters) and, when the scenario has
   cache faults, a fault proxy of its own in front of Redis, in a process of
   its own (:mod:`wtsim.load.proxies`). The arrivals are the simulator's own (:class:`~wtsim.sim.workload.Workload`
   on the same seed's streams): the same requests, at the same offsets, on
   the same keys and servers. Each is started on the event loop at its time;
   the faults are applied on the same clock (:func:`wtsim.proxy.run_schedule`).
5. **Judgement.** Every request is a :class:`~wtsim.load.history.Record`; the
   history is judged by :mod:`wtsim.oracle` and folded by the simulator's
   recorder into a :class:`~wtsim.sim.Result`. Keys stale at rest: every
   cached entry against the table, after the run.

Timeouts and retries follow the simulator's model: a client that gives up
records its request once, as failed, at that moment; the request is
abandoned where it waits (it sends no further op, so it never populates), and
its database query still runs. A retry is a new request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import math
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from sqlalchemy.engine import make_url

from ..breaker import CircuitBreaker
from ..codec import decode
from ..keys import namespace_prefix, parse_key
from ..ops import CacheError, DbRead, DbWrite
from ..sim.metrics import Result
from ..sim.run import poisson_workload, random_streams
from ..sim.run import run as simulate
from ..sim.scenario import Scenario
from ..sim.workload import WRITE
from . import table
from .calibrate import CALIBRATION_ROUNDS, Calibration, calibrate
from .database import serve
from .history import READ, Record, measured_result
from .history import WRITE as WRITE_KIND

log = logging.getLogger("wtsim.load")

LOAD_POLICIES = ("none", "cache-aside", "write-through")
"""The patterns a load run drives (write-behind needs flusher processes: not yet)."""
CACHE_FAULTS = ("cache-down", "cache-unreachable", "cache-hang", "cache-slow", "partition",
                "cache-flush", "cache-crash")
ADMIN_FAULTS = ("cache-flush", "cache-crash", "cache-set-fail")
"""Faults that need FLUSH-like deletes or CONFIG SET: refused on a server the run did not start,
unless ``allow_admin_faults`` (and then a flush deletes the run's own keys only)."""
CPU_BUDGET = 0.9
"""The CPU seconds the client may need in the busiest predicted second before a run is refused."""
RATE_TOLERANCE = 0.10
"""A run in which, in some second, more than this share of the requests started late did not keep up."""
LATE_S = 0.1
"""A request that started this long after its time started late."""
DRAIN_S = 30.0
"""How long requests still in flight at ``duration_s`` may take to finish."""
MAX_REDIS_CONNECTIONS = 2000
"""Each client's Redis connection pool: room for every request in flight to have one."""
POOL_WARM = 30
"""Connections each client opens before the run (a run's first second would otherwise open them)."""
PREFILL_BATCH = 20
"""Keys the prefill reads at once (at most the database pool's connections)."""
LEAD_S = 0.2
"""The run starts this long after its first arrivals are scheduled."""


class _Watch:
    """One request's eyes on its ops: counts them, stamps its commit, and stops it once its client gave up."""

    __slots__ = ("record", "loop", "t0", "given_up")

    def __init__(self, record: Record, loop: asyncio.AbstractEventLoop, t0: float) -> None:
        self.record, self.loop, self.t0, self.given_up = record, loop, t0, False

    def before(self, op: Any) -> None:
        if self.given_up:
            raise Abandoned()
        kind = type(op)
        if kind is DbRead:
            self.record.db_reads += 1
        elif kind is DbWrite:
            self.record.db_writes += 1

    def after(self, op: Any, value: Any) -> None:
        if type(op) is DbWrite:
            self.record.committed_version, self.record.committed_at = value.version, self.loop.time() - self.t0

    def failed(self, op: Any, error: Exception) -> None:
        if isinstance(error, CacheError):
            self.record.cache_errors += 1


class LoadTooHigh(ValueError):
    """This machine's client cannot drive the scenario's rate (refused before the run)."""


class Abandoned(BaseException):
    """Raised into a request whose client gave up: it sends no further op (never populates)."""


@dataclass
class LoadRun:
    """What :func:`run_load` predicted and measured, and how the run went."""

    scenario: Scenario
    """The scenario as simulated and run: the calibrated times in place of the file's."""
    predicted: Result
    measured: Result
    calibration: Calibration
    rate: dict[str, Any]
    """``intended_per_s``, ``achieved_per_s``, ``kept_up``, and how late requests started (``lag_s``)."""
    faults: list[tuple[float, str]]
    """What the fault schedule did, ``(seconds since start, what)``."""
    redis: str
    database: str
    records: list[Record] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """``{"predicted": Result.to_dict(), "measured": Result.to_dict(), ...}``: plain JSON data."""
        return {
            "predicted": self.predicted.to_dict(),
            "measured": self.measured.to_dict(),
            "calibration": self.calibration.to_dict(),
            "rate": self.rate,
            "faults": [{"t": t, "what": what} for t, what in self.faults],
            "redis": self.redis,
            "database": self.database,
        }


def check_scenario(scenario: Scenario, *, owned_redis: bool, allow_admin_faults: bool) -> None:
    """Refuse, naming the field, what a load run cannot do with ``scenario``."""
    s = scenario
    if s.policy not in LOAD_POLICIES:
        raise ValueError(f"policy {s.policy!r}: wtsim load drives {', '.join(LOAD_POLICIES)} "
                         "(write-behind needs flusher processes; simulate it with wtsim run)")
    if s.cache_capacity is not None:
        raise ValueError("cache_capacity: a real Redis evicts by memory, not by key count; "
                         "wtsim load needs cache_capacity unset")
    if s.trace is not None:
        raise ValueError("trace: wtsim load replays Poisson arrivals and scripted requests only")
    if s.retry_budget is not None:
        raise ValueError("retry_budget: not modelled by wtsim load; leave it unset")
    if s.abandoned_queries != "run":
        raise ValueError("abandoned_queries: a real query already sent still runs; wtsim load needs 'run'")
    for fault in s.faults:
        name = f"fault {fault.kind} at {fault.start_s} s"
        if fault.probability != 1.0:
            raise ValueError(f"{name}: probability {fault.probability}: a fault is injected for real, "
                             "on every op (probability 1)")
        if fault.kind == "flusher-down":
            raise ValueError(f"{name}: there is no flusher in a load run")
        if fault.kind in ADMIN_FAULTS and not owned_redis and not allow_admin_faults:
            raise ValueError(f"{name}: needs FLUSH or CONFIG on a Redis this run did not start; "
                             "give --allow-admin-faults (a flush then deletes this run's keys only)")
        if fault.kind == "cache-set-fail" and not owned_redis and fault.servers is not None:
            raise ValueError(f"{name}: maxmemory is server-wide; it cannot strike some app servers only")


def run_load(scenario: Scenario, redis_url: str | None = None, database_url: str | None = None, *,
             allow_admin_faults: bool = False, progress: Callable[[str], None] | None = None,
             tick: Callable[[float], None] | None = None) -> LoadRun:
    """Run ``scenario`` in real time on real servers; answer the prediction beside the measurement.

    ``redis_url=None``: a private ``redis-server`` (else the local one);
    ``database_url=None``: a SQLite file in a temporary folder. ``progress``
    gets a line per step; ``tick`` the run's elapsed seconds, about once a second.
    Raises ``ValueError`` (and :class:`LoadTooHigh`) for what cannot be run.
    Called where an event loop already runs (a notebook), it runs in a thread of its own.
    """
    say = progress or (lambda line: None)
    with contextlib.ExitStack() as stack:
        redis_url, owned = _redis(redis_url, stack, say)
        check_scenario(scenario, owned_redis=owned, allow_admin_faults=allow_admin_faults)
        database_url = _database(database_url, stack)
        run = _LoadRun(scenario, redis_url, owned, database_url, say, tick).run
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # the usual case: no event loop here yet
            return asyncio.run(run())
        with concurrent.futures.ThreadPoolExecutor(1) as thread:  # inside one (a notebook): a thread of its own
            return thread.submit(lambda: asyncio.run(run())).result()


def _redis(url: str | None, stack: contextlib.ExitStack, say: Callable[[str], None]) -> tuple[str, bool]:
    if url is not None:
        return url, False
    from .servers import PrivateRedis, redis_server_binary

    if redis_server_binary() is None:
        say("redis-server is not installed: using the local Redis at 127.0.0.1:6379")
        return "redis://127.0.0.1:6379/0", False
    server = stack.enter_context(PrivateRedis())
    say(f"started a private redis-server on port {server.port}")
    return server.url, True


def _database(url: str | None, stack: contextlib.ExitStack) -> str:
    if url is not None:
        return url
    folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="wtsim-load-"))
    return f"sqlite:///{Path(folder) / 'load.db'}"


class _LoadRun:
    """The asyncio side of one run. Use :func:`run_load`."""

    def __init__(self, scenario: Scenario, redis_url: str, owned_redis: bool, database_url: str,
                 say: Callable[[str], None], tick: Callable[[float], None] | None) -> None:
        self.scenario, self.redis_url, self.owned_redis = scenario, redis_url, owned_redis
        self.database_url, self.say, self.tick = database_url, say, tick
        self.prefix = f"wtload-{uuid.uuid4().hex[:8]}"
        self.records: list[Record] = []
        self.lags: list[float] = []
        self.pending: set[asyncio.Task] = set()
        self.t0 = 0.0

    async def run(self) -> LoadRun:
        import redis

        from ..aio import async_redis_client
        from .database import Database
        from .proxies import ProxyProcesses

        s = self.scenario
        direct = redis.Redis.from_url(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        try:
            direct.ping()
        except redis.RedisError as exc:
            raise ValueError(f"redis url {self.redis_url}: Redis not reachable ({exc})") from None
        proxies = db_proxy = None
        database_url = self.database_url
        if any(f.kind == "db-down" for f in s.faults) and make_url(database_url).get_backend_name() != "sqlite":
            db_proxy, database_url = _database_proxy(database_url)  # db-down cuts it
        database = Database(database_url, s.db_connections)
        self.sessions = database.session
        clients: list[Any] = []
        try:
            await database.reset(max(s.n_keys, CALIBRATION_ROUNDS))  # the calibration's rows, at least
            if any(f.kind in CACHE_FAULTS for f in s.faults):
                host, port = _host_port(direct)
                proxies = ProxyProcesses(s.app_servers, host, port).start()
            urls = proxies.urls if proxies is not None else [self.redis_url] * s.app_servers
            timeout = dict(socket_timeout=s.cache_timeout_s,
                           connect_timeout=s.cache_connect_timeout_s or s.cache_timeout_s)
            # redis.asyncio's pool fails at once past 100 connections in use; the model has no such limit
            clients = [async_redis_client(u, max_connections=MAX_REDIS_CONNECTIONS, **timeout) for u in urls]
            self.say("calibrating: the cache round trip, the database's service times, the client's CPU")
            calibration = await calibrate(clients[0], self.sessions, s.db_connections, self.prefix)
            await database.reset(s.n_keys)  # the calibration wrote rows: back to version 1
            _delete_prefix(direct, self.prefix)
            run_scenario = s.replace(**calibration.overrides())
            self.say(f"simulating {s.name} with those numbers (seed {s.seed})")
            predicted = simulate(run_scenario)
            check_rate(predicted, calibration)
            self.caches = [self._cache(c, f"server-{i}") for i, c in enumerate(clients)]
            if s.prefill:
                self.say(f"prefilling the cache: the policy's read of {s.n_keys:,} keys")
                await self._prefill(clients[0])
            await _open_connections(clients, POOL_WARM)
            # A full collection of the growing history (and of whatever the process held before)
            # stalls the event loop for a tenth of a second or more, and requests would start late:
            # one now, before the clock starts; during the run, the young generations only.
            gc.collect()
            gc.freeze()
            gc.disable()
            try:
                self.t0 = asyncio.get_running_loop().time() + LEAD_S  # asyncio's clock is time.monotonic
                if s.prefill and s.ttl_s is not None:
                    self._expire_prefill_at(direct, self.t0 + s.ttl_s)
                self.say(f"running {s.name} for {s.duration_s:g} s in real time "
                         f"({s.read_rate + s.write_rate:,.0f} requests/s, {s.app_servers} app server(s))")
                fault_log = await self._run(direct, proxies, database, db_proxy, calibration)
            finally:
                gc.enable()
                gc.unfreeze()
            self.say("judging the history with the simulator's oracle")
            at_rest = await self._stale_at_rest(direct, database)
            stats = _sum_stats(c.state.stats.as_dict() for c in self.caches)
            self.records.sort(key=lambda r: r.start)
            measured = measured_result(run_scenario, self.records, stats, keys_stale_at_rest=at_rest)
            return LoadRun(
                scenario=run_scenario, predicted=predicted, measured=measured, calibration=calibration,
                rate=self._rate(), faults=fault_log, redis=_describe_redis(self.redis_url, self.owned_redis),
                database=_describe_database(self.database_url), records=self.records,
            )
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await client.aclose()
            for proxy in (proxies, db_proxy):
                if proxy is not None:
                    proxy.stop()
            with contextlib.suppress(Exception):
                _delete_prefix(direct, self.prefix)
            direct.close()
            await database.dispose()

    # -- the clients ---------------------------------------------------------------------------

    def _cache(self, client: Any, owner: str) -> Any:
        from ..aio import AsyncCacheAside, AsyncPolicyCache, AsyncWriteThroughCache
        from ..policies import POLICIES

        s = self.scenario
        classes = {"write-through": AsyncWriteThroughCache, "cache-aside": AsyncCacheAside}
        breaker = CircuitBreaker(s.breaker_threshold, s.breaker_cooldown_s) if s.breaker else False
        cache_class = classes.get(s.policy, AsyncPolicyCache)
        cache = cache_class(
            client, s.ttl_s, prefix=self.prefix, versioned=s.versioned, outage_repair=s.outage_repair,
            breaker=breaker, tombstone_ttl=s.tombstone_ttl_s, leases=s.leases, lease_ttl=s.lease_ttl_s,
            lease_wait=s.lease_wait_s, lease_retries=s.lease_retries, early_recompute_beta=s.early_recompute_beta,
            clock=time.monotonic,
        )
        if cache_class is AsyncPolicyCache:
            cache.policy = POLICIES[s.policy]  # "none": the database only, through the same driver
        return cache

    async def _prefill(self, client: Any) -> None:
        """Warm the cache as the simulator does: the policy's read of every key, most popular last.

        :data:`PREFILL_BATCH` keys at a time (distinct keys: the reads do not meet),
        so the round trips overlap: a run on many keys starts that much sooner.
        """
        cache = self._cache(client, "prefill")

        async def read(key: int) -> None:
            await serve(cache, cache.policy.read(cache.state, table.NAMESPACE, key, table.reader(key),
                                                 table.serialize), self.sessions)

        keys = range(self.scenario.n_keys, 0, -1)
        for i in range(0, len(keys), PREFILL_BATCH):
            await asyncio.gather(*(read(key) for key in keys[i:i + PREFILL_BATCH]))

    def _expire_prefill_at(self, direct: Any, at: float) -> None:
        """Give every prefilled entry the expiry the simulator gives it: ``ttl_s`` after the start.

        The prefill takes a while (a real read of every key); entries set at its
        beginning would expire that much earlier than the simulator's, all set at t = 0.
        """
        keys = list(direct.scan_iter(match=namespace_prefix(self.prefix, table.NAMESPACE) + "*", count=1000))
        pipe = direct.pipeline(transaction=False)
        for key in keys:
            pipe.pexpire(key, max(1, round((at - time.monotonic()) * 1000)))
        pipe.execute()

    async def _run(self, direct: Any, proxies: Any, database: Any, db_proxy: Any, calibration: Calibration) -> list:
        from ..proxy import run_schedule

        s = self.scenario
        loop = asyncio.get_running_loop()
        schedule = None
        if s.faults:
            db = database.sync_engine if database.inline else ([db_proxy] if db_proxy is not None else None)
            schedule = run_schedule(
                s.faults, list(proxies) if proxies is not None else [], clock=time.monotonic, t0=self.t0,
                cache_client=direct, prefix=self.prefix, owned_redis=self.owned_redis or False,
                db=db, rtt_s=calibration.cache_rtt_s,
                on_event=lambda t, what: log.info("t=%.3fs: %s", t, what),
            )
        collector = asyncio.create_task(_collect_young())  # the full collections wait for the run's end
        try:
            feeder = asyncio.create_task(self._arrivals(loop))
            ticker = asyncio.create_task(self._ticks(loop)) if self.tick is not None else None
            await feeder
            deadline = loop.time() + DRAIN_S
            while self.pending and loop.time() < deadline:
                await asyncio.wait(set(self.pending), timeout=deadline - loop.time())
            if ticker is not None:
                ticker.cancel()
            for task in self.pending:
                task.cancel()
        finally:
            collector.cancel()
            if schedule is not None:
                schedule.stop()
        return list(schedule.log) if schedule is not None else []

    async def _ticks(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.tick(min(loop.time() - self.t0, self.scenario.duration_s))  # type: ignore[misc]

    async def _arrivals(self, loop: asyncio.AbstractEventLoop) -> None:
        """Schedule the simulator's arrivals on the event loop, a second ahead of their time."""
        s = self.scenario
        arrivals, keys, servers, *_ = random_streams(s.seed)
        workload = poisson_workload(s, arrivals, keys, servers)
        for request in s.requests:
            loop.call_at(self.t0 + request.at_s, self._start, request.at_s, request.kind == WRITE,
                         request.key, request.server, 0)
        self.intended = len(s.requests)
        for times, is_write, keys_, servers_ in workload.chunks():
            if times:
                ahead = self.t0 + times[0] - 1.0 - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            for at, write, key, server in zip(times, is_write, keys_, servers_):
                loop.call_at(self.t0 + at, self._start, at, write, key, server, 0)
            self.intended += len(times)
        end = self.t0 + s.duration_s - loop.time()
        if end > 0:
            await asyncio.sleep(end)
        await asyncio.sleep(0)  # the callbacks due at the very end run first

    def _start(self, at: float, write: bool, key: int, server: int, attempt: int) -> None:
        now = asyncio.get_running_loop().time() - self.t0
        if attempt == 0:
            self.lags.append(now - at)
        task = asyncio.ensure_future(self._request(now, at if attempt == 0 else None, write, key, server, attempt))
        self.pending.add(task)
        task.add_done_callback(self.pending.discard)

    async def _request(self, start: float, at: float | None, write: bool, key: int, server: int,
                       attempt: int) -> None:
        """One request: the policy on the client's cache, every op counted; recorded when done or given up."""
        s, loop, cache = self.scenario, asyncio.get_running_loop(), self.caches[server]
        record = Record(server=server, kind=WRITE_KIND if write else READ, key=key, start=start, at=at,
                        attempt=attempt)
        watch = _Watch(record, loop, self.t0)
        if write:
            policy = cache.policy.write(cache.state, table.NAMESPACE, key, table.writer(key), table.serialize)
        else:
            policy = cache.policy.read(cache.state, table.NAMESPACE, key, table.reader(key), table.serialize)
        timer = None
        if s.request_timeout_s is not None:
            timer = loop.call_at(self.t0 + start + s.request_timeout_s, self._give_up, watch, write, attempt)
        try:
            value = await serve(cache, policy, self.sessions, watch)
        except Abandoned:
            return  # recorded when its client gave up
        except Exception as exc:
            if watch.given_up:
                return
            record.failed, record.error = True, type(exc).__name__
        else:
            if watch.given_up:
                return
            if write:
                record.version = value.version
            elif value is not None:
                record.version = value["version"]
        finally:
            if timer is not None:
                timer.cancel()
        record.end = loop.time() - self.t0
        self._done(record, write, attempt)

    def _give_up(self, watch: "_Watch", write: bool, attempt: int) -> None:
        """The client stops waiting: the request is failed now; it sends no further op."""
        record = watch.record
        watch.given_up = True
        record.end, record.failed, record.error = self.scenario.request_timeout_s + record.start, True, "TimeoutError"
        self._done(record, write, attempt)

    def _done(self, record: Record, write: bool, attempt: int) -> None:
        self.records.append(record)
        s, loop = self.scenario, asyncio.get_running_loop()
        if record.failed and attempt < s.retries and loop.time() - self.t0 < s.duration_s:
            backoff = s.retry_backoff_s * 2 ** attempt
            loop.call_later(backoff, self._start, 0.0, write, record.key, record.server, attempt + 1)

    # -- after the run ---------------------------------------------------------------------------

    async def _stale_at_rest(self, direct: Any, database: Any) -> int:
        """Every cached entry of the run's prefix against the table: how many are older."""
        from .. import oracle

        committed = await database.versions()
        cached: dict[int, int | None] = {}
        pattern = namespace_prefix(self.prefix, table.NAMESPACE) + "*"
        keys = list(direct.scan_iter(match=pattern, count=1000))
        for name, raw in zip(keys, direct.mget(keys) if keys else []):
            if raw is None:
                continue
            entry = decode(raw)
            _, _, entity = parse_key(name.decode())
            data = entry.data
            cached[int(entity)] = data.get("version") if isinstance(data, dict) else None
        return len(oracle.stale_at_rest(cached, committed))

    def _rate(self) -> dict[str, Any]:
        """How well the client kept the scenario's pace (see :data:`RATE_TOLERANCE`, :data:`LATE_S`).

        It kept up when, in every second, at least 90% of the requests the
        scenario asked for started within ``LATE_S`` of their time: a client
        that falls behind starts requests late, and a request that starts late
        meets a different cache than the simulator's.
        """
        s = self.scenario
        firsts = [r for r in self.records if r.attempt == 0 and r.at is not None]
        seconds = max(1, math.ceil(s.duration_s))
        asked, late = np.zeros(seconds), np.zeros(seconds)
        for r in firsts:
            t = min(int(r.at), seconds - 1)
            asked[t] += 1
            late[t] += r.start - r.at > LATE_S
        on_time = asked - late
        shares = np.divide(on_time, asked, out=np.ones(seconds), where=asked > 0)
        worst = int(np.argmin(shares))
        lags = np.asarray(self.lags) if self.lags else np.zeros(1)
        return {
            "intended_per_s": self.intended / s.duration_s,
            "achieved_per_s": float(on_time.sum()) / s.duration_s,
            "kept_up": bool(shares.min() >= 1 - RATE_TOLERANCE) and len(firsts) >= (1 - RATE_TOLERANCE) * self.intended,
            "worst_second": {"t": worst, "on_time": float(shares[worst])},
            "lag_s": {"p50": float(np.percentile(lags, 50)), "p99": float(np.percentile(lags, 99)),
                      "max": float(lags.max())},
        }


async def _collect_young(period_s: float = 0.5) -> None:
    """Collect the two young generations now and then (the cycles a failed request's traceback makes)."""
    while True:
        await asyncio.sleep(period_s)
        gc.collect(1)


async def _open_connections(clients: list, count: int) -> None:
    """Open ``count`` connections in each client's pool now, so the run does not pay for them at its start."""
    for client in clients:
        connections = [await client.connection_pool.get_connection() for _ in range(count)]
        for connection in connections:
            await client.connection_pool.release(connection)


def check_rate(predicted: Result, calibration: Calibration) -> None:
    """Refuse a scenario whose busiest predicted second needs more client CPU than :data:`CPU_BUDGET`.

    A second's CPU: every read pays at least a hit's work, each database read
    its query, each write its write (a read that misses pays a hit's worth of
    cache work, or none when the cache is skipped). A lower bound, measured on
    this machine: what it leaves out (the event loop's own work, new
    connections) shows up after the run, in how late requests started.
    """
    s, c = predicted.scenario, calibration
    worst, worst_row = 0.0, None
    for row in predicted.timeline:
        cpu = row["reads"] * c.cpu_hit_s + row["db_reads"] * c.cpu_db_read_s + row["writes"] * c.cpu_write_s
        if cpu > worst:
            worst, worst_row = cpu, row
    if worst > CPU_BUDGET and worst_row is not None:
        scale = CPU_BUDGET / worst
        raise LoadTooHigh(
            f"read_rate {s.read_rate:g}/s: this machine's client cannot keep it within {RATE_TOLERANCE:.0%}: "
            f"its busiest second (t={worst_row['t']} s: {worst_row['reads']:,} reads, {worst_row['db_reads']:,} "
            f"of them from the database, {worst_row['writes']:,} writes) needs {worst:.2f} s of CPU "
            f"({c.cpu_hit_s * 1e6:.0f} µs a hit, {c.cpu_db_read_s * 1e6:.0f} µs a database read, "
            f"{c.cpu_write_s * 1e6:.0f} µs a write), at most {CPU_BUDGET:g}: "
            f"try --set read_rate={math.floor(s.read_rate * scale)}"
        )


def _database_proxy(url: str) -> tuple[Any, str]:
    """A proxy process in front of the database of ``url`` (for ``db-down``), and the URL through it."""
    from .proxies import ProxyProcess

    parsed = make_url(url)
    proxy = ProxyProcess(parsed.host or "127.0.0.1", parsed.port or 5432)
    proxy.launch()
    try:
        proxy.wait_ready()
    except BaseException:
        proxy.stop()
        raise
    return proxy, parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)


def _host_port(client: Any) -> tuple[str, int]:
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        raise ValueError("cache faults need Redis on TCP (a proxy sits in front of it), not a unix socket")
    return kwargs.get("host", "127.0.0.1"), int(kwargs.get("port", 6379))


def _delete_prefix(client: Any, prefix: str) -> None:
    from ..proxy import flush

    flush(client, prefix)


def _sum_stats(all_stats: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for stats in all_stats:
        for name, value in stats.items():
            total[name] = total.get(name, 0) + value
    return total


def _describe_redis(url: str, owned: bool) -> str:
    return f"a private redis-server ({url})" if owned else url


def _describe_database(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)

