"""One simulation run: wire the scenario's world, app servers and workload together, and run it.

How a run goes:

1. Six random streams are spawned from ``Scenario.seed`` (arrival times, keys,
   app servers, service times, fault coins, the policies' draws for early
   recompute): the same seed gives the same run, and changing one part of a
   scenario does not reshuffle the others' draws.
2. The :class:`~wtsim.sim.world.World` starts with every row at version 1, and,
   with ``prefill``, a warm cache: the policy's own read of each key, run at
   t = 0 in zero time.
3. Each arrival becomes a :class:`~wtsim.sim.driver.Request` on one app
   server, which runs the policy's generator (:data:`wtsim.policies.POLICIES`):
   the library's own policy code, resumed from SimPy event callbacks.
4. Under write-behind, ``flushers`` SimPy processes run the flusher's policy
   (:func:`wtsim.policies.flush.flush_once`) in a loop, and a
   :class:`~wtsim.sim.ledger.WriteLedger` is the oracle: it judges reads
   against the newest *acknowledged* write and counts what a crash lost.
5. Arrivals stop at ``duration_s``; requests still in flight are allowed to
   finish, so every request that arrived is measured. The flushers then drain
   the queue, for at most ``duration_s`` more. Then the world counts the keys
   whose cached entry is older than their row: stale at rest.

The namespace is ``"items"`` and the entity ids are the key numbers, so the
cache keys are the library's real keys (``wtc:{items:42}``).
"""

from __future__ import annotations

import json
import logging
import os
from itertools import chain
from typing import Callable

import numpy as np
import simpy

from ..breaker import CircuitBreaker
from ..ops import CacheGet, CacheQueueWrite, DbRead, DbWrite, Wait
from ..policies import POLICIES, CacheState, CacheStats, PolicyConfig, drive, write_behind
from ..policies.flush import FlushConfig, FlushState, FlushStats, flush_once
from ..policies.state import entry_get
from .driver import AppServer, Callback, Request, ServiceTimes
from .faults import FaultModel
from .ledger import WriteLedger
from .metrics import Recorder, Result
from .scenario import Scenario
from .trace import TraceWorkload, scan
from .workload import WRITE, Workload
from .world import DatabaseUnavailable, DecodedCodec, Row, World

log = logging.getLogger("wtsim.sim.run")

NAMESPACE = "items"
STREAM = "wtc:queue"
"""The write-behind queue, named as :class:`wtsim.WriteBehindCache` names it by default."""
FLUSH_ERROR_PAUSE_S = 0.1
"""How long a simulated flusher waits after a failed batch before it tries again."""
RETRY_TOKENS_BANKED = 10.0
"""A retry budget's bucket: it starts full and holds at most this many retries (as Finagle's does)."""


def run(scenario: Scenario, progress: Callable[[float], None] | None = None) -> Result:
    """Simulate ``scenario``; return what it measured after the warm-up.

    ``progress``, when given, is called with the simulated time after each simulated second.
    """
    return Simulation(scenario).run(progress)


BYTES_PER_KEY = 32
"""Memory a key costs the simulator before anything is cached (its version, its popularity), measured."""
BYTES_PER_CACHED_KEY = 650
"""What one cached entry adds (the entry, its row, the LRU order), measured."""


def memory_estimate(scenario: Scenario) -> int:
    """Bytes the simulation's key space needs at least: the table, the popularity, a prefilled cache."""
    s = scenario
    cached = 0
    if s.prefill:
        cached = s.n_keys if s.cache_capacity is None else min(s.n_keys, s.cache_capacity)
    return s.n_keys * BYTES_PER_KEY + cached * BYTES_PER_CACHED_KEY


def check_memory(scenario: Scenario, available: int | None = None) -> None:
    """Refuse, naming the estimate, a scenario whose keys alone would not fit in half this machine's memory."""
    if available is None:
        try:
            available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not a POSIX system: nothing to check against
            return
    need = memory_estimate(scenario)
    if need > available // 2:
        raise ValueError(
            f"n_keys={scenario.n_keys:,} needs about {_gib(need)} of memory for its keys"
            f" ({BYTES_PER_KEY} bytes a key{', plus ' + str(BYTES_PER_CACHED_KEY) + ' a prefilled one' if scenario.prefill else ''});"
            f" this machine has {_gib(available)}: allowed is at most half of it. Use fewer keys"
            " (the hit ratio depends on the popularity and the capacity, not the key count alone)."
        )


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def random_streams(seed: int) -> tuple[np.random.Generator, ...]:
    """The run's six random streams, spawned from ``seed``: arrival times, keys, app servers,
    service times, fault coins, the policies' draws (see step 1 above)."""
    return tuple(np.random.default_rng(seq) for seq in np.random.SeedSequence(seed).spawn(6))


def poisson_workload(scenario: Scenario, arrivals: np.random.Generator, keys: np.random.Generator,
                     servers: np.random.Generator) -> Workload:
    """The scenario's Poisson arrivals on the first three streams; the load runner replays the same ones."""
    s = scenario
    return Workload(
        duration_s=s.duration_s, read_rate=s.read_rate, write_rate=s.write_rate, n_keys=s.n_keys,
        zipf_alpha=s.zipf_alpha, app_servers=s.app_servers, bursts=s.bursts,
        arrivals_rng=arrivals, keys_rng=keys, servers_rng=servers,
    )


def _serialize(row: Row) -> dict:
    return row  # the simulated rows are already plain, JSON-safe dicts


MEMO_KEYS = 1 << 16
"""How many keys' ``CacheGet`` a simulation remembers: keys 1 to this (the popular ones, and a trace's first)."""


def memoized_gets(prefix: str, n_keys: int) -> Callable[[str, str, int], CacheGet]:
    """A ``get_of`` for one run's app servers: each key's ``CacheGet`` is made once (keys repeat: Zipf).

    A list indexed by the key number finds it in one step. (``functools.lru_cache``
    did the same through a dict of argument tuples and a linked list: six objects
    scattered in memory a hit, which cost more than the lookup once there are
    thousands of keys.) Only the keys 1 .. :data:`MEMO_KEYS` of ``NAMESPACE`` under
    ``prefix`` are kept; anything else is made afresh.
    """
    run_prefix = prefix
    ops: list[CacheGet | None] = [None] * (min(n_keys, MEMO_KEYS) + 1)
    last = len(ops) - 1

    def get_of(prefix: str, namespace: str, entity_id: int) -> CacheGet:
        if namespace is not NAMESPACE or prefix is not run_prefix or not 0 < entity_id <= last:
            return entry_get(prefix, namespace, entity_id)
        op = ops[entity_id]
        if op is None:
            op = ops[entity_id] = entry_get(prefix, namespace, entity_id)
        return op

    return get_of


class Measured(Request):
    """A request of the workload: what it needs to record itself when it ends, once (:class:`Read`, :class:`Write`)."""

    __slots__ = ("simulation", "key", "server_index", "start_s", "attempt", "trace", "done")
    WRITE = False  # a read or a write, as its retry is told

    def __init__(self, policy, performers, simulation: "Simulation", key: int, server_index: int,
                 start_s: float, attempt: int, trace: dict | None) -> None:
        Request.__init__(self, policy, performers)
        self.simulation = simulation
        self.key = key
        self.server_index = server_index
        self.start_s = start_s
        self.attempt = attempt
        self.trace = trace
        self.done = False

    def finished(self, value, failure: BaseException | None) -> None:
        """Record the request (once: a request its client gave up was recorded then); retry it if it failed."""
        if self.done:
            return
        self.done = True
        sim = self.simulation
        sim.in_flight -= 1
        self.record(value, failure, sim.env.now - self.start_s)
        if failure is not None:
            sim._retry(self.WRITE, self.key, self.server_index, self.attempt)

    def record(self, value, failure: BaseException | None, latency: float) -> None:
        """Judge and record what the policy returned (``value``) or failed with."""
        raise NotImplementedError


class Read(Measured):
    """A read, judged by the oracle against ``newest``: the newest write committed (or, under
    write-behind, accepted by the cache) when the read began."""

    __slots__ = ("newest",)

    def record(self, value, failure: BaseException | None, latency: float) -> None:
        sim, start = self.simulation, self.start_s
        version = staleness = None
        if failure is None:
            version = value["version"]
            if sim.ledger is not None:
                staleness = sim.ledger.staleness(self.key, value, self.newest, start)
            elif version < self.newest:  # the newest version is always fresh: ask the oracle only otherwise
                staleness = sim.world.db.staleness(self.key, version, self.newest, start)
        sim.recorder.read(start, latency, self, failure is not None, staleness)
        if self.trace is not None:
            self.trace.update(version=version, failed=failure is not None, latency_s=latency, staleness_s=staleness)


class Write(Measured):
    """A write; under write-behind ``u`` numbers it for the ledger, which it tells once acknowledged."""

    __slots__ = ("u",)
    WRITE = True

    def record(self, value, failure: BaseException | None, latency: float) -> None:
        sim, start, u = self.simulation, self.start_s, self.u
        version = None
        if failure is None:
            version = value["version"] if u is None else value  # write-behind's write answers its version
        sim.recorder.write(start, latency, self, failure is not None)
        if u is not None and failure is None:
            sim.ledger.acknowledged(u, start, sim.env.now)
        if self.trace is not None:
            self.trace.update(version=version, failed=failure is not None, latency_s=latency, staleness_s=None)


class Simulation:
    """The SimPy environment of one run, with everything in it. Use :func:`run`."""

    def __init__(self, scenario: Scenario) -> None:
        s = self.scenario = scenario
        self.trace = scan(s.trace, s.duration_s) if s.trace is not None else None  # a recorded workload
        self.n_keys = s.n_keys if self.trace is None else self.trace.n_keys  # the trace's keys, numbered
        if self.trace is None:  # a trace's keys are in memory already, once scanned
            check_memory(s)
        self.env = env = simpy.Environment()
        arrivals, keys, servers, service, coins, draws = random_streams(s.seed)
        self._draws = draws.random
        self.world = World(self.n_keys, s.cache_capacity, clock=lambda: env.now)
        self.write_behind = s.policy == "write-behind"
        self.ledger = WriteLedger() if self.write_behind else None
        self.in_flight = 0  # requests started and not done
        self._at_warmup: dict[str, int] = {}  # the policy counters as the warm-up ended
        self.arriving = 1 + bool(s.requests)  # arrival processes still issuing requests (Poisson, scripted)
        self.workload = poisson_workload(s, arrivals, keys, servers) if self.trace is None \
            else TraceWorkload(self.trace, s.app_servers, servers)
        self.faults = FaultModel(s.faults, coins) if s.faults else None
        self.recorder = Recorder(s.duration_s, s.warmup_s)
        self.scripted: list[dict] = []  # what each scripted request did, for Result.scripted
        self.policy = POLICIES[s.policy]
        self.config = PolicyConfig(
            default_ttl=s.ttl_s,
            versioned=s.versioned or self.write_behind,  # as WriteBehindCache: versions are how it queues
            outage_repair=s.outage_repair,
            tombstone_ttl=s.tombstone_ttl_s,
            leases=s.leases,
            lease_ttl=s.lease_ttl_s,
            lease_wait=s.lease_wait_s,
            lease_retries=s.lease_retries,
            early_recompute_beta=s.early_recompute_beta,
        )
        self._gets = memoized_gets(self.config.prefix, self.n_keys)
        pool = simpy.Resource(env, capacity=s.db_connections)
        service_times = ServiceTimes(service, deterministic=s.service == "deterministic")
        self.servers = [
            AppServer(
                i, env, self.world, pool, self._state(f"server-{i}", self._breaker()),
                cache_rtt_s=s.cache_rtt_s,
                cache_timeout_s=s.cache_timeout_s,
                cache_connect_timeout_s=(
                    s.cache_timeout_s if s.cache_connect_timeout_s is None else s.cache_connect_timeout_s
                ),
                db_read_s=s.db_read_s,
                db_write_s=s.db_write_s,
                db_write_row_s=s.db_write_row_s,
                service=service_times,
                faults=self.faults,
                on_db_wait=self.recorder.db_wait,
                abandoned_leave_queue=s.abandoned_queries == "leave-queue",
            )
            for i in range(s.app_servers + (s.flushers if self.write_behind else 0))
        ]
        self.retry_tokens = [RETRY_TOKENS_BANKED] * s.app_servers if s.retry_budget is not None else None
        self.flushers: list[FlushState] = []
        if self.write_behind:  # the flushers' drivers are the app servers numbered after the last one
            self.flushers = [FlushState(self._flush_config(i), clock=lambda: env.now) for i in range(s.flushers)]
            self.world.cache.on_queued = self._queued
            self.world.cache.on_stream_length = lambda length: self.recorder.queue(env.now, length)
            self._u = 0  # the number of the last write-behind write: the ledger's name for it
        if s.prefill:
            self._prefill()

    def _flush_config(self, index: int) -> FlushConfig:
        s = self.scenario
        return FlushConfig(
            stream=STREAM, consumer=f"flusher-{index}", batch=s.flush_batch, max_delay_s=s.flush_max_delay_s,
            default_ttl=s.ttl_s, claim_idle_s=None, transient=(DatabaseUnavailable,),
        )

    def _breaker(self) -> CircuitBreaker | None:
        s, env = self.scenario, self.env
        if not s.breaker:
            return None
        return CircuitBreaker(s.breaker_threshold, s.breaker_cooldown_s, clock=lambda: env.now)

    def _state(self, owner: str, breaker: CircuitBreaker | None) -> CacheState:
        """One app server's policy state, on the simulated clock and the run's own random stream."""
        env = self.env
        return CacheState(
            config=self.config, breaker=breaker, clock=lambda: env.now, random=self._draws,
            get_of=self._gets, codec=DecodedCodec, lease_owner=owner,
        )

    def _prefill(self) -> None:
        """Warm the cache as the policy itself would: its read of every key, at t = 0, in zero time.

        The most popular key is read last, so it is the most recently used; with a
        small capacity, the most popular keys are the ones that stay.
        """
        s, world = self.scenario, self.world
        count = self.n_keys if s.cache_capacity is None else min(self.n_keys, s.cache_capacity)
        state = self._state("prefill", breaker=None)  # its counters are not the run's

        def perform(op):
            if type(op) is DbRead:
                return op.reader(world.db)
            if type(op) is Wait:
                return None
            return world.cache.apply(op, 0.0)

        for key in range(count, 0, -1):
            drive(self.policy.read(state, NAMESPACE, key, lambda table, k=key: table.row(k), _serialize), perform)

    # -- processes -------------------------------------------------------------------------------

    def run(self, progress: Callable[[float], None] | None = None) -> Result:
        """Run to the end (arrivals stop at ``duration_s``, requests in flight finish); what it measured."""
        self.simulate(progress)
        return self.result()

    def simulate(self, progress: Callable[[float], None] | None = None) -> None:
        """The event loop: every request arrives, is served and recorded (:meth:`run`'s first half)."""
        env = self.env
        if progress is not None:
            env.process(self._ticks(progress))
        self._arrivals()
        if self.scenario.requests:
            env.process(self._scripted())
        for at in self.faults.flushes if self.faults else ():
            env.process(self._flush(at))
        for index in range(len(self.flushers)):
            env.process(self._flusher(index))
        at_warmup = self._at_warmup
        env.timeout(self.scenario.warmup_s).callbacks.append(lambda _: at_warmup.update(self.policy_stats()))
        env.run()

    def result(self) -> Result:
        """Fold what :meth:`simulate` recorded into a :class:`~wtsim.sim.metrics.Result` (the second half)."""
        total = self.policy_stats()
        measured = {name: value - self._at_warmup.get(name, 0) for name, value in total.items()}
        at_rest = len(self.world.keys_stale_at_rest(self.env.now))  # requests done, flushers drained
        return self.recorder.result(self.scenario, total, self.scripted, measured, self.ledger,
                                    self.flush_stats(), keys_stale_at_rest=at_rest)

    def _ticks(self, progress: Callable[[float], None]):
        """Report the simulated time once a simulated second; it changes nothing in the run."""
        while self.env.now < self.scenario.duration_s:
            yield self.env.timeout(min(1.0, self.scenario.duration_s - self.env.now))
            progress(self.env.now)

    def _arrivals(self) -> None:
        """Start the workload's requests at their times: a chain of timeouts, each one's callback
        starting its request and then scheduling the next arrival (cheaper than a SimPy process)."""
        env, request = self.env, self._request
        arrivals = chain.from_iterable(zip(*chunk) for chunk in self.workload.chunks())

        def arrive(event: simpy.Event | None) -> None:
            if event is not None:
                _at, write, key, server = event._value
                request(write, key, server)
            arrival = next(arrivals, None)
            if arrival is None:
                self.arriving -= 1
                return
            delay = arrival[0] - env.now
            env.timeout(delay if delay > 0 else 0.0, arrival).callbacks.append(arrive)

        arrive(None)

    def _scripted(self):
        env = self.env
        for request in sorted(self.scenario.requests, key=lambda r: r.at_s):
            yield env.timeout(max(0.0, request.at_s - env.now))
            trace = {**request.to_dict(), "ops": []}
            self.scripted.append(trace)
            self._request(request.kind == WRITE, request.key, request.server, trace)
        self.arriving -= 1

    def _flush(self, at: float):
        # In the driver's frame (cache ops are applied as sent, at their landing clock),
        # an event at the cache at ``at`` happens half a round trip earlier.
        yield self.env.timeout(max(0.0, at - self.scenario.cache_rtt_s / 2))
        log.info("t=%.3fs: the cache restarts empty", at)
        self.world.cache.flush()
        if self.ledger is not None:
            self.ledger.cache_lost()

    def _flusher(self, index: int):
        """One write-behind flusher: batches of :func:`~wtsim.policies.flush.flush_once`, until drained.

        Between batches it honours ``flusher-down``; after a failed batch (the
        database or the cache down) it pauses, then re-reads what it was given.
        It stops once the arrivals are over, no request is in flight and the
        queue is empty, or at the drain deadline (``2 * duration_s``).
        """
        env, s = self.env, self.scenario
        server = self.servers[s.app_servers + index]
        state = self.flushers[index]
        appliers = {NAMESPACE: self._apply}
        deadline = 2 * s.duration_s
        recorder = self.recorder

        def flush_write(op, request):
            recorder.flush_write(env.now)
            write(op, request)

        write = server.performers[DbWrite]
        performers = {**server.performers, DbWrite: flush_write}

        while env.now < deadline and not self._drained():
            down_until = self.faults.flusher_down(index, env.now) if self.faults else None
            if down_until is not None:
                yield env.timeout(min(down_until, deadline) - env.now)
                continue
            finished = env.event()
            Callback(flush_once(state, appliers), performers, lambda value, failure: finished.succeed(failure)).start()
            failure = yield finished
            if failure is not None:
                yield env.timeout(FLUSH_ERROR_PAUSE_S)

    def _drained(self) -> bool:
        return self.arriving == 0 and self.in_flight == 0 and not len(self.world.cache.stream(STREAM))

    def _apply(self, db, entity_id: int, data: dict, version: int) -> None:
        """The simulated flusher's applier: upsert the newer version, and tell the ledger it is durable."""
        db.upsert_newer(entity_id, data, version)
        self.ledger.committed(entity_id, data["u"], version, self.env.now)  # type: ignore[union-attr]

    def _queued(self, op: CacheQueueWrite, version: int, now: float) -> None:
        self.ledger.accepted(int(op.id_json), json.loads(op.data_json)["u"], version, now)  # type: ignore[union-attr]

    def _request(self, write: bool, key: int, server_index: int, trace: dict | None = None,
                 attempt: int = 0) -> None:
        """Start one request on app server ``server_index``; :meth:`Measured.finished` records it when it is done.

        ``trace``: its story, for a scripted request. ``attempt``: 0 for a first
        attempt, else which retry this is. The timeout and retry model:

        * With ``request_timeout_s``, a request not done by then is given up by its
          client: recorded once, as failed (and as a timeout), at that moment; its
          policy is closed where it waits (:meth:`Request.abandon`), so it never
          populates; its database query still runs, or leaves the connection
          queue (``abandoned_queries``).
        * A request that failed or timed out is retried, up to ``retries`` times,
          after ``retry_backoff_s * 2**attempt``, as a *new* request: counted in
          the reads or writes of the second it starts in, with its own latency.
          No retry is sent once ``duration_s`` is over (the clients have stopped).
          With a ``retry_budget``, each first attempt adds that fraction of a
          token to its app server's bucket and each retry takes a whole one.
        """
        server, ledger, s = self.servers[server_index], self.ledger, self.scenario
        start = self.env.now
        if attempt:
            self.recorder.retry(start)
        elif self.retry_tokens is not None:
            self.retry_tokens[server_index] = min(RETRY_TOKENS_BANKED,
                                                  self.retry_tokens[server_index] + s.retry_budget)
        performers = server.performers if trace is None else self._tracing(server, trace["ops"])
        if not write:
            policy = self.policy.read(server.state, NAMESPACE, key, lambda table: table.row(key), _serialize)
            request: Measured = Read(policy, performers, self, key, server_index, start, attempt, trace)
            request.newest = self.world.db.versions[key] if ledger is None else ledger.newest(key)
        elif ledger is not None:  # write-behind queues a row, numbered for the ledger
            self._u = self._u + 1
            policy = write_behind.write(server.state, NAMESPACE, key, {"id": key, "u": self._u}, STREAM,
                                        s.max_pending, lambda table: table.versions[key])
            request = Write(policy, performers, self, key, server_index, start, attempt, trace)
            request.u = self._u
        else:
            policy = self.policy.write(server.state, NAMESPACE, key, lambda table: table.commit(key), _serialize)
            request = Write(policy, performers, self, key, server_index, start, attempt, trace)
            request.u = None
        self.in_flight += 1
        request.start()
        if s.request_timeout_s is not None and not request.done:
            def give_up(_event) -> None:
                if request.done:
                    return
                request.abandon()
                request.finished(None, TimeoutError("the client gave up"))
                self.recorder.timeout(start)

            self.env.timeout(s.request_timeout_s).callbacks.append(give_up)

    def _retry(self, write: bool, key: int, server_index: int, attempt: int) -> None:
        """Retry a failed request, if the client has retries (and budget) left."""
        s = self.scenario
        if attempt >= s.retries or self.env.now >= s.duration_s:
            return  # out of retries, or the clients have stopped sending: the run is over
        if self.retry_tokens is not None:
            if self.retry_tokens[server_index] < 1:
                return
            self.retry_tokens[server_index] -= 1
        backoff = s.retry_backoff_s * 2 ** attempt
        if backoff > 0:
            self.in_flight += 1  # a retry waiting for its backoff keeps the flushers draining

            def retry(_event) -> None:
                self.in_flight -= 1
                self._request(write, key, server_index, attempt=attempt + 1)

            self.env.timeout(backoff).callbacks.append(retry)
        else:
            self._request(write, key, server_index, attempt=attempt + 1)

    def _tracing(self, server: AppServer, ops: list) -> dict:
        """``server``'s performers, each noting the op it starts in ``ops`` first (a scripted request's story)."""
        env = self.env

        def traced(perform):
            def perform_traced(op, request):
                ops.append({"t": env.now, "op": type(op).__name__})
                perform(op, request)
            return perform_traced

        return {kind: traced(perform) for kind, perform in server.performers.items()}

    def flush_stats(self) -> dict[str, int]:
        """The flushers' counters, summed (empty unless the policy is write-behind)."""
        if not self.flushers:
            return {}
        total = FlushStats()
        for state in self.flushers:
            for name, value in state.stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total.as_dict()

    def policy_stats(self) -> dict[str, int]:
        """The app servers' policy counters, summed."""
        total = CacheStats()
        for server in self.servers[:self.scenario.app_servers]:
            for name, value in server.state.stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total.as_dict()
