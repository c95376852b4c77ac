"""The write-through policy, written once for the real cache and the simulator.

Each public function is a generator: it yields :mod:`wtsim.ops` operations and
receives their results (or has their failures thrown in) from whichever driver
runs it. It decides; it performs nothing.

write
    ``DbWrite`` (writer + commit) -> ``serialize`` -> cache update.
    A failed commit propagates and leaves the cache alone. After the commit the
    write has happened: a cache problem is never reported as a failed write
    (callers would retry and write twice). The entry is invalidated instead,
    and if even that fails, the key is remembered for repair.
read
    ``CacheGet`` -> on a miss ``DbRead`` -> ``serialize`` -> populate.
    A corrupt or foreign payload is a miss and gets overwritten.
invalidate
    ``CacheDelete``, or in versioned mode a ``CacheTombstone`` that refuses a
    late populate of an older version.

Modes
    ``versioned=False`` is the article's algorithm (plain ``SET``), with its
    races: a concurrent writer or a slow reader can leave an older value cached
    until the TTL runs out. ``versioned=True`` makes every update a
    compare-and-set on the row's version, so an older value never replaces a
    newer one.

Every cache op goes through :func:`_cache`, which asks the circuit breaker
first (a hung Redis then costs a timeout only until the breaker opens) and,
with ``outage_repair``, invalidates the remembered keys before anything else
is read from a cache that answers again.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Generator

from .. import codec
from ..keys import EntityId, entry_key, namespace_prefix
from ..ops import (
    CacheDelete,
    CacheError,
    CacheGet,
    CachePurge,
    CacheRejected,
    CacheSet,
    CacheSetIfNewer,
    CacheTombstone,
    CacheUnavailable,
    DbRead,
    DbWrite,
    Op,
)
from .state import CacheState, PolicyConfig

log = logging.getLogger("wtsim.policies.write_through")

Policy = Generator[Op, Any, Any]

SKIPPED = object()
"""The result :func:`_cache` gives when it did not ask the cache at all."""


def write(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_writer: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Write to the database, then the cache; return what ``db_writer`` returned."""
    config, stats = state.config, state.stats
    key = entry_key(config.prefix, namespace, entity_id)
    ttl_s = _ttl(config, ttl)  # bad input fails here, before anything is written
    try:
        result = yield DbWrite(db_writer)
    except Exception:
        stats.db_errors += 1
        raise  # the driver rolled back; the cache was not touched
    stats.db_writes += 1

    version = None
    try:
        data = serialize(result)
        version = _version(config, data)
        payload = codec.encode(data, version)
    except Exception:
        # The commit stands, so whatever the cache holds is now older: it must go.
        yield from _invalidate(state, namespace, key, version)
        raise

    answered, stored = yield from _cache(state, _update(config, key, payload, version, ttl_s))
    if answered:
        _count_update(state, stored)
        return result
    log.warning("cache update failed for %s after commit; invalidating it", key)
    yield from _invalidate(state, namespace, key, version)
    return result


def read(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_reader: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Answer from the cache, or from the database and populate; ``None`` when absent."""
    config, stats = state.config, state.stats
    key = entry_key(config.prefix, namespace, entity_id)
    ttl_s = _ttl(config, ttl)
    answered, raw = yield from _cache(state, CacheGet(key))
    if answered and raw is not None:
        entry = codec.decode(raw)
        if entry.data is not None:
            stats.hits += 1
            return entry.data
        if entry is codec.FOREIGN:
            stats.corrupt += 1
            log.warning("corrupt or foreign payload at %s; reading the database", key)
    stats.misses += 1
    try:
        result = yield DbRead(db_reader)
    except Exception:
        stats.db_errors += 1
        raise
    stats.db_reads += 1
    if result is None:
        return None
    data = serialize(result)
    version = _version(config, data)
    if isinstance(raw, CacheUnavailable) and state.breaker is not None:
        return data  # the cache just did not answer: don't pay a second timeout
    payload = codec.encode(data, version)
    answered, stored = yield from _cache(state, _update(config, key, payload, version, ttl_s))
    if answered:
        _count_update(state, stored)
    return data  # a failed populate costs the next reader a miss, nothing more


def invalidate(
    state: CacheState, namespace: str, entity_id: EntityId, version: int | None = None
) -> Policy:
    """Remove the entry; return ``True`` when the cache confirmed it."""
    key = entry_key(state.config.prefix, namespace, entity_id)
    return (yield from _invalidate(state, namespace, key, version))


def _invalidate(state: CacheState, namespace: str, key: str, version: int | None) -> Policy:
    config = state.config
    if config.versioned:
        op: Op = CacheTombstone(((key, version),), config.tombstone_ttl)
    else:
        op = CacheDelete((key,))
    answered, result = yield from _cache(state, op)
    if not answered and isinstance(result, CacheRejected) and config.versioned:
        # Refused (out of memory, say): a plain DEL still frees the key there.
        answered, result = yield from _cache(state, CacheDelete((key,)))
    if answered:
        state.stats.invalidations += 1
        return True
    state.suspects.add(key, version, namespace_prefix(config.prefix, namespace))
    if result is not SKIPPED:
        log.error("could not invalidate %s; remembered for repair", key)
    return False


def _cache(state: CacheState, op: Op) -> Policy:
    """Send one cache op past the breaker and the repair; return ``(answered, result)``.

    When the cache did not answer, ``result`` is :data:`SKIPPED` (not asked),
    or the :class:`CacheError` it failed with.
    """
    breaker = state.breaker
    if state.repairing or (breaker is not None and not breaker.allow()):
        state.stats.cache_skipped += 1
        return False, SKIPPED
    if state.suspects and state.config.outage_repair:
        repaired = yield from _repair(state)
        if repaired is not True:
            return False, repaired
    try:
        result = yield op
    except CacheError as exc:
        _failed(state, exc)
        return False, exc
    if breaker is not None:
        breaker.record_success()
    return True, result


def _repair(state: CacheState) -> Policy:
    """Invalidate every remembered key; answer ``True``, or the error that stopped it."""
    config, suspects = state.config, state.suspects
    keys, namespaces = dict(suspects.keys), list(suspects.namespaces)
    state.repairing = True  # concurrent requests bypass the cache until this is done
    try:
        if keys and config.versioned:
            try:
                yield CacheTombstone(tuple(keys.items()), config.tombstone_ttl)
            except CacheRejected:  # out of memory, say: a plain DEL still works
                yield CacheDelete(tuple(keys))
        elif keys:
            yield CacheDelete(tuple(keys))
        for prefix in namespaces:
            yield CachePurge(prefix)
    except CacheError as exc:
        _failed(state, exc)
        return exc
    finally:
        state.repairing = False
    for key, version in keys.items():
        if suspects.keys.get(key, SKIPPED) == version:  # unless re-added meanwhile
            del suspects.keys[key]
    for prefix in namespaces:
        suspects.namespaces.pop(prefix, None)
    state.stats.suspects_repaired += len(keys)
    state.stats.namespaces_purged += len(namespaces)
    log.info("cache answers again: invalidated %d keys, purged %d namespaces", len(keys), len(namespaces))
    return True


def _failed(state: CacheState, exc: CacheError) -> None:
    state.stats.cache_errors += 1
    breaker = state.breaker
    if breaker is None:
        return
    if isinstance(exc, CacheUnavailable):
        trips = breaker.trips
        breaker.record_failure()
        if breaker.trips != trips:
            log.error("cache unreachable (%s): skipping it for %.1fs", exc, breaker.cooldown_s)
    else:
        breaker.record_success()  # it answered, with an error: it is up


def _update(config: PolicyConfig, key: str, payload: str, version: int | None, ttl_s: float | None) -> Op:
    if config.versioned:
        return CacheSetIfNewer(key, payload, version, ttl_s)
    return CacheSet(key, payload, ttl_s)


def _count_update(state: CacheState, stored: Any) -> None:
    if stored is False:
        state.stats.refused_older += 1
    else:
        state.stats.cache_sets += 1


def _ttl(config: PolicyConfig, ttl: float | None) -> float | None:
    if ttl is None:
        return config.default_ttl
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a number of seconds > 0, or None for the default; got {ttl!r}")
    return ttl


def _version(config: PolicyConfig, data: Any) -> int | None:
    if not config.versioned:
        return None
    if not isinstance(data, dict):
        raise TypeError(f"serialize must return a dict, got {type(data).__name__}")
    field = config.version_field
    version = data.get(field)
    if type(version) is not int:
        raise ValueError(
            f"versioned mode needs an integer {field!r} in the serialized value, got {version!r}"
        )
    return version
