"""No cache at all: every read and every write goes to the database.

The baseline the other policies are measured against, written as a policy like
them (the same signatures as :mod:`wtsim.policies.write_through`), so the
simulator can run "no cache" through the same driver, queues and faults.
"""

from __future__ import annotations

from typing import Any, Callable

from ..keys import EntityId
from .state import CacheState
from .entries import commit, read_database
from .guarded import Policy


def read(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_reader: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Read from the database; ``None`` when absent."""
    state.stats.misses += 1
    result = yield from read_database(state, db_reader)
    return None if result is None else serialize(result)


def write(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_writer: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Write to the database and commit; return what ``db_writer`` returned."""
    return (yield from commit(state, db_writer))
