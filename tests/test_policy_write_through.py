"""The write-through policy alone: no Redis, no database, no clock.

The policy is a generator that yields :mod:`wtsim.ops` and is sent results or
thrown failures. Here a scripted :class:`FakeWorld` (a dict for the cache, one
counter row for the database) performs the ops with their documented meaning,
so every decision seen below is the policy's, the same one the real cache and
the simulator make.
"""

from __future__ import annotations

import pytest

from wtsim import CacheRejected, CacheUnavailable, CircuitBreaker, Stepper, codec, drive
from wtsim.keys import entry_key, namespace_prefix
from wtsim.ops import (
    CacheDelete,
    CacheGet,
    CachePurge,
    CacheSet,
    CacheSetIfNewer,
    CacheTombstone,
    DbRead,
    DbWrite,
)
from wtsim.policies import write_through
from wtsim.policies.state import CacheState, PolicyConfig

NS, ID = "counters", "c-1"
KEY = entry_key("wtc", NS, ID)


class FakeWorld:
    """A dict cache and a one-row database that perform ops as the real driver does (TTLs ignored).

    ``fail(op_type, exc)`` makes the next op of that type raise ``exc``; ``down = True``
    makes every cache op raise CacheUnavailable. ``performed`` lists every op in order.
    """

    def __init__(self) -> None:
        self.down = False
        self.cache: dict[str, str] = {}
        self.row = {"id": ID, "count": 0, "version": 1}
        self.commits = 0
        self.performed: list = []
        self._faults: dict[type, list[Exception]] = {}

    def fail(self, op_type: type, exc: Exception) -> None:
        self._faults.setdefault(op_type, []).append(exc)

    def perform(self, op):
        self.performed.append(op)
        faults = self._faults.get(type(op))
        if faults:
            raise faults.pop(0)
        if self.down and not isinstance(op, (DbRead, DbWrite)):
            raise CacheUnavailable("connection refused")
        if isinstance(op, CacheGet):
            value = self.cache.get(op.key)
            return None if value is None else value.encode()
        if isinstance(op, CacheSet):
            self.cache[op.key] = op.payload
            return None
        if isinstance(op, CacheSetIfNewer):
            current = self._entry(op.key)
            if current is not None and current.tombstone and current.version is None:
                return False
            if current is not None and current.version is not None and current.version > op.version:
                return False
            self.cache[op.key] = op.payload
            return True
        if isinstance(op, CacheDelete):
            return sum(self.cache.pop(k, None) is not None for k in op.keys)
        if isinstance(op, CacheTombstone):
            for key, version in op.entries:
                current = self._entry(key)
                if version is not None and current is not None:
                    if current.tombstone and current.version is None:
                        continue
                    if current.version is not None and current.version >= version:
                        continue
                self.cache[key] = codec.encode_tombstone(version)
            return None
        if isinstance(op, CachePurge):
            doomed = [k for k in self.cache if k.startswith(op.key_prefix)]
            for k in doomed:
                del self.cache[k]
            return len(doomed)
        if isinstance(op, DbRead):
            return op.reader(self)
        if isinstance(op, DbWrite):
            saved = dict(self.row)
            try:
                result = op.writer(self)
                self.commits += 1
                return result
            except Exception:
                self.row = saved  # rollback
                raise
        raise TypeError(op)

    def _entry(self, key: str):
        value = self.cache.get(key)
        return None if value is None else codec.decode(value)

    def cache_ops(self) -> list:
        return [op for op in self.performed if not isinstance(op, (DbRead, DbWrite))]


def increment(db):
    db.row = {**db.row, "count": db.row["count"] + 1, "version": db.row["version"] + 1}
    return dict(db.row)


def read_row(db):
    return dict(db.row)


def fails(db):
    raise RuntimeError("deadlock detected")


def state(**config) -> CacheState:
    return CacheState(config=PolicyConfig(**config), breaker=None)


# -- write ---------------------------------------------------------------------------------


def test_write_commits_then_sets_the_cache():
    """DbWrite first, then one CacheSet of the committed row; the writer's value is returned."""
    world, st = FakeWorld(), state()
    result = drive(write_through.write(st, NS, ID, increment, dict), world.perform)
    assert result == {"id": ID, "count": 1, "version": 2}
    assert [type(op) for op in world.performed] == [DbWrite, CacheSet]
    assert world.performed[1] == CacheSet(KEY, codec.encode(result), 3600)
    assert st.stats.db_writes == 1 and st.stats.cache_sets == 1


def test_cache_unavailable_at_the_set_yields_a_delete_then_the_result():
    """Thrown in at the CacheSet, CacheUnavailable makes the policy yield CacheDelete next, then return."""
    st = state()
    policy = write_through.write(st, NS, ID, increment, dict)
    assert isinstance(next(policy), DbWrite)
    committed = {"id": ID, "count": 1, "version": 2}
    assert isinstance(policy.send(committed), CacheSet)
    assert policy.throw(CacheUnavailable("timed out")) == CacheDelete((KEY,))
    with pytest.raises(StopIteration) as stop:
        policy.send(1)  # the delete answered: one key removed
    assert stop.value.value is committed
    assert st.stats.cache_errors == 1 and st.stats.invalidations == 1
    assert not st.suspects


def test_db_error_propagates_and_no_cache_op_is_ever_yielded():
    """A failure thrown in at DbWrite propagates unchanged; the cache is never asked."""
    st = state()
    policy = write_through.write(st, NS, ID, increment, dict)
    assert isinstance(next(policy), DbWrite)
    error = RuntimeError("could not serialize access")
    with pytest.raises(RuntimeError) as raised:
        policy.throw(error)
    assert raised.value is error
    assert st.stats.db_errors == 1 and st.stats.db_writes == 0

    world = FakeWorld()
    world.cache[KEY] = codec.encode({"id": ID, "count": 0, "version": 1})
    with pytest.raises(RuntimeError, match="deadlock"):
        drive(write_through.write(st, NS, ID, fails, dict), world.perform)
    assert [type(op) for op in world.performed] == [DbWrite]
    assert world.row["version"] == 1 and world.commits == 0  # rolled back, cache untouched


def test_cache_rejected_at_the_set_invalidates_too():
    """An error reply (OOM) after the commit is handled like no answer: invalidate, return the result."""
    world, st = FakeWorld(), state()
    world.cache[KEY] = codec.encode({"id": ID, "count": 0, "version": 1})
    world.fail(CacheSet, CacheRejected("OOM command not allowed"))
    result = drive(write_through.write(st, NS, ID, increment, dict), world.perform)
    assert result["count"] == 1
    assert KEY not in world.cache
    assert [type(op) for op in world.performed] == [DbWrite, CacheSet, CacheDelete]


def test_failed_invalidation_remembers_the_key_and_repairs_it_before_the_next_read():
    """Set and delete both fail: the key is remembered and deleted before the next read asks the cache."""
    world, st = FakeWorld(), state()
    world.cache[KEY] = codec.encode({"id": ID, "count": 0, "version": 1})  # v1 cached
    world.fail(CacheSet, CacheUnavailable("reset"))
    world.fail(CacheDelete, CacheUnavailable("reset"))
    assert drive(write_through.write(st, NS, ID, increment, dict), world.perform)["count"] == 1
    assert KEY in st.suspects.keys
    assert world.cache[KEY] == codec.encode({"id": ID, "count": 0, "version": 1})  # still stale

    world.performed.clear()
    assert drive(write_through.read(st, NS, ID, read_row, dict), world.perform)["count"] == 1
    assert world.performed[:2] == [CacheDelete((KEY,)), CacheGet(KEY)]
    assert not st.suspects and st.stats.suspects_repaired == 1


def test_without_outage_repair_the_stale_entry_is_served():
    """outage_repair=False (the article): the remembered key is never repaired, the next read hits v1."""
    world, st = FakeWorld(), state(outage_repair=False)
    world.cache[KEY] = codec.encode({"id": ID, "count": 0, "version": 1})
    world.fail(CacheSet, CacheUnavailable("reset"))
    world.fail(CacheDelete, CacheUnavailable("reset"))
    drive(write_through.write(st, NS, ID, increment, dict), world.perform)
    assert drive(write_through.read(st, NS, ID, read_row, dict), world.perform)["count"] == 0  # stale


def test_serialize_error_after_commit_invalidates_then_raises():
    """serialize raising after the commit: the old entry is deleted, then the exception propagates."""
    world, st = FakeWorld(), state()
    world.cache[KEY] = codec.encode({"id": ID, "count": 0, "version": 1})

    def bad_serialize(row):
        raise TypeError("not JSON")

    with pytest.raises(TypeError, match="not JSON"):
        drive(write_through.write(st, NS, ID, increment, bad_serialize), world.perform)
    assert [type(op) for op in world.performed] == [DbWrite, CacheDelete]
    assert KEY not in world.cache and world.commits == 1


def test_open_breaker_skips_the_cache_and_remembers_written_keys():
    """With the breaker open no cache op is yielded at all; the written key is remembered."""
    now = [0.0]
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=5, clock=lambda: now[0])
    world, st = FakeWorld(), CacheState(config=PolicyConfig(), breaker=breaker)
    world.fail(CacheGet, CacheUnavailable("timed out"))
    drive(write_through.read(st, NS, ID, read_row, dict), world.perform)
    assert breaker.state == "open"
    assert [type(op) for op in world.performed] == [CacheGet, DbRead]  # the populate was skipped

    world.performed.clear()
    assert drive(write_through.write(st, NS, ID, increment, dict), world.perform)["count"] == 1
    assert [type(op) for op in world.performed] == [DbWrite]
    assert KEY in st.suspects.keys

    now[0] = 5.0  # the cool-down is over: the next call probes, repairing first
    world.performed.clear()
    drive(write_through.read(st, NS, ID, read_row, dict), world.perform)
    assert [type(op) for op in world.performed] == [CacheDelete, CacheGet, DbRead, CacheSet]
    assert breaker.state == "closed"


def test_suspects_past_the_limit_purge_the_namespace():
    """More failing keys than max_suspects: the repair purges the namespace instead of the keys."""
    world, st = FakeWorld(), state(max_suspects=2)
    world.down = True
    for i in range(4):
        drive(write_through.write(st, NS, f"c-{i}", increment, dict), world.perform)
    assert not st.suspects.keys and list(st.suspects.namespaces) == [namespace_prefix("wtc", NS)]
    world.down = False
    world.performed.clear()
    drive(write_through.read(st, "other", ID, read_row, dict), world.perform)
    assert world.performed[0] == CachePurge(namespace_prefix("wtc", NS))
    assert st.stats.namespaces_purged == 1


# -- read --------------------------------------------------------------------------------


def test_read_miss_reads_the_db_and_populates_then_hits():
    """A miss reads the DB and populates; the next read is a hit and asks nothing else."""
    world, st = FakeWorld(), state()
    first = drive(write_through.read(st, NS, ID, read_row, dict), world.perform)
    assert [type(op) for op in world.performed] == [CacheGet, DbRead, CacheSet]
    world.performed.clear()
    assert drive(write_through.read(st, NS, ID, read_row, dict), world.perform) == first
    assert [type(op) for op in world.performed] == [CacheGet]
    assert (st.stats.hits, st.stats.misses, st.stats.db_reads) == (1, 1, 1)


def test_read_of_a_missing_row_caches_nothing():
    """db_reader answering None: the read answers None and nothing is cached."""
    world, st = FakeWorld(), state()
    assert drive(write_through.read(st, NS, ID, lambda db: None, dict), world.perform) is None
    assert [type(op) for op in world.performed] == [CacheGet, DbRead]


def test_corrupt_payload_is_a_miss_and_is_overwritten():
    """A foreign payload counts as corrupt, is read around, and is replaced by the DB value."""
    world, st = FakeWorld(), state()
    world.cache[KEY] = "\x80 garbage"
    assert drive(write_through.read(st, NS, ID, read_row, dict), world.perform)["count"] == 0
    assert st.stats.corrupt == 1 and st.stats.misses == 1
    assert codec.decode(world.cache[KEY]).data == world.row


def test_read_survives_an_unavailable_cache():
    """CacheGet failing falls back to the DB; a failed populate is not an error for the caller."""
    world, st = FakeWorld(), state()
    world.fail(CacheGet, CacheUnavailable("refused"))
    world.fail(CacheSet, CacheUnavailable("refused"))
    assert drive(write_through.read(st, NS, ID, read_row, dict), world.perform) == world.row
    assert st.stats.cache_errors == 2 and not st.suspects  # a read leaves nothing stale behind


# -- versioned mode ------------------------------------------------------------------------


def test_versioned_updates_are_compare_and_set_and_invalidations_tombstones():
    """versioned=True: updates are CacheSetIfNewer with the row's version; invalidation is a tombstone."""
    world, st = FakeWorld(), state(versioned=True)
    world.fail(CacheSetIfNewer, CacheUnavailable("reset"))
    drive(write_through.write(st, NS, ID, increment, dict), world.perform)
    set_op, tombstone = world.performed[1:]
    assert isinstance(set_op, CacheSetIfNewer) and set_op.version == 2
    assert tombstone == CacheTombstone(((KEY, 2),), st.config.tombstone_ttl)
    assert codec.decode(world.cache[KEY]) == codec.Entry(data=None, version=2, tombstone=True)


def test_versioned_mode_needs_an_integer_version():
    """A serialized value without an integer version fails, naming the field."""
    world, st = FakeWorld(), state(versioned=True)
    with pytest.raises(ValueError, match="'version'"):
        drive(write_through.read(st, NS, ID, lambda db: {"id": ID}, dict), world.perform)


# -- the races, on the fake world ----------------------------------------------------------


@pytest.mark.parametrize("versioned", [False, True], ids=["naive", "versioned"])
def test_read_populate_race_is_decided_by_the_policy(versioned):
    """Reader holds v1, writer commits and caches v2, reader populates: v1 sticks only when naive."""
    world = FakeWorld()
    reader_state, writer_state = state(versioned=versioned), state(versioned=versioned)
    reader = Stepper(write_through.read(reader_state, NS, ID, read_row, dict), world.perform)
    reader.step()  # CacheGet: miss
    reader.step()  # DbRead: version 1
    Stepper(write_through.write(writer_state, NS, ID, increment, dict), world.perform).run()
    reader.run()
    assert codec.decode(world.cache[KEY]).data["version"] == (2 if versioned else 1)
    assert reader_state.stats.refused_older == (1 if versioned else 0)


@pytest.mark.parametrize("versioned", [False, True], ids=["naive", "versioned"])
def test_concurrent_writer_race_is_decided_by_the_policy(versioned):
    """A commits v2, B commits and caches v3, A caches v2: v2 sticks only when naive."""
    world = FakeWorld()
    a = Stepper(write_through.write(state(versioned=versioned), NS, ID, increment, dict), world.perform)
    a.step()  # DbWrite: v2 committed
    Stepper(write_through.write(state(versioned=versioned), NS, ID, increment, dict), world.perform).run()
    a.run()
    assert world.row["version"] == 3
    assert codec.decode(world.cache[KEY]).data["version"] == (3 if versioned else 2)
