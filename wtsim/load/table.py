"""The load runner's own table: ``wtsim_load_items``, one row per key, with a version.

A run creates it if needed, and sets every row 1 .. ``n_keys`` back to version
1 before it starts, as the simulator's table starts (it touches no other
table). A write is one ``UPDATE ... SET version = version + 1``: the database
orders concurrent writes of a key, and the new version is what the cache gets.
Reads and writes are Core statements, run in the request's session, so a
request costs one round trip to the database and no ORM bookkeeping.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy import Column, Integer, MetaData, Table, bindparam, delete, insert, select, update

TABLE_NAME = "wtsim_load_items"
NAMESPACE = "items"
"""The cache namespace, as in the simulator: keys are ``<prefix>:{items:42}``."""

metadata = MetaData()
items = Table(
    TABLE_NAME, metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
)

_SELECT = select(items.c.id, items.c.version).where(items.c.id == bindparam("key"))
_BUMP = update(items).where(items.c.id == bindparam("key")).values(version=items.c.version + 1)
_BUMP_RETURNING = _BUMP.returning(items.c.id, items.c.version)


def reader(key: int) -> Callable[[Any], Any]:
    """The ``db_reader`` of ``key``: its row (``id``, ``version``), or ``None``."""
    return lambda session: session.execute(_SELECT, {"key": key}).one_or_none()


def writer(key: int) -> Callable[[Any], Any]:
    """The ``db_writer`` of ``key``: the next version, in the request's transaction."""
    def write(session: Any) -> Any:
        if session.bind.dialect.update_returning:
            return session.execute(_BUMP_RETURNING, {"key": key}).one()
        session.execute(_BUMP, {"key": key})
        return session.execute(_SELECT, {"key": key}).one()
    return write


def serialize(row: Any) -> dict:
    """A row as the cache stores it."""
    return {"id": row.id, "version": row.version}


def reset(connection: Any, n_keys: int, *, batch: int = 5000) -> None:
    """Create the table if needed and make it rows 1 .. ``n_keys``, every one at version 1."""
    metadata.create_all(connection, tables=[items])
    connection.execute(delete(items))
    for first in range(1, n_keys + 1, batch):
        connection.execute(insert(items), [{"id": k, "version": 1}
                                           for k in range(first, min(first + batch, n_keys + 1))])


def versions(connection: Any) -> dict[int, int]:
    """Every row's version, by key: what the database holds at the end of a run."""
    return {row.id: row.version for row in connection.execute(select(items.c.id, items.c.version))}
