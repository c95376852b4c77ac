"""The cache-aside policy: the application writes the database and drops the cached copy.

The pattern most applications use (dogpile.cache, cashews): the cache is only
ever filled by readers, on a miss.

write
    ``DbWrite`` (writer + commit) -> invalidate the entry (a ``DEL``; a
    tombstone of the new version in versioned mode, so that a slow reader
    cannot put back what it read before the commit). It never stores the new
    value: the next reader misses and populates. As in write-through, a cache
    problem after the commit is never reported as a failed write; a failed
    invalidation is remembered for repair.
read, invalidate
    As write-through: :mod:`wtsim.policies.read_through`.

Compared with write-through: a write costs one cache round trip either way, but
the first read after it misses, so a key written as often as it is read is
hardly ever a hit; in exchange the concurrent-writer race cannot leave an older
value cached, since writers never store one.
"""

from __future__ import annotations

from typing import Any, Callable

from ..keys import EntityId, namespace_prefix
from . import guarded
from .entries import commit, ttl_for, version_of
from .guarded import Policy
from .read_through import invalidate, read
from .state import CacheState

__all__ = ["Policy", "invalidate", "read", "write"]


def write(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_writer: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Write to the database, then invalidate the cached entry; return what ``db_writer`` returned."""
    config = state.config
    key = state.key(namespace, entity_id)
    ttl_for(config, ttl)  # the same arguments as write-through, checked the same way
    result = yield from commit(state, db_writer)

    prefix = namespace_prefix(config.prefix, namespace)
    version = None
    if config.versioned:
        try:
            version = version_of(config, serialize(result))
        except Exception:
            yield from guarded.invalidate(state, prefix, key, None)  # a tombstone of unknown version
            raise
    yield from guarded.invalidate(state, prefix, key, version)
    return result
