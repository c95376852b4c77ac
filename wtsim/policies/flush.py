"""The write-behind flusher's decisions: drain the stream into the database, at least once.

Rules of this module (a policy: it yields :mod:`wtsim.ops` operations and
performs none; :class:`wtsim.WriteBehindFlusher` is its real driver):

One batch (:func:`flush_once`)
    1. Read entries for this consumer of the group: first any it was given and
       never acknowledged (after a failed batch, or a restart under the same
       name), then, at most every ``claim_idle_s``, entries another consumer
       left pending that long (``XAUTOCLAIM``: a dead flusher), else new ones,
       blocking up to ``max_delay_s`` for the first.
    2. Coalesce per key: the highest version wins; the others are acknowledged
       unapplied, since the row they wrote is replaced anyway.
    3. Apply the batch in ONE transaction, ``appliers[namespace](session, id,
       data, version)``, retried with exponential backoff (computed by
       ``tenacity``; the wait is a :class:`~wtsim.ops.Wait` op). An applier
       must be idempotent and refuse older versions (:func:`wtsim.upsert_newer`),
       since an entry may be delivered twice.
    4. When it still fails: a *transient* error (the database is down) leaves
       every entry pending, to retry, and is raised: nothing is dropped. Any
       other error is an entry's fault: each entry is then applied alone, and
       one that still raises goes to the dead-letter stream ``<stream>:dead``
       with the error, counted and logged, never silently lost.
    5. After the commit: acknowledge and delete the entries (``XACK`` +
       ``XDEL``, so ``XLEN`` counts what is pending), then un-pin each applied
       entry: a compare-and-set on its exact dirty bytes replaces it by the
       clean entry with ``default_ttl``; a newer dirty write stays pinned.

After a failed read (Redis restarted without its data answers ``NOGROUP``) the
next batch creates the group again, from the first entry.

Known gap (crash windows): a flusher that dies between commit and ack has its
batch redelivered (harmless: the appliers refuse what is not newer); one that
dies between ack and un-pin leaves those entries dirty and without TTL until
the key is written again.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

import tenacity

from .. import codec as _codec
from ..keys import entry_key
from ..ops import (
    CacheError,
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
from .guarded import Policy

log = logging.getLogger("wtsim.policies.flush")

Applier = Callable[[Any, Any, dict, int], Any]
"""``applier(session, entity_id, data, version)``: write one row, refusing an older version."""


@dataclass(frozen=True, slots=True)
class FlushConfig:
    """How the flusher reads, batches, retries and dead-letters; see the module docstring."""

    stream: str
    group: str = "wtsim-flushers"
    consumer: str = "flusher"
    prefix: str = "wtc"
    batch: int = 100
    max_delay_s: float = 0.1
    claim_idle_s: float | None = 30.0
    default_ttl: float | None = 3600
    max_attempts: int = 5
    backoff_s: float = 0.05
    backoff_max_s: float = 5.0
    transient: tuple[type[BaseException], ...] = ()

    def __post_init__(self) -> None:
        for name in ("stream", "group", "consumer", "prefix"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name in ("batch", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("max_delay_s", "backoff_s", "backoff_max_s", "claim_idle_s", "default_ttl"):
            value = getattr(self, name)
            if value is None and name in ("claim_idle_s", "default_ttl"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")

    @property
    def dead_stream(self) -> str:
        """Where entries no applier could write go: ``<stream>:dead``."""
        return f"{self.stream}:dead"


@dataclass(slots=True)
class FlushStats:
    """Counters over the flusher's life, all plain ints."""

    batches: int = 0
    read: int = 0
    claimed: int = 0
    applied: int = 0
    coalesced: int = 0
    acked: int = 0
    dead: int = 0
    unpinned: int = 0
    retries: int = 0
    db_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class FlushState:
    """What one flusher remembers between batches. No I/O; ``clock`` is injected (it paces claims)."""

    config: FlushConfig
    stats: FlushStats = field(default_factory=FlushStats)
    clock: Callable[[], float] = time.monotonic
    group_ready: bool = False
    own_pending: bool = True  # at start, and after a failed batch: re-read what we were given
    next_claim: float = float("-inf")


@dataclass(frozen=True, slots=True)
class Queued:
    """One stream entry, decoded."""

    entry_id: str
    namespace: str
    entity_id: Any
    version: int
    data_json: str


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one :func:`flush_once` did: entries ``read`` (``claimed`` of them from others), rows ``applied``, ..."""

    read: int = 0
    claimed: int = 0
    applied: int = 0
    coalesced: int = 0
    dead: int = 0
    unpinned: int = 0
    retries: int = 0


def flush_once(state: FlushState, appliers: Mapping[str, Applier]) -> Policy:
    """Read one batch, apply it in one transaction, acknowledge, un-pin; return a :class:`FlushResult`."""
    config, stats = state.config, state.stats
    if not state.group_ready:
        yield StreamCreateGroup(config.stream, config.group)
        state.group_ready = True
    try:
        entries, claimed = yield from _next_entries(state)
    except CacheError:
        # Redis restarted empty (its group gone: NOGROUP) or did not answer: make sure of the group
        # again next time; creating one that exists is harmless.
        state.group_ready = False
        raise
    if not entries:
        return FlushResult()
    stats.batches += 1
    stats.read += len(entries)
    stats.claimed += claimed

    dead: list[tuple[str, dict | None, str]] = []  # (entry id, fields, why)
    latest: dict[tuple[str, str], Queued] = {}
    for entry_id, raw in entries:
        if raw is None:
            continue  # deleted while pending (XAUTOCLAIM reports it): only the ack is left to do
        try:
            item = _decode(entry_id, raw)
        except ValueError as exc:
            dead.append((entry_id, raw, f"malformed entry: {exc}"))
            continue
        if item.namespace not in appliers:
            dead.append((entry_id, raw, f"no applier for namespace {item.namespace!r}"))
            continue
        slot = (item.namespace, json.dumps(item.entity_id))
        if slot not in latest or latest[slot].version < item.version:
            latest[slot] = item
    coalesced = sum(1 for _, raw in entries if raw is not None) - len(dead) - len(latest)
    stats.coalesced += coalesced

    items = list(latest.values())
    retries_before = stats.retries
    state.own_pending = True  # until acknowledged: a failure below leaves them to re-read
    try:
        yield from _commit(state, appliers, items)
        applied = items
    except Exception as exc:
        if isinstance(exc, config.transient):
            log.error("database unavailable after %d attempts (%s); %d entries stay pending",
                      config.max_attempts, exc, len(entries))
            raise
        applied = []
        for item in items:  # isolate the entry at fault: each alone, once more
            try:
                yield from _commit(state, appliers, [item], attempts=1)
                applied.append(item)
            except Exception as alone:
                if isinstance(alone, config.transient):
                    raise
                dead.append((item.entry_id, _fields(item), f"{type(alone).__name__}: {alone}"))

    for entry_id, raw, why in dead:
        fields_ = tuple((raw or {}).items()) + (("error", why),)
        yield StreamAdd(config.dead_stream, fields_)
        log.error("write-behind entry %s sent to %s: %s", entry_id, config.dead_stream, why)
    stats.dead += len(dead)
    ids = tuple(entry_id for entry_id, _ in entries)
    yield StreamAck(config.stream, config.group, ids)
    state.own_pending = False
    stats.acked += len(ids)
    stats.applied += len(applied)

    unpinned = 0
    if applied:
        unpin = tuple(
            (entry_key(config.prefix, i.namespace, i.entity_id),
             _codec.dirty_payload(i.version, i.data_json), _codec.clean_payload(i.version, i.data_json))
            for i in applied)
        unpinned = yield CacheUnpin(unpin, config.default_ttl)
        stats.unpinned += unpinned
    return FlushResult(read=len(entries), claimed=claimed, applied=len(applied), coalesced=coalesced,
                       dead=len(dead), unpinned=unpinned, retries=stats.retries - retries_before)


def _next_entries(state: FlushState) -> Policy:
    """The entries of the next batch and how many were claimed from other consumers."""
    config = state.config
    if state.own_pending:
        entries = yield StreamRead(config.stream, config.group, config.consumer, config.batch, pending=True)
        if entries:
            return entries, 0
        state.own_pending = False
    if config.claim_idle_s is not None and state.clock() >= state.next_claim:
        state.next_claim = state.clock() + config.claim_idle_s
        entries = yield StreamClaim(config.stream, config.group, config.consumer, config.claim_idle_s, config.batch)
        if entries:
            state.next_claim = float("-inf")  # there may be more: claim again next batch
            return entries, len(entries)
    entries = yield StreamRead(config.stream, config.group, config.consumer, config.batch,
                               block_s=config.max_delay_s)
    return entries, 0


def _commit(state: FlushState, appliers: Mapping[str, Applier], items: list[Queued],
            attempts: int | None = None) -> Policy:
    """Apply ``items`` in one transaction, retried with backoff; raise the last error when out of attempts.

    tenacity decides whether to retry and how long to wait; the wait is yielded
    as a :class:`~wtsim.ops.Wait` op, and the op is performed *outside*
    tenacity's attempt block (which would swallow a generator's close).
    """
    config, stats = state.config, state.stats

    def writer(session: Any) -> None:
        for item in items:
            appliers[item.namespace](session, item.entity_id, json.loads(item.data_json), item.version)

    waits: list[float] = []
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts or config.max_attempts),
        wait=tenacity.wait_exponential(multiplier=config.backoff_s, max=config.backoff_max_s),
        sleep=waits.append,
        reraise=True,
    )
    for attempt in retrying:
        if waits:
            stats.retries += 1
            yield Wait(waits.pop())
        try:
            yield DbWrite(writer, rows=len(items))
            error = None
        except Exception as exc:
            stats.db_errors += 1
            error = exc
        with attempt:
            if error is not None:
                raise error


def _decode(entry_id: str, raw: dict) -> Queued:
    try:
        namespace, id_json, version, data_json = raw["ns"], raw["id"], raw["v"], raw["p"]
        entity_id = json.loads(id_json)
        version = int(version)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"fields ns, id (JSON), v (int) and p are required ({type(exc).__name__}: {exc})") from None
    if isinstance(entity_id, bool) or not isinstance(entity_id, (str, int)):
        raise ValueError(f"id must be a JSON string or integer, got {id_json!r}")
    if not isinstance(json.loads(data_json), dict):
        raise ValueError("p must be a JSON object")
    return Queued(entry_id, namespace, entity_id, version, data_json)


def _fields(item: Queued) -> dict[str, str]:
    return {"ns": item.namespace, "id": json.dumps(item.entity_id), "v": str(item.version), "p": item.data_json}


__all__ = ["Applier", "FlushConfig", "FlushResult", "FlushState", "FlushStats", "Op", "Queued", "flush_once"]
