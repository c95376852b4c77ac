"""Look at what the database and Redis hold, for demos, notebooks and tests.

Teaching a cache means showing both copies side by side after every step:
``peek(cache, session, "products", "p-7")`` reads the row and the raw Redis
entry *around* the cache (the cache's counters do not move), and says in a few
words what each holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy.orm import Session

from . import codec
from .cache import WriteThroughCache
from .models import Product


@dataclass(frozen=True, slots=True)
class Peek:
    """The row in the database and the entry in Redis for one key, side by side."""

    key: str
    db: dict[str, Any] | None
    cached: codec.Entry | None
    ttl_s: int | None
    reachable: bool = True

    @property
    def stale(self) -> bool:
        """True when Redis serves data that differs from the database's row."""
        return self.cached is not None and self.cached.data is not None and self.cached.data != self.db

    def __str__(self) -> str:
        row = "(no row)" if self.db is None else _fields(self.db)
        entry = describe(self.cached, self.ttl_s) if self.reachable else "(Redis unreachable)"
        return f"{'database':<10} {row}\n{'redis':<10} {self.key}  {entry}"


def peek(cache: WriteThroughCache, db: Session, namespace: str, entity_id: str, model: type = Product) -> Peek:
    """Read the row (in a fresh transaction) and the raw Redis entry, bypassing the cache."""
    db.commit()  # end any open transaction so the read sees the latest commits
    row = db.get(model, entity_id, populate_existing=True)
    data = None if row is None else {c.key: getattr(row, c.key) for c in model.__table__.columns}
    db.commit()
    key = cache.key(namespace, entity_id)
    # A plain client on the cache's connections: it sees through FlakyRedis' faults.
    raw_client = redis.Redis(connection_pool=cache.redis.connection_pool)
    try:
        raw = raw_client.get(key)
        ttl = None if raw is None else raw_client.ttl(key)
    except redis.RedisError:
        return Peek(key=key, db=data, cached=None, ttl_s=None, reachable=False)
    return Peek(key=key, db=data, cached=None if raw is None else codec.decode(raw), ttl_s=ttl)


def describe(entry: codec.Entry | None, ttl_s: int | None = None) -> str:
    """An entry in a few words: absent, a tombstone, foreign bytes, or its fields."""
    expiry = "" if ttl_s is None else ("  no TTL" if ttl_s < 0 else f"  TTL {ttl_s} s")
    if entry is None:
        return "(absent)"
    if entry.tombstone:
        return f"tombstone v={entry.version}{expiry}"
    if entry.data is None:
        return "(corrupt or foreign payload)"
    return _fields(entry.data) + expiry


def _fields(data: dict[str, Any]) -> str:
    shown = {k: v for k, v in data.items() if k in ("id", "stock", "version")} or data
    return " ".join(f"{k}={v}" for k, v in shown.items())
