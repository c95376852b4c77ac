"""The write-behind policy: a write is queued in Redis; a flusher writes the database later.

Rules of this module (generators, as every policy: they decide, they perform
nothing):

write
    One :class:`~wtsim.ops.CacheQueueWrite`: a Lua script stores the new
    entry, *dirty* and without TTL, and appends ``(namespace, id, version,
    row)`` to the stream, so cache and queue never disagree. The script
    assigns the version: one more than the cached entry's. When nothing is
    cached it answers "need the base version"; the policy then reads the row's
    version from the database (``version_reader``; ``0`` when the row is
    absent) and asks again with that base, used only if the entry is still
    absent. The caller gets the version after one round trip in the common
    case and never waits for the database write. Past ``max_pending`` queued
    entries, the write fails with :class:`WriteQueueFull` and writes nothing.

    Why fail instead of falling back to write-through: the queue is the order
    of writes. A write sent straight to the database while older ones of the
    same key wait in the queue would be overwritten when they flush (or, with
    version checks, would refuse them); and a full queue means the database is
    not keeping up, so adding synchronous writes to it makes things worse. A
    clear, immediate error lets the caller shed load or retry later.
read
    The cache first; a hit answers the entry's data, dirty or not, with its
    version set in ``version_field`` (a queued row does not carry the version
    the script gave it). On a miss, the database, then a populate
    (:class:`~wtsim.ops.CachePopulate`) that never replaces a value.

Why not the shared read path (:mod:`wtsim.policies.read_through`): its
populate is a compare-and-set that replaces an entry of the *same* version,
which here may be a dirty one; leases and early recompute assume every entry
may be dropped and recomputed from the database, which a dirty entry may not;
and its hit answers the stored data unchanged. The shared pieces it does use:
:func:`~wtsim.policies.guarded.cache` (the breaker) and
:mod:`~wtsim.policies.entries` (TTL and version rules).

A write needs the cache: when Redis does not answer, the write fails (raises
the :class:`~wtsim.ops.CacheError`), as it would fail with the database down
in write-through. A read falls back to the database.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from ..keys import EntityId
from ..ops import CacheGet, CachePopulate, CacheQueueWrite, CacheUnavailable
from . import guarded
from .entries import read_database, ttl_for, version_of
from .guarded import Policy
from .state import CacheState

__all__ = ["Policy", "WriteQueueFull", "read", "write"]


class WriteQueueFull(Exception):
    """A write-behind write refused: the stream already holds ``max_pending`` entries."""

    def __init__(self, stream: str, pending: int, limit: int) -> None:
        super().__init__(
            f"write-behind queue {stream!r} is full: {pending} entries pending, max_pending={limit}; "
            "the flusher is behind or stopped, nothing was written"
        )
        self.stream, self.pending, self.limit = stream, pending, limit


def write(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    data: dict,
    stream: str,
    max_pending: int,
    version_reader: Callable[[Any], int | None] | None = None,
) -> Policy:
    """Queue ``data`` as the new row of ``(namespace, entity_id)``; return the version it got."""
    key = state.key(namespace, entity_id)
    data_json = state.codec.encode_data(data)  # not JSON: fails here, before anything is written
    id_json = json.dumps(entity_id)
    base: int | None = None
    while True:
        answered, answer = yield from guarded.cache(
            state, CacheQueueWrite(key, stream, namespace, id_json, data_json, base, max_pending))
        if not answered:
            if isinstance(answer, Exception):
                raise answer
            raise CacheUnavailable("circuit breaker open: the write-behind queue is not reachable")
        if answer.version is not None:
            state.stats.cache_sets += 1
            return answer.version
        if not answer.need_base:
            raise WriteQueueFull(stream, answer.pending, max_pending)
        if base is not None:  # cannot happen: the script uses a given base
            raise RuntimeError(f"QUEUE_WRITE asked again for the base version of {key}")
        if version_reader is None:
            raise ValueError(
                f"version_reader is required: {namespace!r}/{entity_id!r} is not cached, "
                "so its base version must be read from the database")
        found = yield from read_database(state, version_reader)
        if found is not None and (type(found) is not int or found < 0):
            raise ValueError(f"version_reader must answer an integer >= 0 or None, got {found!r}")
        base = found or 0


def read(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_reader: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Answer from the cache (dirty entries included), or from the database and populate; ``None`` when absent."""
    config, stats, codec = state.config, state.stats, state.codec
    key = state.key(namespace, entity_id)
    ttl_s = ttl_for(config, ttl)
    answered, raw = yield from guarded.cache(state, CacheGet(key))
    entry = codec.decode(raw) if answered and raw is not None else None
    if entry is not None and entry.data is not None:
        stats.hits += 1
        data = dict(entry.data)
        if entry.version is not None:
            data[config.version_field] = entry.version
        return data
    if entry is codec.FOREIGN:
        stats.corrupt += 1
    stats.misses += 1
    row = yield from read_database(state, db_reader)
    if row is None:
        return None
    data = serialize(row)
    version = version_of(config, data)
    if isinstance(raw, CacheUnavailable) and state.breaker is not None:
        return data  # the cache just did not answer: don't pay a second timeout
    answered, stored = yield from guarded.cache(state, CachePopulate(key, codec.encode(data, version), ttl_s))
    if answered and stored:
        stats.cache_sets += 1
    elif answered:
        stats.refused_older += 1  # a value got there first: maybe a queued write, never replaced
    return data
