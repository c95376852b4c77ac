"""The database side of a load run: the engine, a session per request, the table's reset and final state.

On PostgreSQL (and any database with an asyncio driver) a request's session
is an ``AsyncSession``: a query awaits the network, and the event loop serves
other requests meanwhile.

On SQLite there is no network to wait for: a point query is a few
microseconds of work in this process. ``aiosqlite`` runs every call in a
thread of its own, and SQLAlchemy's asyncio layer makes several such calls
per query (execute, fetch, the rollback when the connection goes back to the
pool): about 0.5 ms of CPU a query on a small machine, against 0.1 ms for the
same query on a synchronous session. A load run is one Python process, so
that cost would decide which rates it can drive. On SQLite the requests
therefore run their queries inline, on a synchronous ``Session`` wrapped in
:class:`InlineSession`, which answers the three calls the asyncio driver makes
(``run_sync``, ``commit``, ``rollback``). The policies and the driver are the
same either way.
"""

from __future__ import annotations

from typing import Any, Callable

from sqlalchemy.orm import Session, sessionmaker

from . import table


class InlineSession:
    """A synchronous ``Session`` with the asyncio driver's ``run_sync``, ``commit``, ``rollback``, ``close``."""

    __slots__ = ("sync_session",)

    def __init__(self, session: Session) -> None:
        self.sync_session = session

    async def run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.sync_session, *args)

    async def commit(self) -> None:
        self.sync_session.commit()

    async def rollback(self) -> None:
        self.sync_session.rollback()

    async def close(self) -> None:
        self.sync_session.close()

    async def __aenter__(self) -> "InlineSession":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.sync_session.close()


async def serve(cache: Any, policy: Any, sessions: Callable[[], Any], watch: Any = None) -> Any:
    """Run ``policy`` on ``cache``'s driver; each database op on a session of its own, closed right after.

    A session holds its connection from its first query until it is closed; a
    request that kept it while it awaits Redis would hold a pool connection
    that the model (a connection per database op) does not, and an inline
    session waiting for a connection would block the event loop for good.
    ``watch``, if given, has ``before(op)``, ``after(op, value)`` and
    ``failed(op, error)``: a load run counts and stamps each op with them.
    """
    from ..aio import adrive
    from ..ops import DbRead, DbWrite

    async def perform(op: Any) -> Any:
        if watch is not None:
            watch.before(op)
        database = type(op) is DbRead or type(op) is DbWrite
        session = sessions() if database else None
        try:
            value = await cache.perform(op, session)
        except Exception as exc:
            if watch is not None:
                watch.failed(op, exc)
            raise
        finally:
            if session is not None:
                await session.close()
        if watch is not None:
            watch.after(op, value)
        return value

    return await adrive(policy, perform)


class Database:
    """The run's database: ``session()`` for each database op, ``reset``/``versions`` of its table."""

    def __init__(self, url: str, connections: int) -> None:
        from sqlalchemy.engine import make_url

        self.url = url
        self.inline = make_url(url).get_backend_name() == "sqlite"
        pool = {} if _in_memory(url) else {"pool_size": connections, "max_overflow": 0}
        if self.inline:
            from ..connections import make_engine

            self.engine: Any = make_engine(url, **pool)
            factory = sessionmaker(self.engine, expire_on_commit=False)
            self.session: Callable[[], Any] = lambda: InlineSession(factory())
        else:
            from sqlalchemy.ext.asyncio import async_sessionmaker

            from ..aio import async_database_url, make_async_engine

            self.engine = make_async_engine(async_database_url(url), **pool)
            self.session = async_sessionmaker(self.engine, expire_on_commit=False)

    @property
    def sync_engine(self) -> Any:
        """The synchronous engine (for an asyncio one, the engine it wraps): what ``db-down`` on SQLite gates."""
        return getattr(self.engine, "sync_engine", self.engine)

    async def reset(self, n_keys: int) -> None:
        """The table as rows 1 .. ``n_keys``, every one at version 1."""
        await self._run(lambda conn: table.reset(conn, n_keys), commit=True)

    async def versions(self) -> dict[int, int]:
        """Every row's version, by key."""
        return await self._run(table.versions, commit=False)

    async def _run(self, fn: Callable[[Any], Any], commit: bool) -> Any:
        if self.inline:
            with (self.engine.begin() if commit else self.engine.connect()) as conn:
                return fn(conn)
        async with (self.engine.begin() if commit else self.engine.connect()) as conn:
            return await conn.run_sync(fn)

    async def dispose(self) -> None:
        if self.inline:
            self.engine.dispose()
        else:
            await self.engine.dispose()


def _in_memory(url: str) -> bool:
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    return parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:")
