"""The simulated world: a versioned table and a cache, which together are the oracle.

:class:`SimDB` is the database. Every key ``1 .. n_keys`` exists from the start
at version 1 (committed at t = 0); each committed write adds the next version
and remembers when it was committed. A row is the dict
``{"id": key, "version": v}``, JSON-safe, so the policy can encode it with the
real codec. Because the table remembers every commit time, it can say of any
value a reader got back whether it was stale and for how long
(:meth:`SimDB.staleness`, which asks :func:`wtsim.oracle.staleness`, the one
definition of a stale read); and after a run, which cached entries are older
than their row (:meth:`World.keys_stale_at_rest`).

:class:`SimCache` is Redis, reduced to what the policies use. Its rules:

* An entry is ``(payload, expires_at)``; ``ttl_s=None`` means no expiry (a
  plain ``SET`` also clears an old TTL, as in Redis). Hits do not extend the
  TTL. Expired entries are dropped when touched. TTLs are kept exactly, not
  rounded to milliseconds.
* With a ``capacity``, the least recently used entry is evicted when a store
  would exceed it. Every lookup of a key (a ``GET``, or the ``GET`` inside a
  compare-and-set) makes it the most recently used.
* :class:`~wtsim.ops.CacheSetIfNewer`, :class:`~wtsim.ops.CacheTombstone`,
  :class:`~wtsim.ops.CacheLease` and :class:`~wtsim.ops.CacheSetLeased` do
  exactly what the Lua scripts of :mod:`wtsim.scripts` do.
* A write-behind write (:class:`~wtsim.ops.CacheQueueWrite`) stores a *dirty*
  entry without TTL and appends to a :class:`~wtsim.sim.streams.SimStream`,
  as :data:`wtsim.scripts.QUEUE_WRITE` does; the LRU never evicts a dirty
  entry (as ``volatile-lru`` would not: it has no TTL), and a flush loses the
  streams with everything else.
* Payloads are kept as decoded :class:`wtsim.codec.Entry` objects: the
  simulated app servers use :class:`DecodedCodec`, which "encodes" a value as
  its Entry, so a hit costs no JSON parse. A JSON payload (a test's, say) is
  decoded once, when stored. Same results as storing the JSON, only faster.

Nothing here knows about time passing: the driver applies each op at the
simulated instant it takes effect and passes that instant in as ``now``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable

import json
from typing import Any

from .. import codec, oracle
from ..codec import Entry
from ..keys import parse_key
from ..ops import (
    CacheDelete,
    CacheGet,
    CacheLease,
    CachePopulate,
    CachePurge,
    CacheQueueWrite,
    CacheSet,
    CacheSetIfNewer,
    CacheSetLeased,
    CacheTombstone,
    CacheUnpin,
    QueueAnswer,
    StreamAck,
    StreamAdd,
    StreamClaim,
    StreamCreateGroup,
    StreamRead,
)
from .streams import SimStream

Row = dict


class DatabaseUnavailable(Exception):
    """The simulated database refused the operation (a ``db-down`` fault)."""


class SimDB:
    """A table of ``n_keys`` rows with every committed version's commit time."""

    def __init__(self, n_keys: int, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.versions = [1] * (n_keys + 1)  # versions[key]; index 0 is unused
        self.commits: dict[int, list[float]] = {}  # key -> commit time of version 1, 2, ...
        self.fields: dict[int, dict] = {}  # key -> the other columns a write-behind write stored

    def row(self, key: int) -> Row:
        """The committed row, as a fresh dict."""
        fields = self.fields.get(key)
        if fields is None:
            return {"id": key, "version": self.versions[key]}
        return {**fields, "id": key, "version": self.versions[key]}

    def upsert_newer(self, key: int, data: dict, version: int) -> bool:
        """The write-behind applier (:func:`wtsim.upsert_newer`): store ``data`` at ``version`` if newer."""
        if version <= self.versions[key]:
            return False
        self.versions[key] = version
        self.fields[key] = {name: value for name, value in data.items() if name not in ("id", "version")}
        return True

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
        """:func:`wtsim.oracle.staleness` of a read of ``key`` that began at ``at`` and returned ``version``.

        ``newest`` is the newest version committed when the read began; a
        version became current when it was committed.
        """
        return oracle.staleness(version, newest, lambda v: self.committed_at(key, v), at)


class DecodedCodec:
    """The payload codec of simulated app servers: a value is kept as its :class:`~wtsim.codec.Entry`.

    It stands in for :mod:`wtsim.codec` in each app server's
    :class:`~wtsim.policies.CacheState`, with the same four names, so the
    policies run unchanged and a simulated hit skips ``json.loads``.
    """

    FOREIGN = codec.FOREIGN
    encode_data = staticmethod(codec.encode_data)  # a queued row stays JSON: it travels in a stream

    @staticmethod
    def encode(data: dict, version: int | None = None, delta: float | None = None,
               expires_at: float | None = None) -> Entry:
        return Entry(data=data, version=version, delta=delta, expires_at=expires_at)

    @staticmethod
    def encode_lease(token: str) -> Entry:
        return Entry(data=None, version=None, lease=token)

    @staticmethod
    def decode(raw: Any) -> Entry:
        return raw if type(raw) is Entry else codec.decode(raw)


class SimCache:
    """An in-memory Redis: payloads with TTLs, LRU capacity, and the Lua scripts' semantics."""

    def __init__(self, capacity: int | None = None) -> None:
        self.capacity = capacity
        self.data: OrderedDict[str, tuple[codec.Entry, float]] = OrderedDict()
        self.streams: dict[str, SimStream] = {}
        self.on_queued: Callable[[CacheQueueWrite, int, float], None] | None = None
        """Called as ``(op, version, now)`` when a write-behind write is queued: the oracle listens."""
        self.on_stream_length: Callable[[int], None] | None = None
        """Called with the queue's new length whenever it changes: the timeline listens."""
        self._perform = {
            CacheGet: lambda op, now: self.get(op.key, now),
            CacheSet: lambda op, now: self.set(op.key, op.payload, op.ttl_s, now),
            CacheSetIfNewer: lambda op, now: self.set_if_newer(op.key, op.payload, op.version, op.ttl_s, now),
            CacheDelete: lambda op, now: self.delete(op.keys, now),
            CacheTombstone: lambda op, now: self.tombstone(op.entries, op.ttl_s, now),
            CachePurge: lambda op, now: self.purge(op.key_prefix),
            CacheLease: lambda op, now: self.lease(op.key, op.lease, op.ttl_s, now),
            CacheSetLeased: lambda op, now: self.set_leased(op.key, op.payload, op.lease, op.ttl_s, now),
            CacheQueueWrite: self.queue_write,
            CachePopulate: lambda op, now: self.populate(op.key, op.payload, op.ttl_s, now),
            CacheUnpin: lambda op, now: self.unpin(op.entries, op.ttl_s, now),
            StreamCreateGroup: lambda op, now: self.stream(op.stream).create_group(op.group),
            StreamRead: lambda op, now: self.stream(op.stream).read(op.group, op.consumer, op.count, op.pending,
                                                                   now),
            StreamClaim: lambda op, now: self.stream(op.stream).claim(op.group, op.consumer, op.min_idle_s,
                                                                     op.count, now),
            StreamAck: self._ack,
            StreamAdd: lambda op, now: self.stream(op.stream).add(dict(op.fields)),
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

    def set(self, key: str, payload: Entry | str, ttl_s: float | None, now: float) -> None:
        """``SET key payload [PX ttl]``, evicting the least recently used entry when full."""
        data = self.data
        data[key] = (DecodedCodec.decode(payload), math.inf if ttl_s is None else now + ttl_s)
        if self.capacity is not None:
            data.move_to_end(key)
            while len(data) > self.capacity:
                oldest = next(iter(data))
                if data[oldest][0].dirty:
                    if not self._evict_clean():
                        break  # every entry is dirty: over capacity, as Redis with nothing evictable
                else:
                    del data[oldest]

    def _evict_clean(self) -> bool:
        """Evict the least recently used entry that is not dirty; ``False`` when there is none."""
        for key, (entry, _) in self.data.items():
            if not entry.dirty:
                del self.data[key]
                return True
        return False

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
        """``FLUSHALL``: the cache restarts empty, its streams (the write-behind queue) too."""
        self.data.clear()
        had_queue = any(len(stream) for stream in self.streams.values())
        self.streams.clear()
        if had_queue and self.on_stream_length is not None:
            self.on_stream_length(0)

    def stream(self, name: str) -> SimStream:
        """The stream called ``name``, created empty when it is first used (as ``XADD`` and ``MKSTREAM`` do)."""
        stream = self.streams.get(name)
        if stream is None:
            stream = self.streams[name] = SimStream()
        return stream

    # -- the Lua scripts of wtsim.scripts -------------------------------------------------------

    def set_if_newer(self, key: str, payload: Entry | str, version: int, ttl_s: float | None, now: float) -> bool:
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
            self.set(key, Entry(data=None, version=version, tombstone=True), ttl_s, now)

    def lease(self, key: str, lease: Entry | str, ttl_s: float, now: float) -> bool | Entry:
        """``LEASE``: store ``lease`` unless a value or a live lease is there; ``True``, or what is there."""
        entry = self.get(key, now)
        if entry is not None and (entry.data is not None or entry.lease is not None):
            return entry
        self.set(key, lease, ttl_s, now)
        return True

    def set_leased(self, key: str, payload: Entry | str, lease: Entry | str, ttl_s: float | None,
                   now: float) -> bool:
        """``SET_LEASED``: store ``payload`` only while ``lease`` is still at ``key``."""
        if self.get(key, now) != DecodedCodec.decode(lease):
            return False
        self.set(key, payload, ttl_s, now)
        return True

    # -- write-behind: the scripts QUEUE_WRITE, POPULATE and UNPIN, and the stream commands --------

    def queue_write(self, op: CacheQueueWrite, now: float) -> QueueAnswer:
        """``QUEUE_WRITE``: a dirty entry without TTL and a stream entry, the version one more than the entry's."""
        stream = self.stream(op.stream)
        if len(stream) >= op.max_pending:
            return QueueAnswer(None, pending=len(stream))
        current = self.get(op.key, now)
        version = None
        if current is not None and current.version is not None and (current.data is not None or current.tombstone):
            version = current.version + 1
        if version is None:
            if op.base_version is None:
                return QueueAnswer(None, need_base=True)
            version = op.base_version + 1
        self.set(op.key, Entry(json.loads(op.data_json), version, dirty=True), None, now)
        stream.add({"ns": op.namespace, "id": op.id_json, "v": str(version), "p": op.data_json})
        if self.on_queued is not None:
            self.on_queued(op, version, now)
        if self.on_stream_length is not None:
            self.on_stream_length(len(stream))
        return QueueAnswer(version)

    def populate(self, key: str, payload: Entry | str, ttl_s: float | None, now: float) -> bool:
        """``POPULATE``: store unless a value, dirty or clean, is there."""
        current = self.get(key, now)
        if current is not None and current.data is not None:
            return False
        self.set(key, payload, ttl_s, now)
        return True

    def unpin(self, entries: tuple[tuple[str, str, str], ...], ttl_s: float | None, now: float) -> int:
        """``UNPIN``: each entry still holding exactly its dirty payload becomes the clean one, with ``ttl_s``."""
        done = 0
        for key, dirty, clean in entries:
            if self.get(key, now) == DecodedCodec.decode(dirty):
                self.set(key, clean, ttl_s, now)
                done += 1
        return done

    def _ack(self, op: StreamAck, now: float) -> int:
        stream = self.stream(op.stream)
        acked = stream.ack(op.group, op.ids)
        if self.on_stream_length is not None and op.ids:
            self.on_stream_length(len(stream))
        return acked

    def served_versions(self, now: float) -> dict[str, int | None]:
        """Each live entry's key -> the version a reader would be served from it, at ``now``.

        ``None`` for what serves no value (a tombstone, a lease). A value's
        version is the entry's (versioned mode, write-behind), else its row's.
        Expired entries are left out; nothing is touched, so the LRU order stays.
        """
        served = {}
        for key, (entry, expires_at) in self.data.items():
            if expires_at <= now:
                continue
            if entry.data is None:
                served[key] = None
            else:
                served[key] = entry.version if entry.version is not None else entry.data.get("version")
        return served

    def __len__(self) -> int:
        return len(self.data)


class World:
    """The database and the cache that every app server of a run shares."""

    def __init__(self, n_keys: int, capacity: int | None, clock: Callable[[], float]) -> None:
        self.db = SimDB(n_keys, clock)
        self.cache = SimCache(capacity)

    def keys_stale_at_rest(self, now: float) -> list[int]:
        """The table keys whose live cache entry is older than their row at ``now``: :func:`wtsim.oracle.stale_at_rest`.

        A cache key is the library's real key of an entity (``wtc:{items:42}``),
        and the entity id is the table key (42), as the simulation names them.
        """
        cached = {int(parse_key(key)[2]): version for key, version in self.cache.served_versions(now).items()}
        committed = {key: self.db.versions[key] for key in cached}
        return oracle.stale_at_rest(cached, committed)
