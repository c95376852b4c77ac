"""Every cache op a policy sends goes through here: the breaker, outage repair, invalidation.

Rules of this module (shared by every pattern that has a cache):

* :func:`cache` asks the circuit breaker first: while it is open the op is
  not sent at all (a hung Redis then costs a timeout only until it opens).
* With ``outage_repair``, keys the cache could not be told about are
  invalidated (:func:`repair`) before anything else is read from a cache that
  answers again; concurrent requests bypass the cache until that is done.
* A cache failure never escapes as an exception: :func:`cache` answers
  ``(answered, result)`` and the policy decides what it means.
* :func:`invalidate` deletes an entry (a tombstone in versioned mode); when it
  cannot, the key is remembered for repair, so a stale entry cannot outlive
  the outage that kept it.
"""

from __future__ import annotations

import logging
from typing import Any, Generator

from ..ops import CacheDelete, CacheError, CachePurge, CacheRejected, CacheTombstone, CacheUnavailable, Op
from .state import CacheState

log = logging.getLogger("wtsim.policies")

Policy = Generator[Op, Any, Any]

SKIPPED = object()
"""The result :func:`cache` gives when it did not ask the cache at all."""


def cache(state: CacheState, op: Op) -> Policy:
    """Send one cache op past the breaker and the repair; return ``(answered, result)``.

    When the cache did not answer, ``result`` is :data:`SKIPPED` (not asked),
    or the :class:`CacheError` it failed with.
    """
    breaker = state.breaker
    # (A closed breaker lets everything through: ask it only when it has opened.)
    if state.repairing or (breaker is not None and breaker.opened_at is not None and not breaker.allow()):
        state.stats.cache_skipped += 1
        return False, SKIPPED
    suspects = state.suspects
    if (suspects.keys or suspects.namespaces) and state.config.outage_repair:
        repaired = yield from repair(state)
        if repaired is not True:
            return False, repaired
    probe = breaker is not None and breaker.probing  # is this op the half-open probe?
    try:
        result = yield op
    except CacheError as exc:
        failed(state, exc, probe)
        return False, exc
    if breaker is not None and (breaker.failures or breaker.opened_at is not None):
        breaker.record_success()  # (a closed breaker with no failures has nothing to reset)
    return True, result


def invalidate(state: CacheState, namespace_prefix: str, key: str, version: int | None) -> Policy:
    """Remove the entry at ``key`` (a tombstone in versioned mode); ``True`` when the cache confirmed it."""
    config = state.config
    if config.versioned:
        op: Op = CacheTombstone(((key, version),), config.tombstone_ttl)
    else:
        op = CacheDelete((key,))
    answered, result = yield from cache(state, op)
    if not answered and isinstance(result, CacheRejected) and config.versioned:
        # Refused (out of memory, say): a plain DEL still frees the key there.
        answered, result = yield from cache(state, CacheDelete((key,)))
    if answered:
        state.stats.invalidations += 1
        return True
    state.suspects.add(key, version, namespace_prefix)
    if result is not SKIPPED:
        log.error("could not invalidate %s; remembered for repair", key)
    return False


def repair(state: CacheState) -> Policy:
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
        failed(state, exc)
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


def failed(state: CacheState, exc: CacheError, probe: bool | None = None) -> None:
    """Count a cache failure (of the breaker's probe, ``probe``); a cache that did not answer counts towards the breaker."""
    state.stats.cache_errors += 1
    breaker = state.breaker
    if breaker is None:
        return
    if isinstance(exc, CacheUnavailable):
        trips = breaker.trips
        breaker.record_failure(probe)
        if breaker.trips != trips:
            log.error("cache unreachable (%s): skipping it for %.1fs", exc, breaker.cooldown_s)
    else:
        breaker.record_success()  # it answered, with an error: it is up
