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
4. Arrivals stop at ``duration_s``; requests still in flight are allowed to
   finish, so every request that arrived is measured.

The namespace is ``"items"`` and the entity ids are the key numbers, so the
cache keys are the library's real keys (``wtc:{items:42}``).
"""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from typing import Callable

import numpy as np
import simpy

from ..breaker import CircuitBreaker
from ..keys import entry_key
from ..ops import DbRead, Wait
from ..policies import CacheState, CacheStats, PolicyConfig, drive
from .driver import AppServer, Request, ServiceTimes, Tally
from .faults import FaultModel
from .metrics import Recorder, Result
from ..policies import POLICIES
from .scenario import Scenario
from .workload import WRITE, Workload
from .world import DatabaseUnavailable, DecodedCodec, Row, World

log = logging.getLogger("wtsim.sim.run")

NAMESPACE = "items"


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


def _serialize(row: Row) -> dict:
    return row  # the simulated rows are already plain, JSON-safe dicts


_simulated_key = lru_cache(maxsize=1 << 16)(entry_key)
"""Keys repeat in a simulation (Zipf): remember their encoding, as the real cache does."""


class Simulation:
    """The SimPy environment of one run, with everything in it. Use :func:`run`."""

    def __init__(self, scenario: Scenario) -> None:
        s = self.scenario = scenario
        check_memory(s)
        self.env = env = simpy.Environment()
        arrivals, keys, servers, service, coins, draws = (
            np.random.default_rng(seq) for seq in np.random.SeedSequence(s.seed).spawn(6)
        )
        self._draws = draws.random
        self.world = World(s.n_keys, s.cache_capacity, clock=lambda: env.now)
        self.workload = Workload(
            duration_s=s.duration_s, read_rate=s.read_rate, write_rate=s.write_rate, n_keys=s.n_keys,
            zipf_alpha=s.zipf_alpha, app_servers=s.app_servers, bursts=s.bursts,
            arrivals_rng=arrivals, keys_rng=keys, servers_rng=servers,
        )
        self.faults = FaultModel(s.faults, coins) if s.faults else None
        self.recorder = Recorder(s.duration_s, s.warmup_s)
        self.scripted: list[dict] = []  # what each scripted request did, for Result.scripted
        self.policy = POLICIES[s.policy]
        config = self.config = PolicyConfig(
            default_ttl=s.ttl_s,
            versioned=s.versioned,
            outage_repair=s.outage_repair,
            tombstone_ttl=s.tombstone_ttl_s,
            leases=s.leases,
            lease_ttl=s.lease_ttl_s,
            lease_wait=s.lease_wait_s,
            lease_retries=s.lease_retries,
            early_recompute_beta=s.early_recompute_beta,
        )
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
                service=service_times,
                faults=self.faults,
                on_db_wait=self.recorder.db_wait,
            )
            for i in range(s.app_servers)
        ]
        if s.prefill:
            self._prefill()

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
            key_of=_simulated_key, codec=DecodedCodec, lease_owner=owner,
        )

    def _prefill(self) -> None:
        """Warm the cache as the policy itself would: its read of every key, at t = 0, in zero time.

        The most popular key is read last, so it is the most recently used; with a
        small capacity, the most popular keys are the ones that stay.
        """
        s, world = self.scenario, self.world
        count = s.n_keys if s.cache_capacity is None else min(s.n_keys, s.cache_capacity)
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
        """Run to the end (arrivals stop at ``duration_s``, requests in flight finish)."""
        env = self.env
        if progress is not None:
            env.process(self._ticks(progress))
        env.process(self._arrivals())
        if self.scenario.requests:
            env.process(self._scripted())
        for at in self.faults.flushes if self.faults else ():
            env.process(self._flush(at))
        at_warmup: dict[str, int] = {}
        env.timeout(self.scenario.warmup_s).callbacks.append(lambda _: at_warmup.update(self.policy_stats()))
        env.run()
        total = self.policy_stats()
        measured = {name: value - at_warmup.get(name, 0) for name, value in total.items()}
        return self.recorder.result(self.scenario, total, self.scripted, measured)

    def _ticks(self, progress: Callable[[float], None]):
        """Report the simulated time once a simulated second; it changes nothing in the run."""
        while self.env.now < self.scenario.duration_s:
            yield self.env.timeout(min(1.0, self.scenario.duration_s - self.env.now))
            progress(self.env.now)

    def _arrivals(self):
        env, request = self.env, self._request
        for times, is_write, keys, servers in self.workload.chunks():
            for at, write, key, server in zip(times, is_write, keys, servers):
                delay = at - env.now
                yield env.timeout(delay if delay > 0 else 0.0)
                request(write, key, server)

    def _scripted(self):
        env = self.env
        for request in sorted(self.scenario.requests, key=lambda r: r.at_s):
            yield env.timeout(max(0.0, request.at_s - env.now))
            trace = {**request.to_dict(), "ops": []}
            self.scripted.append(trace)
            self._request(request.kind == WRITE, request.key, request.server, trace)

    def _flush(self, at: float):
        # In the driver's frame (cache ops are applied as sent, at their landing clock),
        # an event at the cache at ``at`` happens half a round trip earlier.
        yield self.env.timeout(max(0.0, at - self.scenario.cache_rtt_s / 2))
        log.info("t=%.3fs: the cache restarts empty", at)
        self.world.cache.flush()

    def _request(self, write: bool, key: int, server_index: int, trace: dict | None = None) -> None:
        """Start one request on app server ``server_index``; record it when it is done. ``trace``: its story."""
        env, db, server = self.env, self.world.db, self.servers[server_index]
        start = env.now
        tally = Tally()
        perform = server.perform if trace is None else self._tracing(server, trace["ops"])
        if write:
            newest = None
            policy = self.policy.write(server.state, NAMESPACE, key, lambda table: table.commit(key), _serialize)
        else:
            newest = db.versions[key]  # what the oracle compares the answer with
            policy = self.policy.read(server.state, NAMESPACE, key, lambda table: table.row(key), _serialize)

        def done(value, failure) -> None:
            failed = failure is not None
            latency = env.now - start
            version = None if failed else value["version"]
            if write:
                self.recorder.write(start, latency, tally, failed)
                staleness = None
            else:
                stale = version is not None and version < newest  # the oracle: see SimDB.staleness
                staleness = db.staleness(key, version, newest, start) if stale else None
                self.recorder.read(start, latency, tally, failed, staleness)
            if trace is not None:
                trace.update(version=version, failed=failed, latency_s=latency, staleness_s=staleness)

        Request(policy, perform, tally, done)

    def _tracing(self, server: AppServer, ops: list):
        env = self.env

        def perform(op, request):
            ops.append({"t": env.now, "op": type(op).__name__})
            server.perform(op, request)

        return perform

    def policy_stats(self) -> dict[str, int]:
        """The app servers' policy counters, summed."""
        total = CacheStats()
        for server in self.servers:
            for name, value in server.state.stats.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
        return total.as_dict()
