"""The write-behind flusher: the policy of :mod:`wtsim.policies.flush` driven on redis-py and SQLAlchemy.

A driver, as :class:`wtsim.PolicyCache` is: the decisions (what to read, how to
coalesce, when to retry, what goes to the dead-letter stream) are the policy's;
here each op is performed on Redis or in a new ``Session`` of ``engine``. A
``DbWrite`` is one transaction: the writer, then the commit, or a rollback.

Usage::

    flusher = WriteBehindFlusher(redis_client, engine, {"products": upsert_newer(Product)})
    flusher.flush_once()          # one batch; returns a FlushResult
    flusher.run(stop_event)       # until stop_event is set

``run`` logs one INFO line per batch (``wtsim.flusher``) and a summary every
``summary_every_s``. Setting ``stop_event`` lets the current batch finish, but
cuts short a retry's backoff (the database is down): that batch is abandoned,
its entries stay pending for this consumer name or a claiming one.

Not on Redis Cluster (a ``TypeError``), as :class:`wtsim.WriteBehindCache`:
the stream it drains is written together with the entry keys, by one script,
which a cluster cannot run across hash slots.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Mapping

import redis
import sqlalchemy.exc
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from . import scripts
from .cache import CLUSTER_REFUSED, REDIS_FAILURES, PolicyCache, _ms, cache_error, default_stream, is_cluster
from .ops import (
    CacheUnavailable,
    CacheUnpin,
    DbWrite,
    Op,
    StreamAck,
    StreamAdd,
    StreamClaim,
    StreamCreateGroup,
    StreamRead,
    Wait,
)
from .policies import drive
from .policies.flush import Applier, FlushConfig, FlushResult, FlushState, FlushStats, flush_once

log = logging.getLogger("wtsim.flusher")


class _Stopped(BaseException):
    """Raised through the policy when a stop cuts a backoff wait short.

    A ``BaseException``, which :func:`~wtsim.policies.drive` does not hand to
    the policy (it passes on ``Exception`` only): so no entry is taken for
    faulty and dead-lettered, and the batch stays unacknowledged, as after a crash.
    """

TRANSIENT_DB_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,  # connection refused or lost, server shutting down, locked (SQLite)
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,  # no connection free in the pool
)
"""Database errors that mean "the database is down, retry later", never "this entry is bad"."""


class WriteBehindFlusher:
    """Drain the write-behind stream into the database; see :mod:`wtsim.policies.flush`.

    ``appliers`` maps a namespace to ``applier(session, entity_id, data, version)``
    (:func:`wtsim.upsert_newer` makes one for a mapped model). ``stream``
    defaults to ``<prefix>:queue``, as :class:`wtsim.WriteBehindCache`'s.
    ``consumer`` names this flusher in the group (default: host and process);
    entries another consumer left unacknowledged for ``claim_idle_s`` are taken
    over. An entry whose applier raises ``max_attempts`` times goes to
    ``<stream>:dead``. ``default_ttl`` is what a flushed entry gets.
    """

    def __init__(
        self,
        redis_client: redis.Redis,
        engine: Engine,
        appliers: Mapping[str, Applier],
        *,
        prefix: str = "wtc",
        stream: str | None = None,
        group: str = "wtsim-flushers",
        consumer: str | None = None,
        batch: int = 100,
        max_delay_s: float = 0.1,
        claim_idle_s: float | None = 30.0,
        default_ttl: float | None = 3600,
        max_attempts: int = 5,
        backoff_s: float = 0.05,
        backoff_max_s: float = 5.0,
        transient: tuple[type[BaseException], ...] = TRANSIENT_DB_ERRORS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if is_cluster(redis_client):
            raise TypeError(CLUSTER_REFUSED.format(what="WriteBehindFlusher"))
        if not isinstance(appliers, Mapping) or not all(callable(a) for a in appliers.values()):
            raise TypeError("appliers must map each namespace to a callable(session, entity_id, data, version)")
        config = FlushConfig(
            stream=stream if stream is not None else default_stream(prefix),
            group=group,
            consumer=consumer if consumer is not None else f"{socket.gethostname()}-{os.getpid()}",
            prefix=prefix,
            batch=batch,
            max_delay_s=max_delay_s,
            claim_idle_s=claim_idle_s,
            default_ttl=default_ttl,
            max_attempts=max_attempts,
            backoff_s=backoff_s,
            backoff_max_s=backoff_max_s,
            transient=transient,
        )
        self.redis = redis_client
        self.engine = engine
        self.appliers = dict(appliers)
        self.state = FlushState(config=config, clock=clock)
        self._stop: threading.Event | None = None  # set by run(): a stop cuts a backoff wait short
        self._unpin = redis_client.register_script(scripts.UNPIN)
        self._perform_redis = {
            StreamCreateGroup: self._create_group,
            StreamRead: self._read,
            StreamClaim: self._claim,
            StreamAck: self._ack,
            StreamAdd: self._add,
            CacheUnpin: self._unpin_entries,
        }

    @property
    def config(self) -> FlushConfig:
        """The settings this flusher was built with."""
        return self.state.config

    @property
    def stats(self) -> FlushStats:
        """Counters: batches, read, claimed, applied, coalesced, acked, dead, unpinned, retries, db_errors."""
        return self.state.stats

    def flush_once(self) -> FlushResult:
        """Flush one batch (waiting up to ``max_delay_s`` for the first entry); return what was done."""
        return drive(flush_once(self.state, self.appliers), self.perform)

    def run(self, stop_event: threading.Event, *, error_pause_s: float = 1.0,
            summary_every_s: float | None = 60.0) -> None:
        """Flush batches until ``stop_event`` is set; an error is logged, then retried after ``error_pause_s``.

        A server that does not answer (Redis, or a ``transient`` database
        error) is logged in one line; any other error with its traceback.

        A backoff wait between retries ends early when ``stop_event`` is set:
        the batch is abandoned unacknowledged (safe: its entries stay pending).
        """
        self._stop = stop_event
        last = time.monotonic()
        since = self.stats.as_dict()
        try:
            while not stop_event.is_set():
                try:
                    started = time.perf_counter()
                    result = self.flush_once()
                    if result.read:
                        log.info("batch: read %d (claimed %d), applied %d, coalesced %d, dead %d, "
                                 "unpinned %d, retries %d, %.1f ms", result.read, result.claimed, result.applied,
                                 result.coalesced, result.dead, result.unpinned, result.retries,
                                 (time.perf_counter() - started) * 1000)
                except _Stopped:
                    log.warning("stopped during a retry wait; the batch is abandoned, its entries stay pending")
                    break
                except (CacheUnavailable, *self.config.transient) as exc:  # a server down: one line, no traceback
                    log.error("write-behind flush failed (%s: %s); retrying in %.1fs",
                              type(exc).__name__, " ".join(str(exc).split()), error_pause_s)
                    stop_event.wait(error_pause_s)
                except Exception:
                    log.exception("write-behind flush failed; retrying in %.1fs", error_pause_s)
                    stop_event.wait(error_pause_s)
                now = time.monotonic()
                if summary_every_s is not None and now - last >= summary_every_s:
                    self._log_summary(now - last, since)
                    last, since = now, self.stats.as_dict()
        finally:
            self._stop = None

    def _log_summary(self, elapsed: float, since: dict[str, int]) -> None:
        """One INFO line: rows applied in the last ``elapsed`` seconds, the queue length, and the totals."""
        stats = self.stats.as_dict()
        applied = stats["applied"] - since["applied"]
        try:
            queued: Any = self.redis.xlen(self.config.stream)
        except redis.exceptions.RedisError as exc:
            queued = f"unknown ({type(exc).__name__})"
        log.info("summary: %d rows applied in %.1fs (%.1f rows/s), %d batches, %d errors; queue length %s; totals %s",
                 applied, elapsed, applied / elapsed if elapsed > 0 else 0.0,
                 stats["batches"] - since["batches"], stats["db_errors"] - since["db_errors"], queued,
                 " ".join(f"{k}={v}" for k, v in stats.items()))

    # -- the driver -----------------------------------------------------------------------

    def perform(self, op: Op) -> Any:
        """Carry out one operation on Redis or in a new session."""
        call = self._perform_redis.get(type(op))
        if call is not None:
            try:
                return call(op)
            except REDIS_FAILURES as exc:
                raise cache_error(exc) from exc
        if type(op) is DbWrite:
            with Session(self.engine) as session:
                return PolicyCache._db_call(session, op.writer, commit=True)
        if type(op) is Wait:
            stop = self._stop
            if stop is None:
                time.sleep(op.seconds)
            elif stop.wait(op.seconds):
                raise _Stopped()
            return None
        raise TypeError(f"{type(self).__name__} cannot perform {op!r}")

    def _create_group(self, op: StreamCreateGroup) -> None:
        try:
            self.redis.xgroup_create(op.stream, op.group, id="0", mkstream=True)
        except redis.exceptions.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def _read(self, op: StreamRead) -> list[tuple[str, dict[str, str] | None]]:
        block = None if op.pending or op.block_s is None else _ms(op.block_s)
        answer = self.redis.xreadgroup(op.group, op.consumer, {op.stream: "0" if op.pending else ">"},
                                       count=op.count, block=block)
        if not answer:
            return []
        return [(_text(i), _decoded(f)) for i, f in _messages(answer)]

    def _claim(self, op: StreamClaim) -> list[tuple[str, dict[str, str] | None]]:
        answer = self.redis.xautoclaim(op.stream, op.group, op.consumer, _ms(op.min_idle_s),
                                       start_id="0-0", count=op.count)
        claimed = [(_text(i), _decoded(f)) for i, f in answer[1]]
        deleted = [(_text(i), None) for i in (answer[2] if len(answer) > 2 else ())]
        return claimed + deleted

    def _ack(self, op: StreamAck) -> int:
        if not op.ids:
            return 0
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(op.stream, op.group, *op.ids)
            pipe.xdel(op.stream, *op.ids)
            acked, _ = pipe.execute()
        return acked

    def _add(self, op: StreamAdd) -> str:
        return _text(self.redis.xadd(op.stream, dict(op.fields)))

    def _unpin_entries(self, op: CacheUnpin) -> int:
        if not op.entries:
            return 0
        ttl = "" if op.ttl_s is None else _ms(op.ttl_s)
        args: list[Any] = [ttl]
        for _, dirty, clean in op.entries:
            args += [dirty, clean]
        return int(self._unpin(keys=[key for key, _, _ in op.entries], args=args))

    def __repr__(self) -> str:
        c = self.config
        return f"<WriteBehindFlusher stream={c.stream!r} group={c.group!r} consumer={c.consumer!r}>"


def _messages(answer: Any) -> list:
    """The messages of an XREADGROUP answer on one stream (RESP2 list or RESP3 dict)."""
    if isinstance(answer, dict):
        return [m for value in answer.values() for m in (value[0] if value and isinstance(value[0], list) else value)]
    return [m for _, messages in answer for m in messages]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decoded(raw: dict | None) -> dict[str, str] | None:
    if raw is None:  # an entry deleted while pending
        return None
    return {_text(k): _text(v) for k, v in raw.items()}
