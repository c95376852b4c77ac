"""The steps the patterns share: the database read and commit, then the entry's TTL, version and update op.

Shared by the patterns: a write commits the same way everywhere, and a
write-through write and every populate store an entry the same way, so the
rules live once:

* a database read is one ``DbRead``, the commit one ``DbWrite`` (writer +
  commit), each counted; a failure is counted and propagates, with the cache
  untouched (the driver rolled back);
* the TTL is the call's ``ttl``, else the configured default (``None``: no expiry);
* in versioned mode the version is ``serialize(row)[version_field]``, an int,
  and the update is a compare-and-set (:class:`~wtsim.ops.CacheSetIfNewer`);
  otherwise a plain ``SET`` (the article's last-writer-wins).
"""

from __future__ import annotations

from typing import Any, Callable, Generator

from ..ops import CacheSet, CacheSetIfNewer, DbRead, DbWrite, Op
from .state import CacheState, PolicyConfig


def read_database(state: CacheState, db_reader: Callable[[Any], Any]) -> Generator[Op, Any, Any]:
    """Run ``db_reader`` (one ``DbRead``); count it; return what it returned (``None``: no such row)."""
    try:
        result = yield DbRead(db_reader)
    except Exception:
        state.stats.db_errors += 1
        raise
    state.stats.db_reads += 1
    return result


def commit(state: CacheState, db_writer: Callable[[Any], Any]) -> Generator[Op, Any, Any]:
    """Run ``db_writer`` and commit (one ``DbWrite``); count it; return what the writer returned."""
    try:
        result = yield DbWrite(db_writer)
    except Exception:
        state.stats.db_errors += 1
        raise  # the driver rolled back; the cache was not touched
    state.stats.db_writes += 1
    return result


def ttl_for(config: PolicyConfig, ttl: float | None) -> float | None:
    """The TTL an entry gets: ``ttl``, or the default; bad input raises before anything is written."""
    if ttl is None:
        return config.default_ttl
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not ttl > 0:
        raise ValueError(f"ttl must be a number of seconds > 0, or None for the default; got {ttl!r}")
    return ttl


def version_of(config: PolicyConfig, data: Any) -> int | None:
    """The version of a serialized row in versioned mode (``None`` otherwise)."""
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


def update_op(config: PolicyConfig, key: str, payload: Any, version: int | None, ttl_s: float | None) -> Op:
    """The op that stores ``payload``: a compare-and-set in versioned mode, else a plain SET."""
    if config.versioned:
        return CacheSetIfNewer(key, payload, version, ttl_s)
    return CacheSet(key, payload, ttl_s)


def count_update(state: CacheState, stored: Any) -> None:
    """Count what an update answered: stored, or refused as older."""
    if stored is False:
        state.stats.refused_older += 1
    else:
        state.stats.cache_sets += 1
