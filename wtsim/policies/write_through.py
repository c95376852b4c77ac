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
read, invalidate
    As every pattern that populates on a miss: :mod:`wtsim.policies.read_through`
    (leases and early recompute included).

Modes
    ``versioned=False`` is the article's algorithm (plain ``SET``), with its
    races: a concurrent writer or a slow reader can leave an older value cached
    until the TTL runs out. ``versioned=True`` makes every update a
    compare-and-set on the row's version, so an older value never replaces a
    newer one.

Every cache op goes through :func:`wtsim.policies.guarded.cache`, which asks
the circuit breaker first and, with ``outage_repair``, invalidates the
remembered keys before anything else is read from a cache that answers again.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from ..keys import EntityId, namespace_prefix
from . import guarded
from .entries import commit, count_update, ttl_for, update_op, version_of
from .guarded import Policy
from .read_through import invalidate, read
from .state import CacheState

__all__ = ["Policy", "invalidate", "read", "write"]

log = logging.getLogger("wtsim.policies.write_through")


def write(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_writer: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Write to the database, then the cache; return what ``db_writer`` returned."""
    config = state.config
    key = state.key(namespace, entity_id)
    ttl_s = ttl_for(config, ttl)  # bad input fails here, before anything is written
    result = yield from commit(state, db_writer)

    prefix = namespace_prefix(config.prefix, namespace)
    version = None
    try:
        data = serialize(result)
        version = version_of(config, data)
        payload = state.codec.encode(data, version)
    except Exception:
        # The commit stands, so whatever the cache holds is now older: it must go.
        yield from guarded.invalidate(state, prefix, key, version)
        raise

    answered, stored = yield from guarded.cache(state, update_op(config, key, payload, version, ttl_s))
    if answered:
        count_update(state, stored)
        return result
    log.warning("cache update failed for %s after commit; invalidating it", key)
    yield from guarded.invalidate(state, prefix, key, version)
    return result
