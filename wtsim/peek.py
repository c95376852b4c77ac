"""Look at what the database and Redis hold, for demos, notebooks and tests.

Teaching a cache means showing both copies side by side after every step:
``peek(cache, session, "products", "p-7")`` reads the row and the raw Redis
entry *around* the cache (the cache's counters do not move), and says in a few
words what each holds. :class:`SqlLog` shows how many SQL statements a step
cost: none, for a cache hit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine, event
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


def peek(
    cache: WriteThroughCache, db: Session | Engine, namespace: str, entity_id: str, model: type = Product
) -> Peek:
    """Read the row (in a session of its own) and the raw Redis entry, bypassing the cache.

    ``db`` is a session or an engine; a session only lends its engine, so a
    look never commits, flushes or expires anything of the caller's.
    """
    bind = db.get_bind() if isinstance(db, Session) else db
    with Session(bind) as own:
        row = own.get(model, entity_id)
        data = None if row is None else {c.key: getattr(row, c.key) for c in model.__table__.columns}
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


class SqlLog:
    """Records the SQL statements an engine sends, to show that a hit costs none.

    ``log.count`` is how many so far; ``log.statements`` lists them; use
    ``with log.watch():`` ... ``log.since`` for the ones of one step.
    """

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] = []
        self._mark = 0
        event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.statements.append(" ".join(statement.split()))

    @property
    def count(self) -> int:
        """How many statements were sent so far."""
        return len(self.statements)

    def mark(self) -> None:
        """Start a new step: :attr:`since` lists what is sent from now on."""
        self._mark = len(self.statements)

    @property
    def since(self) -> list[str]:
        """The statements sent since the last :meth:`mark`."""
        return self.statements[self._mark :]
