"""The read path of the patterns that populate on a miss (cache-aside and write-through).

read
    ``CacheGet`` -> on a miss ``DbRead`` -> ``serialize`` -> populate.
    A corrupt or foreign payload is a miss and gets overwritten. A failed
    populate costs the next reader a miss, nothing more.
invalidate
    ``CacheDelete``, or in versioned mode a ``CacheTombstone`` that refuses a
    late populate of an older version.

Leases (``leases=True``; Nishtala et al., "Scaling Memcache at Facebook", NSDI
2013, section 3.2.1)
    A reader that misses asks for a lease (:class:`~wtsim.ops.CacheLease`):
    a token stored *at the entry's key* for ``lease_ttl``. Only the holder
    reads the database and populates, and only while its token is still there
    (:class:`~wtsim.ops.CacheSetLeased`). Because the lease lives at the key, a
    write's update, an invalidation, a flush or a restart replaces or removes it,
    and the late populate of a value read before them is refused: this closes
    what version checks cannot (a newer entry or tombstone that was evicted,
    refused for memory or flushed before an older populate lands). A reader that
    finds another's lease waits ``lease_wait`` and asks again, at most
    ``lease_retries`` times, then reads the database without populating.
    The cost: concurrent readers of a missing key wait for the first. A hit pays
    nothing for leases; a miss pays one round trip, asking for the lease.

Early recompute (``early_recompute_beta``; XFetch: Vattani, Chierichetti and
Lowenstein, "Optimal Probabilistic Cache Stampede Prevention", VLDB 2015)
    A populate stores how long the database read took (``delta``) and when the
    entry expires. A reader that hits recomputes early, as if it had missed,
    when ``now - delta * beta * ln(U) >= expiry``, ``U`` uniform in (0, 1]:
    the closer the expiry and the slower the recompute, the likelier. One reader
    refreshes a hot entry shortly before it expires, instead of hundreds at once
    after. The refresh replaces only the very entry the reader read (its payload
    serves as the lease), so it can never put back a value older than a write,
    an invalidation or a flush that came in between. Entries a write stored
    carry no ``delta`` and are not recomputed early.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable

from ..keys import EntityId, namespace_prefix
from ..ops import CacheLease, CacheSetLeased, CacheUnavailable, Wait
from . import guarded
from .entries import count_update, read_database, ttl_for, update_op, version_of
from .guarded import Policy
from .state import CacheState

log = logging.getLogger("wtsim.policies")


def read(
    state: CacheState,
    namespace: str,
    entity_id: EntityId,
    db_reader: Callable[[Any], Any],
    serialize: Callable[[Any], dict],
    ttl: float | None = None,
) -> Policy:
    """Answer from the cache, or from the database and populate; ``None`` when absent."""
    config, stats, codec = state.config, state.stats, state.codec
    get = state.get_op(namespace, entity_id)  # (memoized: one lookup gives the key and the op)
    key = get.key
    ttl_s = config.default_ttl if ttl is None else ttl_for(config, ttl)  # (the default: no call on the hot path)
    answered, raw = yield from guarded.cache(state, get)
    entry = codec.decode(raw) if answered and raw is not None else None
    early = False
    if entry is not None and entry.data is not None:
        if config.early_recompute_beta is None or not _recompute_early(state, entry):
            stats.hits += 1
            return entry.data
        stats.early_recomputes += 1
        early = True  # this reader refreshes the entry; the others go on hitting it
    elif entry is codec.FOREIGN:
        stats.corrupt += 1
        log.warning("corrupt or foreign payload at %s; reading the database", key)
    lease = None
    if config.leases and answered and not early:
        found, lease = yield from _lease(state, key, held=entry is not None and entry.lease is not None)
        if found is not None:
            stats.hits += 1
            return found
    stats.misses += 1
    started = state.clock()
    result = yield from read_database(state, db_reader)
    if result is None:
        return None
    data = serialize(result)
    version = version_of(config, data)
    if isinstance(raw, CacheUnavailable) and state.breaker is not None:
        return data  # the cache just did not answer: don't pay a second timeout
    if config.leases and lease is None and not early:
        return data  # no lease, no populate: what we read may already be stale
    if config.early_recompute_beta is not None and ttl_s is not None:
        now = state.clock()
        payload = codec.encode(data, version, delta=now - started, expires_at=now + ttl_s)
    else:
        payload = codec.encode(data, version)
    if early:
        # Refresh only the entry this reader read: the raw payload stands in for a lease,
        # so a write, an invalidation, a flush or an expiry since then refuses the refresh.
        answered, stored = yield from guarded.cache(state, CacheSetLeased(key, payload, raw, ttl_s))
        if answered:
            count_update(state, stored)
        return data
    if lease is None:
        answered, stored = yield from guarded.cache(state, update_op(config, key, payload, version, ttl_s))
        if answered:
            count_update(state, stored)
        return data
    answered, stored = yield from guarded.cache(state, CacheSetLeased(key, payload, lease, ttl_s))
    if answered and stored:
        stats.cache_sets += 1
    elif answered:
        stats.lease_refused += 1  # a write, an invalidation or a flush came first: rightly refused
    return data


def invalidate(
    state: CacheState, namespace: str, entity_id: EntityId, version: int | None = None
) -> Policy:
    """Remove the entry; return ``True`` when the cache confirmed it."""
    key = state.key(namespace, entity_id)
    prefix = namespace_prefix(state.config.prefix, namespace)
    return (yield from guarded.invalidate(state, prefix, key, version))


def _recompute_early(state: CacheState, entry: Any) -> bool:
    beta = state.config.early_recompute_beta
    if beta is None or entry.delta is None or entry.expires_at is None:
        return False
    u = 1.0 - state.random()  # uniform in (0, 1], so ln(u) <= 0 is finite
    return state.clock() - entry.delta * beta * math.log(u) >= entry.expires_at


def _lease(state: CacheState, key: str, held: bool) -> Policy:
    """Take the lease on a missing key, waiting while another reader holds it (``held``).

    Answers ``(value, lease)``: the value when it was populated meanwhile, or our
    lease when granted; ``(None, None)`` when the cache failed or the waits ran
    out, which means "read the database, do not populate".
    """
    config, codec, stats = state.config, state.codec, state.stats
    lease = codec.encode_lease(state.new_lease())
    waits = 0
    while True:
        if held:
            if waits == config.lease_retries:
                return None, None
            waits += 1
            stats.lease_waits += 1
            yield Wait(config.lease_wait)
        answered, got = yield from guarded.cache(state, CacheLease(key, lease, config.lease_ttl))
        if not answered:
            return None, None
        if got is True:
            stats.leases_granted += 1
            return None, lease
        entry = codec.decode(got)
        if entry.data is not None:
            return entry.data, None
        held = True  # the script grants unless a value or a live lease is there
