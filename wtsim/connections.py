"""Clients for the two stores, set up for a cache that must fail fast.

A cache that waits is worse than no cache: when Redis hangs, every request
would stall for the socket timeout, and current redis-py by default *retries*
a failed command with backoff, multiplying the stall. :func:`redis_client`
turns both off: short timeouts, no retries. The circuit breaker then decides
when to try again.

:func:`make_engine` builds a SQLAlchemy engine; for SQLite it switches on WAL
so readers do not block the writer, and a busy timeout so concurrent writers
wait instead of failing with "database is locked".

Both Redis factories hand every connection of the client one driver description
(:func:`driver_info`): redis-py 7 and later otherwise look its own version up in
the installed packages' metadata for each new connection, about half a
millisecond of CPU, and a cache that meets a fault opens a new connection for
nearly every request.
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry
from sqlalchemy import Engine, create_engine, event

DEFAULT_DATABASE_URL = "sqlite:///wtsim-demo.db"


@functools.cache
def _shared_driver_info() -> dict[str, Any]:
    try:
        from redis.driver_info import DriverInfo
    except ImportError:  # redis-py before 7: its default lib_version is computed once, at import
        return {}
    return {"driver_info": DriverInfo()}


def driver_info(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with one shared ``driver_info`` (what CLIENT SETINFO sends), unless they name their own."""
    if any(name in kwargs for name in ("driver_info", "lib_name", "lib_version")):
        return kwargs
    return {**_shared_driver_info(), **kwargs}



def redis_client(
    url: str | None = None,
    *,
    socket_timeout: float = 0.25,
    connect_timeout: float = 0.25,
    cluster: bool = False,
    **kwargs: Any,
) -> redis.Redis | RedisCluster:
    """A redis-py client with fail-fast timeouts and no retries.

    ``url=None`` gives an embedded fakeredis server (no Redis needed), which
    runs the Lua scripts of versioned mode too. ``cluster=True`` gives a
    :class:`redis.cluster.RedisCluster` that finds every node from the one in
    ``url`` (``redis://`` or ``rediss://``), with the same timeouts and no retries:
    during a failover a command fails at once (``CacheUnavailable``, the breaker
    opens) instead of being retried behind the caller's back.
    """
    if url is None:
        if cluster:
            raise ValueError("cluster=True needs the url of a cluster node")
        import fakeredis

        return fakeredis.FakeRedis(**kwargs)
    schemes = ("redis://", "rediss://") if cluster else ("redis://", "rediss://", "unix://")
    if not url.startswith(schemes):
        raise ValueError(f"redis url must start with {', '.join(schemes)}, got {url!r}")
    for name, value in (("socket_timeout", socket_timeout), ("connect_timeout", connect_timeout)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    if cluster:
        return RedisCluster.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            **driver_info(kwargs),
        )
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        retry=Retry(NoBackoff(), 0),
        retry_on_timeout=False,
        **driver_info(kwargs),
    )


def make_engine(url: str = DEFAULT_DATABASE_URL, **kwargs: Any) -> Engine:
    """A SQLAlchemy engine for ``url``; SQLite gets WAL mode and a busy timeout."""
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        sqlite_pragmas(engine, in_memory=url in ("sqlite://", "sqlite:///:memory:"))
    return engine


def sqlite_pragmas(engine: Engine, *, in_memory: bool) -> None:
    """Give every new connection of the SQLite ``engine`` a busy timeout, and WAL mode unless ``in_memory``.

    ``engine`` is a synchronous one; for an asyncio engine pass its ``sync_engine``.
    """

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()
