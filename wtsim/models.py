"""The sample data model: a mapped ``Product`` and the catalog loader.

``version`` is SQLAlchemy's ``version_id_col``: every UPDATE increments it and
checks the old value in its WHERE clause (optimistic locking). Versioned mode
of the cache uses the same number to order cache updates.
"""

from __future__ import annotations

import csv
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

CATALOG_COLUMNS = ("id", "name", "price_cents", "stock")


class Base(DeclarativeBase):
    """Declarative base of wtsim's sample tables."""


class Product(Base):
    """A product in the sample catalog."""

    __tablename__ = "products"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    price_cents: Mapped[int]
    stock: Mapped[int]
    version: Mapped[int] = mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": version}

    def __repr__(self) -> str:
        return f"Product(id={self.id!r}, name={self.name!r}, stock={self.stock}, version={self.version})"


def product_dict(p: Product) -> dict[str, Any]:
    """Serialize a Product for the cache (JSON-safe, with its version)."""
    return {"id": p.id, "name": p.name, "price_cents": p.price_cents, "stock": p.stock, "version": p.version}


def catalog_path() -> Traversable:
    """The sample catalog, ``data/catalog.csv``, installed with the package as ``wtsim.data``."""
    return files("wtsim.data") / "catalog.csv"


def read_catalog(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The catalog rows as dicts; every field checked, errors name the line and field."""
    path = Path(path) if path is not None else catalog_path()
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != CATALOG_COLUMNS:
            raise ValueError(f"{path}: header must be {','.join(CATALOG_COLUMNS)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            try:
                price, stock = int(row["price_cents"]), int(row["stock"])
            except (TypeError, ValueError):
                raise ValueError(f"{path}:{line}: price_cents and stock must be integers") from None
            if not row["id"] or price < 0 or stock < 0:
                raise ValueError(f"{path}:{line}: id must be non-empty, price_cents and stock >= 0")
            rows.append({"id": row["id"], "name": row["name"], "price_cents": price, "stock": stock})
    return rows


def load_catalog(engine: Engine, path: str | Path | None = None, *, reset: bool = False) -> int:
    """Create the tables and insert the catalog when the table is empty; return the row count."""
    if reset:
        Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        count = session.scalar(select(func.count()).select_from(Product))
        if count:
            return count
        rows = read_catalog(path)
        session.add_all(Product(**row) for row in rows)
        session.commit()
        return len(rows)
