"""The simulated world: its cache answers like Redis with wtsim's Lua scripts; TTL, LRU and the oracle."""

from __future__ import annotations

import fakeredis
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wtsim import WriteThroughCache, codec
from wtsim.ops import (
    CacheDelete, CacheGet, CacheLease, CachePurge, CacheSet, CacheSetIfNewer, CacheSetLeased, CacheTombstone,
)
from wtsim.sim.world import DecodedCodec, SimCache, SimDB

KEYS = ("wtc:{items:1}", "wtc:{items:2}", "wtc:{other:1}")


def entry(version: int | None) -> str:
    return codec.encode({"id": 1, "version": version}, version)


versions = st.one_of(st.none(), st.integers(min_value=1, max_value=4))
keys = st.sampled_from(KEYS)
tokens = st.sampled_from(("a-1", "b-1"))
ops = st.one_of(
    st.builds(CacheGet, keys),
    st.builds(lambda k, v: CacheSet(k, entry(v), None), keys, versions),
    st.builds(lambda k, v: CacheSetIfNewer(k, entry(v), v, None), keys, st.integers(1, 4)),
    st.builds(lambda es: CacheTombstone(tuple(es), 60.0), st.lists(st.tuples(keys, versions), min_size=1, max_size=3)),
    st.builds(lambda ks: CacheDelete(tuple(ks)), st.lists(keys, min_size=1, max_size=3)),
    st.builds(CachePurge, st.sampled_from(("wtc:{items:", "wtc:{other:"))),
    st.builds(lambda k, raw: CacheSet(k, raw, None), keys, st.sampled_from(("garbage", "[1, 2]", "{}", '{"v": 9}'))),
    st.builds(lambda k, t: CacheLease(k, codec.encode_lease(t), 60.0), keys, tokens),
    st.builds(lambda k, v, t: CacheSetLeased(k, entry(v), codec.encode_lease(t), None), keys, versions, tokens),
)


def _normalise(answer):
    """Redis answers bytes, the sim cache keeps them decoded: compare decoded entries."""
    return codec.decode(answer) if isinstance(answer, (bytes, str)) else answer


@settings(max_examples=150, deadline=None)
@given(st.lists(ops, min_size=1, max_size=12))
def test_sim_cache_answers_like_redis_with_the_lua_scripts(sequence):
    """Any sequence of cache ops gets the same answers and leaves the same payloads in SimCache as in Redis."""
    real = WriteThroughCache(fakeredis.FakeRedis())
    sim = SimCache()
    for op in sequence:
        assert _normalise(real.perform(op, None)) == sim.apply(op, now=1.0), op
    for key in KEYS:
        assert _normalise(real.redis.get(key)) == sim.get(key, now=1.0), key


@pytest.mark.parametrize(
    ("present", "version", "stored"),
    [
        (None, 2, True),  # nothing there
        (entry(1), 2, True),  # older entry
        (entry(2), 2, True),  # same version: stored (the Lua script refuses only newer)
        (entry(3), 2, False),  # newer entry
        (codec.encode_tombstone(3), 2, False),  # newer tombstone
        (codec.encode_tombstone(2), 2, True),  # tombstone of the same version
        (codec.encode_tombstone(None), 9, False),  # tombstone of unknown version refuses everything
        (entry(None), 1, True),  # an unversioned (naive) entry has no version to compare
        ("not json", 1, True),  # a corrupt payload is overwritten
    ],
)
def test_set_if_newer_cases_match_redis(present, version, stored):
    """CacheSetIfNewer stores or refuses exactly as the SET_IF_NEWER Lua script does."""
    real, sim = WriteThroughCache(fakeredis.FakeRedis()), SimCache()
    key = KEYS[0]
    if present is not None:
        real.perform(CacheSet(key, present, None), None)
        sim.set(key, present, None, now=0.0)
    op = CacheSetIfNewer(key, entry(version), version, None)
    assert real.perform(op, None) is stored
    assert sim.apply(op, now=0.0) is stored
    assert _normalise(real.redis.get(key)) == sim.get(key, now=0.0)


@pytest.mark.parametrize(
    ("present", "version", "replaced"),
    [
        (None, 2, True),
        (entry(1), 2, True),
        (entry(2), 2, False),  # an entry at least as new covers the invalidation
        (entry(3), 2, False),
        (codec.encode_tombstone(2), 2, False),
        (codec.encode_tombstone(1), 2, True),
        (codec.encode_tombstone(None), 2, False),
        (entry(5), None, True),  # an unknown version always writes the tombstone
    ],
)
def test_tombstone_cases_match_redis(present, version, replaced):
    """CacheTombstone keeps what already covers the version, and otherwise writes, as the TOMBSTONE script."""
    real, sim = WriteThroughCache(fakeredis.FakeRedis()), SimCache()
    key = KEYS[0]
    if present is not None:
        real.perform(CacheSet(key, present, None), None)
        sim.set(key, present, None, now=0.0)
    op = CacheTombstone(((key, version),), 5.0)
    real.perform(op, None), sim.apply(op, now=0.0)
    now = sim.get(key, now=0.0)
    assert _normalise(real.redis.get(key)) == now
    assert now == codec.decode(codec.encode_tombstone(version) if replaced else present)


def test_ttl_expires_and_hits_do_not_extend_it():
    """An entry set with a TTL is gone at set time + TTL, however often it was read meanwhile."""
    cache = SimCache()
    cache.set("k", entry(1), 2.0, now=10.0)
    assert cache.get("k", now=11.0).version == 1
    assert cache.get("k", now=11.999).version == 1
    assert cache.get("k", now=12.0) is None
    assert len(cache) == 0  # dropped when touched


def test_plain_set_clears_an_old_ttl():
    """SET without a TTL makes the entry permanent, as in Redis."""
    cache = SimCache()
    cache.set("k", entry(1), 1.0, now=0.0)
    cache.set("k", entry(2), None, now=0.5)
    assert cache.get("k", now=1000.0).version == 2


def test_entries_are_kept_decoded():
    """A GET answers the stored envelope decoded; the simulator's codec passes that Entry through."""
    cache = SimCache()
    cache.set("k", entry(3), None, now=0.0)
    got = cache.get("k", now=0.0)
    assert got == codec.decode(entry(3)) and DecodedCodec.decode(got) is got
    assert DecodedCodec.encode({"id": 1, "version": 3}, 3) == got  # no JSON on the way in either


def test_lease_is_granted_once_and_voided_by_a_set():
    """LEASE grants one holder; a second asker gets the lease back; a SET in between voids it."""
    cache = SimCache()
    mine, theirs = DecodedCodec.encode_lease("a-1"), DecodedCodec.encode_lease("b-1")
    assert cache.apply(CacheLease("k", mine, 2.0), now=0.0) is True
    assert cache.apply(CacheLease("k", theirs, 2.0), now=0.1) == mine
    cache.set("k", entry(2), None, now=0.2)  # a writer's update lands first
    assert cache.apply(CacheSetLeased("k", entry(1), mine, None), now=0.3) is False
    assert cache.get("k", now=0.3).version == 2


def test_leased_populate_needs_the_live_lease():
    """The holder populates while its lease lives, not after it expired or another took it."""
    cache = SimCache()
    mine, theirs = DecodedCodec.encode_lease("a-1"), DecodedCodec.encode_lease("b-1")
    assert cache.apply(CacheLease("k", mine, 1.0), now=0.0) is True
    assert cache.apply(CacheSetLeased("k", entry(1), mine, None), now=0.5) is True
    assert cache.apply(CacheLease("j", mine, 1.0), now=0.0) is True
    assert cache.apply(CacheLease("j", theirs, 1.0), now=1.5) is True  # ours expired at 1.0
    assert cache.apply(CacheSetLeased("j", entry(1), mine, None), now=1.6) is False


def test_a_tombstone_gives_way_to_a_lease_but_a_value_does_not():
    """A lease replaces a tombstone (only lease holders populate) but never a value."""
    cache = SimCache()
    lease = DecodedCodec.encode_lease("a-1")
    cache.apply(CacheTombstone((("t", 4),), 5.0), now=0.0)
    assert cache.apply(CacheLease("t", lease, 1.0), now=0.1) is True
    cache.set("v", entry(3), None, now=0.0)
    assert cache.apply(CacheLease("v", lease, 1.0), now=0.1) == cache.get("v", now=0.1)


def test_tombstone_expires_after_its_own_ttl():
    """A tombstone lives tombstone_ttl seconds, then a set goes through again."""
    cache = SimCache()
    cache.apply(CacheTombstone((("k", None),), 5.0), now=0.0)
    assert cache.apply(CacheSetIfNewer("k", entry(1), 1, None), now=4.9) is False
    assert cache.apply(CacheSetIfNewer("k", entry(1), 1, None), now=5.0) is True


def test_lru_evicts_the_least_recently_used():
    """With a capacity, a store evicts the entry touched longest ago; a GET counts as a touch."""
    cache = SimCache(capacity=2)
    cache.set("a", entry(1), None, now=0.0)
    cache.set("b", entry(2), None, now=0.1)
    assert cache.get("a", now=0.2).version == 1  # a is now more recent than b
    cache.set("c", entry(3), None, now=0.3)
    assert list(cache.data) == ["a", "c"]
    cache.set("a", entry(4), None, now=0.4)  # overwriting refreshes recency too
    cache.set("d", entry(5), None, now=0.5)
    assert list(cache.data) == ["a", "d"]


def test_delete_counts_only_live_keys():
    """DEL answers how many keys existed, not counting expired ones."""
    cache = SimCache()
    cache.set("a", "1", None, now=0.0)
    cache.set("b", "2", 1.0, now=0.0)
    assert cache.apply(CacheDelete(("a", "b", "c")), now=2.0) == 1


def test_db_keeps_commit_times_and_judges_staleness():
    """The table remembers when each version was committed; a read of an older version is stale since the next."""
    clock = [0.0]
    db = SimDB(n_keys=2, clock=lambda: clock[0])
    assert db.row(1) == {"id": 1, "version": 1}
    clock[0] = 3.0
    assert db.commit(1) == {"id": 1, "version": 2}
    clock[0] = 5.0
    db.commit(1)
    assert [db.committed_at(1, v) for v in (1, 2, 3)] == [0.0, 3.0, 5.0]
    assert db.staleness(1, version=3, newest=3, at=6.0) is None
    assert db.staleness(1, version=1, newest=3, at=6.0) == pytest.approx(3.0)  # since version 2
    assert db.staleness(1, version=2, newest=3, at=6.0) == pytest.approx(1.0)
