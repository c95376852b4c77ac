"""The appliers that flusher processes of the crash tests load with ``--appliers crash_appliers:APPLIERS``.

Not a test module. Each flusher process is configured by environment
variables, read at import:

``WTSIM_CRASH_TABLE``     the rows' table (unique per test); every write that took effect is also logged,
                          in the same transaction, in ``<table>_applied``: so a rolled-back batch leaves
                          no trace and the log counts applies exactly
``WTSIM_CRASH_CONSUMER``  the name recorded in that log
``WTSIM_CRASH_BLOCK_AT``  block for good at this call of the process, after creating the file
                          ``WTSIM_CRASH_MARK``: a flusher certainly in the middle of a batch
``WTSIM_CRASH_DELAY_S``   sleep this long in every call: a database slower than the writers

The test process builds the same tables with :func:`models`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from wtsim import upsert_newer

NS = "items"


def models(table: str):
    """``(metadata, Item, Applied)`` for the table ``table`` and its log ``<table>_applied``."""

    class Base(DeclarativeBase):
        metadata = MetaData()

    class Item(Base):
        __tablename__ = table
        id: Mapped[str] = mapped_column(String(64), primary_key=True)
        stock: Mapped[int]
        version: Mapped[int]

    class Applied(Base):
        __tablename__ = f"{table}_applied"
        seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
        item_id: Mapped[str] = mapped_column(String(64))
        version: Mapped[int]
        consumer: Mapped[str] = mapped_column(String(64))

    return Base.metadata, Item, Applied


def _applier(table: str):
    _, item, applied = models(table)
    upsert = upsert_newer(item)
    consumer = os.environ.get("WTSIM_CRASH_CONSUMER", "?")
    block_at = int(os.environ.get("WTSIM_CRASH_BLOCK_AT", "0"))
    mark = os.environ.get("WTSIM_CRASH_MARK")
    delay_s = float(os.environ.get("WTSIM_CRASH_DELAY_S", "0"))
    calls = 0

    def apply(session, entity_id, data, version) -> None:
        nonlocal calls
        calls += 1
        if calls == block_at:
            Path(mark).touch()
            while True:  # until kill -9
                time.sleep(60)
        if delay_s:
            time.sleep(delay_s)
        if upsert(session, entity_id, data, version):
            session.add(applied(item_id=entity_id, version=version, consumer=consumer))

    return apply


_TABLE = os.environ.get("WTSIM_CRASH_TABLE")
APPLIERS = {NS: _applier(_TABLE)} if _TABLE else {}
