"""Appliers: how a write-behind flusher writes one row, idempotently.

An entry may be delivered twice (a flusher that died after its commit, before
its ack, has its batch redelivered), and batches of different flushers may
commit out of order. So an applier must refuse a version that is not newer
than the row's: :func:`upsert_newer` does it in one statement, ``INSERT ... ON
CONFLICT (pk) DO UPDATE ... WHERE version < excluded.version``, on SQLite and
PostgreSQL (SQLAlchemy's dialect inserts).

:data:`SAMPLE_APPLIERS` is the mapping ``wtsim flush`` uses by default: the
namespace ``products`` written into the sample :class:`~wtsim.models.Product`
table.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy.dialects import postgresql, sqlite

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def upsert_newer(model: Any, version_column: str = "version") -> Callable[[Any, Any, dict, int], bool]:
    """An applier for ``model`` (mapped, one primary key column, an integer ``version_column``).

    ``data`` holds column values by column name; the primary key comes from
    ``entity_id`` and the version from ``version``, whatever ``data`` says. An
    unknown field raises ``ValueError`` (the entry then goes to the dead-letter
    stream rather than being half-written). The applier answers whether it
    wrote the row (``False``: the row already had this version or a newer one).
    Its ``table`` attribute is the table it writes, so a caller can check that
    the table exists before flushing into it.
    """
    table = model.__table__
    keys = list(table.primary_key.columns)
    if len(keys) != 1:
        raise ValueError(f"upsert_newer needs one primary key column; {table.name} has {len(keys)}")
    pk = keys[0]
    if version_column not in table.c:
        raise ValueError(f"version_column {version_column!r} is not a column of {table.name}")
    version_col = table.c[version_column]
    writable = {c.name for c in table.columns} - {pk.name, version_col.name}
    pk_type = pk.type.python_type

    statements: dict[tuple[str, tuple[str, ...]], Any] = {}  # built once per dialect and set of columns

    def statement(dialect: str, names: tuple[str, ...]) -> Any:
        stmt = statements.get((dialect, names))
        if stmt is None:
            insert = _INSERTS.get(dialect)
            if insert is None:
                raise ValueError(f"upsert_newer supports {', '.join(_INSERTS)}; the session's database is {dialect}")
            stmt = insert(table)  # the columns come from the parameters
            stmt = stmt.on_conflict_do_update(
                index_elements=[pk],
                set_={name: stmt.excluded[name] for name in names if name != pk.name},
                where=version_col < stmt.excluded[version_col.name],
            ).execution_options(preserve_rowcount=True)  # SQLAlchemy keeps an INSERT's rowcount only when asked
            statements[(dialect, names)] = stmt
        return stmt

    def apply(session: Any, entity_id: Any, data: dict, version: int) -> bool:
        unknown = set(data) - writable - {pk.name, version_col.name}
        if unknown:
            raise ValueError(f"fields {sorted(unknown)} are not columns of {table.name}; "
                             f"allowed: {sorted(writable)}")
        values = {name: data[name] for name in writable if name in data}
        values[pk.name] = pk_type(entity_id) if pk_type in (int, str) else entity_id
        values[version_col.name] = version
        stmt = statement(session.get_bind().dialect.name, tuple(sorted(values)))
        return session.execute(stmt, values).rowcount == 1

    apply.__name__ = apply.__qualname__ = f"upsert_newer_{table.name}"
    apply.table = table  # type: ignore[attr-defined]
    return apply


def _sample_appliers() -> dict[str, Callable[[Any, Any, dict, int], bool]]:
    from .models import Product

    return {"products": upsert_newer(Product)}


SAMPLE_APPLIERS = _sample_appliers()
"""``{"products": upsert_newer(Product)}``: the default of ``wtsim flush --appliers``."""
