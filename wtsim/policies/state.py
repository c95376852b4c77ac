"""What a policy remembers between calls: configuration, counters, breaker, keys to repair.

One :class:`CacheState` belongs to one app server: a :class:`wtsim.WriteThroughCache`
instance in the real world, one simulated app server in :mod:`wtsim.sim`. It
holds no connection and does no I/O, so the same object works in both worlds.
What differs between the worlds is injected here, as ``cachetools`` injects its
timer: the clock, the random source, the key encoding and the payload codec.
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any, Callable

from .. import codec
from ..breaker import CircuitBreaker
from ..keys import EntityId, entry_key
from ..ops import CacheGet


@dataclass(frozen=True, slots=True)
class PolicyConfig:
    """How the write-through policy behaves.

    ``versioned=False`` with ``outage_repair=False`` and no breaker is the
    article's algorithm, races included.
    """

    default_ttl: float | None = 3600
    prefix: str = "wtc"
    versioned: bool = False
    version_field: str = "version"
    outage_repair: bool = True
    tombstone_ttl: float = 5.0
    max_suspects: int = 10_000
    leases: bool = False
    lease_ttl: float = 2.0
    lease_wait: float = 0.05
    lease_retries: int = 20
    early_recompute_beta: float | None = None

    def __post_init__(self) -> None:
        if self.default_ttl is not None and not self.default_ttl > 0:
            raise ValueError(f"default_ttl must be > 0 seconds or None, got {self.default_ttl!r}")
        for name in ("tombstone_ttl", "lease_ttl", "lease_wait"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
        if isinstance(self.lease_retries, bool) or not isinstance(self.lease_retries, int) or self.lease_retries < 0:
            raise ValueError(f"lease_retries must be an integer >= 0, got {self.lease_retries!r}")
        beta = self.early_recompute_beta
        if beta is not None and (isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta > 0):
            raise ValueError(f"early_recompute_beta must be a number > 0, or None for off; got {beta!r}")
        if not isinstance(self.max_suspects, int) or self.max_suspects < 1:
            raise ValueError(f"max_suspects must be an integer >= 1, got {self.max_suspects!r}")
        if not isinstance(self.version_field, str) or not self.version_field:
            raise ValueError("version_field must be a non-empty string")


@dataclass(slots=True)
class CacheStats:
    """Counters, all plain ints. ``hits + misses`` is the number of reads."""

    hits: int = 0
    misses: int = 0
    db_reads: int = 0
    db_writes: int = 0
    db_errors: int = 0
    cache_sets: int = 0
    cache_errors: int = 0
    cache_skipped: int = 0
    invalidations: int = 0
    corrupt: int = 0
    refused_older: int = 0
    suspects_repaired: int = 0
    namespaces_purged: int = 0
    leases_granted: int = 0
    lease_waits: int = 0
    lease_refused: int = 0
    early_recomputes: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a plain dict, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def reset(self) -> None:
        """Set every counter back to zero."""
        for f in fields(self):
            setattr(self, f.name, 0)


@dataclass(slots=True)
class Suspects:
    """Keys whose cache entry may be stale, to invalidate when the cache answers again.

    Memory is bounded: past ``limit`` keys, the namespace of the next key is
    remembered instead of the key, and the repair purges the whole namespace.
    """

    limit: int
    keys: dict[str, int | None] = field(default_factory=dict)
    namespaces: dict[str, None] = field(default_factory=dict)

    def add(self, key: str, version: int | None, namespace_prefix: str) -> None:
        """Remember ``key`` (written at ``version``, when known)."""
        if namespace_prefix in self.namespaces:
            return
        if key in self.keys:
            old = self.keys[key]
            # Keep the newest version known; unknown (None) wins, being the strictest.
            self.keys[key] = None if old is None or version is None else max(old, version)
            return
        if len(self.keys) < self.limit:
            self.keys[key] = version
            return
        self.namespaces[namespace_prefix] = None
        for k in [k for k in self.keys if k.startswith(namespace_prefix)]:
            del self.keys[k]

    def __bool__(self) -> bool:
        return bool(self.keys) or bool(self.namespaces)

    def __len__(self) -> int:
        return len(self.keys) + len(self.namespaces)


def entry_get(prefix: str, namespace: str, entity_id: EntityId) -> CacheGet:
    """The :class:`~wtsim.ops.CacheGet` of an entity's entry: its key is :func:`~wtsim.keys.entry_key`'s."""
    return CacheGet(entry_key(prefix, namespace, entity_id))


@dataclass(slots=True)
class CacheState:
    """Everything one app server's policy remembers, and the few things it is given. No I/O.

    ``clock`` (seconds, shared by all app servers: it dates entries for early
    recompute) and ``random`` (uniform in [0, 1)) are injected, so the simulator
    runs the policy on simulated time and a seeded stream. ``get_of`` gives an
    entity's key, inside the ``CacheGet`` every read sends (:func:`entry_get`; a
    driver memoizes it: hot keys repeat, and one lookup then stands for encoding
    a key and building an op) and ``codec`` wraps values (:mod:`wtsim.codec`;
    the simulator keeps entries decoded).
    ``lease_owner`` names this app server in the lease tokens it takes.
    """

    config: PolicyConfig = field(default_factory=PolicyConfig)
    breaker: CircuitBreaker | None = field(default_factory=CircuitBreaker)
    stats: CacheStats = field(default_factory=CacheStats)
    suspects: Suspects | None = None
    repairing: bool = False
    clock: Callable[[], float] = time.time
    random: Callable[[], float] = field(default_factory=lambda: random.Random().random)
    get_of: Callable[[str, str, EntityId], CacheGet] = entry_get
    codec: Any = codec
    lease_owner: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    leases_taken: int = 0

    def __post_init__(self) -> None:
        if self.suspects is None:
            self.suspects = Suspects(limit=self.config.max_suspects)

    def key(self, namespace: str, entity_id: EntityId) -> str:
        """The cache key of ``(namespace, entity_id)`` under this state's prefix."""
        return self.get_op(namespace, entity_id).key

    def get_op(self, namespace: str, entity_id: EntityId) -> CacheGet:
        """The op that reads ``(namespace, entity_id)``'s entry; its ``key`` is :meth:`key`'s.

        A memoizing ``get_of`` raises a bare ``TypeError`` for an unhashable id:
        :func:`~wtsim.keys.entry_key` then says which argument is wrong.
        """
        try:
            return self.get_of(self.config.prefix, namespace, entity_id)
        except TypeError:
            return entry_get(self.config.prefix, namespace, entity_id)

    def new_lease(self) -> str:
        """A lease token no other request of any app server holds."""
        self.leases_taken += 1
        return f"{self.lease_owner}-{self.leases_taken}"
