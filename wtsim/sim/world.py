"""The simulated world: a versioned table and a cache, which together are the oracle.

:class:`SimDB` is the database. Every key ``1 .. n_keys`` exists from the start
at version 1 (committed at t = 0); each committed write adds the next version
and remembers when it was committed. A row is the dict
``{"id": key, "version": v}``, JSON-safe, so the policy can encode it with the
real codec. Because the table remembers every commit time, it can say of any
value a reader got back whether it was stale and for how long
(:meth:`SimDB.staleness`): that is the consistency oracle.

:class:`SimCache` is Redis, reduced to what the policies use. Its rules:

* An entry is ``(payload, expires_at)``; ``ttl_s=None`` means no expiry (a
  plain ``SET`` also clears an old TTL, as in Redis). Hits do not extend the
  TTL. Expired entries are dropped when touched. TTLs are kept exactly, not
  rounded to milliseconds.
* With a ``capacity``, the least recently used entry is evicted when a store
  would exceed it. Every lookup of a key (a ``GET``, or the ``GET`` inside a
  compare-and-set) makes it the most recently used.
* :class:`~wtsim.ops.CacheSetIfNewer` and :class:`~wtsim.ops.CacheTombstone`
  do exactly what the Lua scripts of :mod:`wtsim.scripts` do. The payloads in
  this cache are always :mod:`wtsim.codec` envelopes, decoded with
  :func:`wtsim.codec.decode`.

Nothing here knows about time passing: the driver applies each op at the
simulated instant it takes effect and passes that instant in as ``now``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

from .. import codec
from ..ops import CacheDelete, CacheGet, CachePurge, CacheSet, CacheSetIfNewer, CacheTombstone

Row = dict


class DatabaseUnavailable(Exception):
    """The simulated database refused the operation (a ``db-down`` fault)."""


class SimDB:
    """A table of ``n_keys`` rows with every committed version's commit time."""

    def __init__(self, n_keys: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.versions = [1] * (n_keys + 1)  # versions[key]; index 0 is unused
        self.commits: dict[int, list[float]] = {}  # key -> commit time of version 1, 2, ...

    def row(self, key: int) -> Row:
        """The committed row, as a fresh dict."""
        return {"id": key, "version": self.versions[key]}

    def commit(self, key: int) -> Row:
        """Commit the next version of ``key`` now; return the new row."""
        version = self.versions[key] + 1
        self.versions[key] = version
        times = self.commits.get(key)
        if times is None:
            times = self.commits[key] = [0.0]
        times.append(self.clock())
        return {"id": key, "version": version}

    def committed_at(self, key: int, version: int) -> float:
        """When ``version`` of ``key`` was committed."""
        return 0.0 if version == 1 else self.commits[key][version - 1]

    def staleness(self, key: int, version: int, newest: int, at: float) -> float | None:
        """How long ``version`` had been superseded at ``at``; ``None`` when it was the newest.

        ``newest`` is the newest version committed when the read began.
        """
        if version >= newest:
            return None
        return at - self.committed_at(key, version + 1)


class SimCache:
    """An in-memory Redis: payloads with TTLs, LRU capacity, and the Lua scripts' semantics.

    Payloads are decoded once, when stored, and kept as :class:`wtsim.codec.Entry`;
    a ``GET`` answers the entry, which :func:`wtsim.codec.decode` passes through.
    Same result as storing the JSON, without a parse on every hit.
    """

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.data: OrderedDict[str, tuple[codec.Entry, float]] = OrderedDict()
        self._perform = {
            CacheGet: lambda op, now: self.get(op.key, now),
            CacheSet: lambda op, now: self.set(op.key, op.payload, op.ttl_s, now),
            CacheSetIfNewer: lambda op, now: self.set_if_newer(op.key, op.payload, op.version, op.ttl_s, now),
            CacheDelete: lambda op, now: self.delete(op.keys, now),
            CacheTombstone: lambda op, now: self.tombstone(op.entries, op.ttl_s, now),
            CachePurge: lambda op, now: self.purge(op.key_prefix),
        }

    def apply(self, op: object, now: float) -> object:
        """Perform one cache op at ``now``; answer what Redis would."""
        return self._perform[type(op)](op, now)

    # -- plain commands ---------------------------------------------------------------------

    def get(self, key: str, now: float) -> codec.Entry | None:
        """``GET``: the (decoded) payload, or ``None``; a hit makes ``key`` the most recently used."""
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del self.data[key]
            return None
        if self.capacity is not None:
            self.data.move_to_end(key)
        return entry[0]

    def set(self, key: str, payload: str, ttl_s: float | None, now: float) -> None:
        """``SET key payload [PX ttl]``, evicting the least recently used entry when full."""
        data = self.data
        data[key] = (codec.decode(payload), math.inf if ttl_s is None else now + ttl_s)
        if self.capacity is not None:
            data.move_to_end(key)
            while len(data) > self.capacity:
                data.popitem(last=False)

    def delete(self, keys: tuple[str, ...], now: float) -> int:
        """``DEL``: how many of ``keys`` existed."""
        deleted = 0
        for key in keys:
            entry = self.data.pop(key, None)
            deleted += entry is not None and entry[1] > now
        return deleted

    def purge(self, prefix: str) -> int:
        """Delete every key that starts with ``prefix`` (``SCAN MATCH`` + ``UNLINK``)."""
        doomed = [key for key in self.data if key.startswith(prefix)]
        for key in doomed:
            del self.data[key]
        return len(doomed)

    def flush(self) -> None:
        """``FLUSHALL``: the cache restarts empty."""
        self.data.clear()

    # -- the Lua scripts of wtsim.scripts -------------------------------------------------------

    def set_if_newer(self, key: str, payload: str, version: int, ttl_s: float | None, now: float) -> bool:
        """``SET_IF_NEWER``: store unless a newer entry, or a tombstone of unknown version, is there."""
        entry = self.get(key, now)
        if entry is not None:
            if entry.tombstone and entry.version is None:
                return False
            if entry.version is not None and entry.version > version:
                return False
        self.set(key, payload, ttl_s, now)
        return True

    def tombstone(self, entries: tuple[tuple[str, int | None], ...], ttl_s: float, now: float) -> None:
        """``TOMBSTONE`` for each ``(key, version)``: unless what is there already covers it."""
        for key, version in entries:
            if version is not None:
                entry = self.get(key, now)
                if entry is not None:
                    if entry.tombstone and entry.version is None:
                        continue
                    if entry.version is not None and entry.version >= version:
                        continue
            self.set(key, codec.encode_tombstone(version), ttl_s, now)

    def __len__(self) -> int:
        return len(self.data)


class World:
    """The database and the cache that every app server of a run shares."""

    def __init__(self, n_keys: int, capacity: int | None, clock: Callable[[], float]) -> None:
        self.db = SimDB(n_keys, clock)
        self.cache = SimCache(capacity)
