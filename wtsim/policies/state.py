"""What a policy remembers between calls: configuration, counters, breaker, keys to repair.

One :class:`CacheState` belongs to one app server: a :class:`wtsim.WriteThroughCache`
instance in the real world, one simulated app server in :mod:`wtsim.sim`. It
holds no connection and does no I/O, so the same object works in both worlds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..breaker import CircuitBreaker


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

    def __post_init__(self) -> None:
        if self.default_ttl is not None and not self.default_ttl > 0:
            raise ValueError(f"default_ttl must be > 0 seconds or None, got {self.default_ttl!r}")
        if not self.tombstone_ttl > 0:
            raise ValueError(f"tombstone_ttl must be > 0 seconds, got {self.tombstone_ttl!r}")
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


@dataclass(slots=True)
class CacheState:
    """Everything one app server's policy remembers. No I/O, no connection."""

    config: PolicyConfig = field(default_factory=PolicyConfig)
    breaker: CircuitBreaker | None = field(default_factory=CircuitBreaker)
    stats: CacheStats = field(default_factory=CacheStats)
    suspects: Suspects | None = None
    repairing: bool = False

    def __post_init__(self) -> None:
        if self.suspects is None:
            self.suspects = Suspects(limit=self.config.max_suspects)
