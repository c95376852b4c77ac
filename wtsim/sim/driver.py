"""The simulated driver: performs the ops a policy yields, in SimPy time.

This is the simulator's counterpart of :meth:`wtsim.WriteThroughCache.perform`.
An :class:`AppServer` holds one app server's :class:`~wtsim.policies.CacheState`
(its own breaker, on the simulation clock, and its own memory of keys to
repair) and performs its ops on the shared :class:`~wtsim.sim.world.World`.
:class:`Request` is the loop of :func:`wtsim.policies.drive` turned inside out
for SimPy: it sends each result into the policy and throws each failure in at
the ``yield``, exactly as the real driver does, but from event callbacks, so a
request costs no SimPy process of its own.

The timing model (the races live in it):

* A cache op takes effect at the cache half a round trip after it is sent, and
  its answer arrives half a round trip later. Cache ops do not queue.
* A database op first waits for a connection from the pool (a
  ``simpy.Resource``; that wait is what ``db_wait_mean_s`` measures). A read
  then runs its reader at once, on the committed state as its service starts
  (that is its snapshot), and answers when its service ends. A write runs its
  writer, which commits, when its service ends.
* A cache that does not answer costs ``cache_timeout_s`` (hung) or the connect
  timeout (unreachable), and one that refuses the connection (down) a round
  trip; each raises ``CacheUnavailable``; a cache that answers
  with an error raises ``CacheRejected`` after a round trip; a database that is
  down raises :class:`~wtsim.sim.world.DatabaseUnavailable`. See
  :mod:`wtsim.sim.faults` for when each happens.
* A write-behind flusher's stream ops are cache ops like any other; a read
  that blocks (``XREADGROUP BLOCK``) is answered half a round trip after the
  next entry lands, or when its block time is up. A batched
  :class:`~wtsim.ops.DbWrite` of ``rows`` rows is served in
  ``db_write_s + (rows - 1) * db_write_row_s`` on average: one commit.

How the driver keeps that cheap: every healthy cache op travels the same half
round trip, so cache ops *land in the order they are sent*. The driver
therefore applies an op to the cache at the instant it is sent, passing the
instant it lands (``now + rtt/2``) as the cache's clock, and then waits one
full round trip for the answer: the cache sees the same ops, in the same order,
at the same clock readings, as if each were applied on landing, for one SimPy
event per op instead of two. Everything else that happens at the cache is put
in the same frame: an op slowed by ``cache-slow`` is applied by an event
``(slow_rtt - rtt) / 2`` after it is sent, and a flush at ``t`` happens at
``t - rtt/2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import simpy

from ..ops import (
    CacheDelete,
    CacheError,
    CacheGet,
    CacheLease,
    CachePopulate,
    CachePurge,
    CacheQueueWrite,
    CacheRejected,
    CacheSet,
    CacheSetIfNewer,
    CacheSetLeased,
    CacheTombstone,
    CacheUnavailable,
    CacheUnpin,
    DbRead,
    DbWrite,
    Op,
    StreamAck,
    StreamAdd,
    StreamClaim,
    StreamCreateGroup,
    StreamRead,
    Wait,
)
from ..policies import Policy
from ..policies.write_behind import WriteQueueFull
from .faults import HUNG, OK, REFUSED, REJECTED, UNREACHABLE, FaultModel
from .world import DatabaseUnavailable, World

FAILURES = (DatabaseUnavailable, CacheError, WriteQueueFull)
"""What a policy may raise in the simulated world and the request then fails with: the database was down,
a write-behind write found the cache down or its queue full. Anything else is a bug."""


@dataclass(slots=True)
class Tally:
    """What one request cost: database ops sent, cache ops that failed (a :class:`Request` counts the same)."""

    db_reads: int = 0
    db_writes: int = 0
    cache_errors: int = 0


class Request:
    """One request in flight: its policy generator, resumed from SimPy event callbacks.

    The loop of :func:`wtsim.policies.drive`, turned inside out: instead of a
    SimPy process per request that waits on each op, the request looks up the
    performer of each op its policy asks for (an :class:`AppServer`'s
    ``performers``) and hands itself over; the performer calls :meth:`resume`
    when the op's time has passed, with its result or its failure (or lets
    :meth:`answered` take the result from a timeout's value). A cache op is then
    one SimPy timeout and one callback. The request carries the counts a
    :class:`Tally` holds (the database performers count the queries it sends,
    the request the cache failures thrown in), and calls :meth:`finished`
    once, when the policy returns (or one of :data:`FAILURES` escapes it): a
    subclass records it.
    Only the failures the simulated world produces are thrown in; anything else
    is a bug in the simulator and ends the run loudly.
    """

    __slots__ = ("_policy", "_performers", "abandoned", "db_reads", "db_writes", "cache_errors")

    def __init__(self, policy: Policy, performers: dict[type, Callable[[Any, "Request"], None]]) -> None:
        self._policy = policy
        self._performers = performers
        self.abandoned = False
        self.db_reads = self.db_writes = self.cache_errors = 0

    def start(self) -> None:
        """Run the policy to its first op (or to its end, if it needs none)."""
        self.resume(None, None)

    def finished(self, value: Any, failure: BaseException | None) -> None:
        """The policy returned ``value``, or failed with ``failure``: called once. Here: nothing to record."""

    def abandon(self) -> None:
        """Its client gave up: the policy is closed where it waits, and the op in flight is answered to no one.

        A cache op in flight still lands; a database query still runs, or, if
        it waits for a connection and the server was built with
        ``abandoned_leave_queue``, leaves the queue. :meth:`finished` is not called.
        """
        self.abandoned = True
        self._policy.close()

    def resume(self, outcome: Any, failure: BaseException | None) -> None:
        """Hand the policy its last op's outcome (or failure) and start the op it asks for next."""
        if self.abandoned:
            return
        try:
            if failure is None:
                op = self._policy.send(outcome)
            else:
                if isinstance(failure, CacheError):
                    self.cache_errors += 1
                op = self._policy.throw(failure)
        except StopIteration as stop:
            return self.finished(stop.value, None)
        except FAILURES as exc:
            return self.finished(None, exc)
        self._performers[type(op)](op, self)

    def answered(self, event: simpy.Event) -> None:
        """The callback of an op's last event, whose value is the op's result."""
        self.resume(event._value, None)


class Callback(Request):
    """A request whose end calls ``done(value, failure)``: what the flushers and the tests use."""

    __slots__ = ("_done",)

    def __init__(self, policy: Policy, performers: dict, done: Callable[[Any, BaseException | None], None]) -> None:
        super().__init__(policy, performers)
        self._done = done

    def finished(self, value: Any, failure: BaseException | None) -> None:
        self._done(value, failure)


class _Refusal:
    """An error the cache answered (as Redis answers ``NOGROUP``), carried to the op's arrival."""

    __slots__ = ("error",)

    def __init__(self, error: CacheRejected) -> None:
        self.error = error


def _outcome(answer: Any) -> tuple[Any, BaseException | None]:
    """``(result, failure)`` for :meth:`Request.resume` from what the cache answered."""
    return (None, answer.error) if type(answer) is _Refusal else (answer, None)


class ServiceTimes:
    """Database service times: exponential around the mean, or exactly the mean."""

    BATCH = 4096

    def __init__(self, rng: np.random.Generator, deterministic: bool = False) -> None:
        self._rng = rng
        self._deterministic = deterministic
        self._batch: list[float] = []

    def draw(self, mean_s: float) -> float:
        """One service time of mean ``mean_s``."""
        if self._deterministic:
            return mean_s
        if not self._batch:  # unit exponentials, drawn in bulk: one numpy call per BATCH queries
            self._batch = self._rng.standard_exponential(self.BATCH).tolist()
        return self._batch.pop() * mean_s


class AppServer:
    """One app server: its own policy state, and the driver that performs its ops in SimPy time."""

    def __init__(
        self,
        index: int,
        env: simpy.Environment,
        world: World,
        pool: simpy.Resource,
        state: Any,
        *,
        cache_rtt_s: float,
        cache_timeout_s: float,
        cache_connect_timeout_s: float,
        db_read_s: float,
        db_write_s: float,
        db_write_row_s: float = 0.0,
        service: ServiceTimes,
        faults: FaultModel | None = None,
        on_db_wait: Callable[[float, float], None] | None = None,
        abandoned_leave_queue: bool = False,
    ) -> None:
        self.index = index
        self.env = env
        self.world = world
        self.pool = pool
        self.state = state
        self.rtt_s = cache_rtt_s
        self.half_rtt_s = cache_rtt_s / 2
        self.timeout_s = cache_timeout_s
        self.connect_timeout_s = cache_connect_timeout_s
        self.db_read_s = db_read_s
        self.db_write_s = db_write_s
        self.db_write_row_s = db_write_row_s
        self.service = service
        self.faults = faults
        self.on_db_wait = on_db_wait or (lambda issued, wait: None)
        self.abandoned_leave_queue = abandoned_leave_queue
        cache_op = self._cache_op if faults is None else self._cache_op_with_faults
        self.performers: dict[type, Callable[[Any, Request], None]] = {
            CacheGet: self._get if faults is None else cache_op,
            CacheSet: cache_op,
            CacheSetIfNewer: cache_op,
            CacheDelete: cache_op,
            CacheTombstone: cache_op,
            CachePurge: cache_op,
            CacheLease: cache_op,
            CacheSetLeased: cache_op,
            CacheQueueWrite: cache_op,
            CachePopulate: cache_op,
            CacheUnpin: cache_op,
            StreamCreateGroup: cache_op,
            StreamRead: self._stream_read,
            StreamClaim: cache_op,
            StreamAck: cache_op,
            StreamAdd: cache_op,
            DbRead: self._db_read,
            DbWrite: self._db_write,
            Wait: self._wait,
        }

    def perform(self, op: Op, request: Request) -> None:
        """Start ``op``; when its time has passed, resume ``request`` with its result or its failure.

        (A :class:`Request` looks its performer up in ``performers`` itself: one call fewer an op.)
        """
        self.performers[type(op)](op, request)

    # -- the cache ---------------------------------------------------------------------------

    def _get(self, op: CacheGet, request: Request) -> None:
        # The common case, kept lean: a GET on a healthy cache, applied as sent at its landing clock,
        # and one timeout of a round trip that carries the answer back.
        env = self.env
        result = self.world.cache.get(op.key, env.now + self.half_rtt_s)
        env.timeout(self.rtt_s, result).callbacks.append(request.answered)

    def _cache_op(self, op: Op, request: Request) -> None:
        env = self.env
        try:
            result = self.world.cache.apply(op, env.now + self.half_rtt_s)
        except CacheRejected as exc:  # the cache answered with an error (NOGROUP)
            return self._fail_after(self.rtt_s, exc, request)
        env.timeout(self.rtt_s, result).callbacks.append(request.answered)

    def _cache_op_with_faults(self, op: Op, request: Request) -> None:
        outcome, factor = self.faults.cache(self.index, op, self.env.now)  # type: ignore[union-attr]
        self._struck(op, request, outcome, factor)

    def _struck(self, op: Op, request: Request, outcome: str, factor: float) -> None:
        """Perform a cache op the fault model has judged: ``outcome`` and the round trip's ``factor``."""
        env, half = self.env, self.half_rtt_s
        if outcome is UNREACHABLE:
            return self._fail_after(self.connect_timeout_s, CacheUnavailable("cache unreachable: connect timed out"), request)
        if outcome is REFUSED:
            return self._fail_after(self.rtt_s, CacheUnavailable("connection refused"), request)
        if outcome is HUNG:
            return self._fail_after(self.timeout_s, CacheUnavailable("cache did not answer: socket timed out"), request)
        rtt = self.rtt_s * factor
        answer: list[Any] = []
        if outcome is REJECTED:
            pass  # refused on arrival: no effect
        elif factor == 1.0:
            answer.append(self._apply(op, env.now + half))
        else:  # lands later than the ops sent after it: applied by an event, in the same frame
            landing = env.timeout(rtt / 2 - half)
            landing.callbacks.append(lambda _event: answer.append(self._apply(op, env.now + half)))
        if rtt > self.timeout_s:  # the client gives up first, but the op still lands
            return self._fail_after(self.timeout_s, CacheUnavailable("cache answered too late: socket timed out"), request)
        if outcome is REJECTED:
            return self._fail_after(rtt, CacheRejected("OOM command not allowed when used memory > 'maxmemory'"), request)
        env.timeout(rtt).callbacks.append(lambda _event: request.resume(*_outcome(answer[0])))

    def _apply(self, op: Op, now: float) -> Any:
        """Apply ``op`` to the cache; an error the cache answers is returned, to be thrown in on arrival."""
        try:
            return self.world.cache.apply(op, now)
        except CacheRejected as exc:
            return _Refusal(exc)

    def _stream_read(self, op: StreamRead, request: Request) -> None:
        # XREADGROUP: at once when there are entries (or it does not block); else answered when one lands.
        env, cache = self.env, self.world.cache
        if self.faults is not None:
            outcome, factor = self.faults.cache(self.index, op, env.now)
            if outcome is not OK or factor != 1.0 or op.block_s is None or op.pending:
                return self._struck(op, request, outcome, factor)
        elif op.block_s is None or op.pending:
            return self._cache_op(op, request)
        entries = self._apply(op, env.now + self.half_rtt_s)
        if type(entries) is _Refusal:
            return self._fail_after(self.rtt_s, entries.error, request)
        if entries:
            env.timeout(self.rtt_s, entries).callbacks.append(request.answered)
            return
        stream = cache.stream(op.stream)
        blocked = [True]  # until an entry lands or the block time is up, whichever comes first

        def wake() -> None:  # called as an entry is added, at its send time: it lands half a round trip later
            if blocked[0]:
                blocked[0] = False
                got = self._apply(op, env.now + self.half_rtt_s)
                env.timeout(self.rtt_s).callbacks.append(lambda _event: request.resume(*_outcome(got)))

        def give_up(_event: simpy.Event) -> None:
            if blocked[0]:
                blocked[0] = False
                if wake in stream.waiters:
                    stream.waiters.remove(wake)
                request.resume([], None)

        stream.waiters.append(wake)
        env.timeout(self.rtt_s + op.block_s).callbacks.append(give_up)

    def _fail_after(self, seconds: float, failure: BaseException, request: Request) -> None:
        self.env.timeout(seconds).callbacks.append(lambda _event: request.resume(None, failure))

    def _wait(self, op: Wait, request: Request) -> None:
        self.env.timeout(op.seconds).callbacks.append(request.answered)

    # -- the database ------------------------------------------------------------------------

    def _db_read(self, op: DbRead, request: Request) -> None:
        request.db_reads += 1
        env, pool = self.env, self.pool
        issued = env.now
        connection = pool.request()

        def served(_event: simpy.Event, row: Any) -> None:
            pool.release(connection)
            request.resume(row, None)

        def granted(_event: simpy.Event) -> None:
            if request.abandoned and self.abandoned_leave_queue:
                return pool.release(connection)  # its client left while it queued: it never runs
            self.on_db_wait(issued, env.now - issued)
            if self._db_down():
                pool.release(connection)
                return request.resume(None, DatabaseUnavailable("database unreachable"))
            row = op.reader(self.world.db)  # the snapshot: the committed state as the service starts
            env.timeout(self.service.draw(self.db_read_s)).callbacks.append(lambda event: served(event, row))

        connection.callbacks.append(granted)

    def _db_write(self, op: DbWrite, request: Request) -> None:
        request.db_writes += 1
        env, pool = self.env, self.pool
        issued = env.now
        connection = pool.request()

        def served(_event: simpy.Event) -> None:
            result = op.writer(self.world.db)  # commits now, as the service ends
            pool.release(connection)
            request.resume(result, None)

        def granted(_event: simpy.Event) -> None:
            if request.abandoned and self.abandoned_leave_queue:
                return pool.release(connection)  # its client left while it queued: it never runs
            self.on_db_wait(issued, env.now - issued)
            if self._db_down():
                pool.release(connection)
                return request.resume(None, DatabaseUnavailable("database unreachable"))
            mean = self.db_write_s if op.rows == 1 else self.db_write_s + (op.rows - 1) * self.db_write_row_s
            env.timeout(self.service.draw(mean)).callbacks.append(served)

        connection.callbacks.append(granted)

    def _db_down(self) -> bool:
        return self.faults is not None and self.faults.db_down(self.index, self.env.now)

    def __repr__(self) -> str:
        return f"<AppServer {self.index} breaker={self.state.breaker!r}>"
