"""The asyncio caches seen through the synchronous API, so that the contract suites run over them unchanged.

Not a copy of the tests: :class:`AioWorld` runs a private event loop in a
thread, and :class:`SyncFacade` turns each call of the synchronous API
(``read``, ``write``, ``invalidate``, ``step_read``, ``step_write``) into the
asyncio cache's coroutine, run to its end on that loop. Sessions are adapted:

* the ``db`` of a test on the async driver is the ``sync_session`` of an
  ``AsyncSession`` (expire_on_commit=False); the facade hands the driver that
  ``AsyncSession``, whose ``commit`` and ``rollback`` call the ``sync_session``'s,
  so the ``events`` fixture records them as for the synchronous driver;
* a plain ``Session(engine)`` a test opens gets an ``AsyncSession`` of its own
  on the same database, for the test's lifetime.

A stepper is :class:`wtsim.Stepper` over the same policy, each op performed by
the asyncio driver's ``perform`` on the loop: the interleavings of the race
tests run on the async driver too.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import fakeredis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_session
from sqlalchemy.orm import Session

from wtsim import Stepper
from wtsim.aio import AsyncPolicyCache, async_redis_client


SYNC_ONLY = {
    "test_cache_aside_is_a_policy_cache_of_its_own":
        "checks the synchronous class hierarchy (PolicyCache); tests/test_aio.py checks the asyncio one",
}
"""Contract tests that do not apply to the asyncio driver, with the reason they are skipped."""


class AioWorld:
    """One test's event loop (in a thread), its ``redis.asyncio`` client, engines and sessions."""

    def __init__(self, redis_conn: Any, redis_url: str, async_engine_for: Callable[[Any], AsyncEngine]) -> None:
        self._async_engine_for = async_engine_for
        self._engines: dict[Any, AsyncEngine] = {}
        self._sessions: dict[Session, AsyncSession] = {}
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="wtsim-aio-tests", daemon=True)
        self._thread.start()
        if isinstance(redis_conn, fakeredis.FakeRedis):  # the same embedded server as the test's client
            kw = redis_conn.connection_pool.connection_kwargs
            self.redis = fakeredis.FakeAsyncRedis(host=kw["host"], port=kw["port"], db=kw["db"])
        else:
            self.redis = async_redis_client(redis_url, socket_timeout=2, connect_timeout=2)

    def run(self, coro) -> Any:
        """Run ``coro`` on the loop and answer its value (or raise its exception) here."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def async_engine(self, engine) -> AsyncEngine:
        """The asyncio engine on the database of the synchronous ``engine`` (one per engine)."""
        if engine not in self._engines:
            self._engines[engine] = self._async_engine_for(engine)
        return self._engines[engine]

    def session(self, engine) -> Session:
        """A new ``AsyncSession`` on ``engine``'s database; answers its ``sync_session``, the test's ``db``."""
        adb = AsyncSession(self.async_engine(engine), expire_on_commit=False)
        self._sessions[adb.sync_session] = adb
        return adb.sync_session

    def adapt(self, db: Any) -> Any:
        """The ``AsyncSession`` to hand the driver for what a test passed as ``db``."""
        if not isinstance(db, Session):
            return db
        proxy = async_session(db)
        if proxy is not None:
            return proxy
        if db not in self._sessions:
            self._sessions[db] = AsyncSession(self.async_engine(db.get_bind()), expire_on_commit=False)
        return self._sessions[db]

    def facade(self, cache: AsyncPolicyCache) -> SyncFacade:
        return SyncFacade(self, cache)

    def close(self) -> None:
        """Close the sessions, dispose of the engines, close the client, stop the loop."""

        async def shut() -> None:
            for adb in self._sessions.values():
                await adb.close()
            for engine in self._engines.values():
                await engine.dispose()
            await self.redis.aclose()

        try:
            self.run(shut())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            self.loop.close()


class SyncFacade:
    """An asyncio cache behind the synchronous API of :class:`wtsim.PolicyCache`; the rest is passed through."""

    def __init__(self, world: AioWorld, cache: AsyncPolicyCache) -> None:
        self._world = world
        self.cache = cache

    def write(self, db, *args, **kwargs):
        return self._world.run(self.cache.write(self._world.adapt(db), *args, **kwargs))

    def read(self, db, *args, **kwargs):
        return self._world.run(self.cache.read(self._world.adapt(db), *args, **kwargs))

    def invalidate(self, *args, **kwargs):
        return self._world.run(self.cache.invalidate(*args, **kwargs))

    def step_read(self, db, namespace, entity_id, db_reader, serialize, ttl=None) -> Stepper:
        policy = self.cache.policy.read(self.cache.state, namespace, entity_id, db_reader, serialize, ttl)
        return self._stepper(policy, db)

    def step_write(self, db, namespace, entity_id, db_writer, serialize, ttl=None) -> Stepper:
        policy = self.cache.policy.write(self.cache.state, namespace, entity_id, db_writer, serialize, ttl)
        return self._stepper(policy, db)

    def _stepper(self, policy, db) -> Stepper:
        adb = self._world.adapt(db)
        return Stepper(policy, lambda op: self._world.run(self.cache.perform(op, adb)))

    def __getattr__(self, name: str) -> Any:  # stats, state, config, key, policy, ...
        return getattr(self.cache, name)

    def __repr__(self) -> str:
        return repr(self.cache)
