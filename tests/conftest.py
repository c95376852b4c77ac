"""Shared fixtures: every cache test runs over each backend pair.

Backends: fakeredis (always) and a real Redis; SQLite (always) and PostgreSQL.
The contract suites also run on a private Redis Cluster (three primaries, three
replicas) that the session starts on free ports (``cluster_redis``).
A real server that does not answer makes its tests *skip* on a laptop, but
*fail* when ``WTSIM_REQUIRE_SERVERS=1`` (CI sets it), as in dogpile.cache's
fixtures. Where the servers are:

* ``WTSIM_REDIS_URL``     default ``redis://127.0.0.1:6379/0``
* ``WTSIM_DATABASE_URL``  default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``

Tests on a shared real Redis use a unique key prefix and delete their keys;
tests on PostgreSQL use a schema of their own, dropped at the end.

The contract suites also run over the asyncio driver (:mod:`wtsim.aio`): they
override ``driver`` with :data:`DRIVERS`, and on ``async`` the ``db``,
``make_cache`` and their own factories hand out the asyncio caches behind a
synchronous facade (``tests/aio_facade.py``), on fakeredis or the real Redis,
over aiosqlite or psycopg's asyncio; Redis Cluster is synchronous only.
"""

from __future__ import annotations

import os
import uuid

import fakeredis
import pytest
import redis
from sqlalchemy import text
from sqlalchemy.orm import Session

from aio_facade import SYNC_ONLY, AioWorld
from servers import RedisClusterServers, RedisServer, redis_server_binary
from wtsim import WriteThroughCache, make_engine, redis_client
from wtsim.models import Base, load_catalog

REQUIRE_SERVERS = os.environ.get("WTSIM_REQUIRE_SERVERS") == "1"
REDIS_URL = os.environ.get("WTSIM_REDIS_URL", "redis://127.0.0.1:6379/0")
DATABASE_URL = os.environ.get("WTSIM_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_SCHEMA = f"wtsim_test_{os.getpid()}"
"""The schema of this test run on PostgreSQL."""


def unavailable(what: str, why: object) -> None:
    """Skip, or fail when the environment says the server must be there."""
    message = f"{what} not reachable: {why}"
    if REQUIRE_SERVERS:
        pytest.fail(f"{message} (WTSIM_REQUIRE_SERVERS=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def real_redis() -> redis.Redis:
    """A client of the real Redis named by WTSIM_REDIS_URL."""
    client = redis_client(REDIS_URL, socket_timeout=2, connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        unavailable(f"Redis at {REDIS_URL}", exc)
    return client


@pytest.fixture(scope="session")
def postgres_engine():
    """An engine on PostgreSQL whose search_path is a schema of this test run."""
    schema = PG_SCHEMA
    try:
        admin = make_engine(DATABASE_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    except Exception as exc:  # driver missing, refused, auth: all mean "not here"
        unavailable(f"PostgreSQL at {DATABASE_URL}", exc)
    engine = make_engine(DATABASE_URL, connect_args={"options": f"-csearch_path={schema}"})
    yield engine
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_cluster_servers(tmp_path_factory):
    """A private Redis Cluster of six nodes (three primaries, three replicas), killed at the end."""
    redis_server_binary()  # skips, or fails when servers are required
    with RedisClusterServers(tmp_path_factory.mktemp("cluster")) as servers:
        yield servers


@pytest.fixture(scope="session")
def cluster_redis(redis_cluster_servers):
    """A :class:`redis.cluster.RedisCluster` client of the private cluster (patient timeouts, no retries)."""
    client = redis_client(redis_cluster_servers.url, cluster=True, socket_timeout=2, connect_timeout=2)
    yield client
    client.close()


REDIS_BACKENDS = ["fakeredis", pytest.param("redis", marks=pytest.mark.real_redis)]
WITH_CLUSTER = [*REDIS_BACKENDS, pytest.param("cluster", marks=pytest.mark.redis_server)]
"""The params of ``redis_conn``; a suite that also runs on Redis Cluster overrides it with these."""


def redis_backend(request) -> redis.Redis:
    """The client for ``request.param``: fakeredis, the real Redis or the private cluster."""
    if request.param == "fakeredis":
        return fakeredis.FakeRedis()
    if request.param == "cluster":
        return request.getfixturevalue("cluster_redis")
    return request.getfixturevalue("real_redis")


@pytest.fixture(params=REDIS_BACKENDS)
def redis_conn(request) -> redis.Redis:
    """A Redis client: an embedded fakeredis, or the real server."""
    return redis_backend(request)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.real_postgres)])
def engine(request, tmp_path):
    """An engine with the products table freshly loaded from the sample catalog."""
    if request.param == "sqlite":
        eng = make_engine(f"sqlite:///{tmp_path / 'wtsim-test.db'}")
    else:
        eng = request.getfixturevalue("postgres_engine")
    load_catalog(eng, reset=True)
    yield eng
    if request.param == "sqlite":
        eng.dispose()
    else:
        Base.metadata.drop_all(eng)


DRIVERS = ["sync", "async"]
"""The params of ``driver`` in the suites that run over both drivers."""


@pytest.fixture
def driver() -> str:
    """Which driver performs the policies: ``sync`` here; the contract suites override it with DRIVERS."""
    return "sync"


def async_engine_for(engine):
    """An asyncio engine on the same database (and PostgreSQL schema) as the synchronous ``engine``."""
    from wtsim.aio import async_database_url, make_async_engine

    url = engine.url.render_as_string(hide_password=False)
    if engine.dialect.name == "postgresql":
        return make_async_engine(url, connect_args={"options": f"-csearch_path={PG_SCHEMA}"})
    return make_async_engine(async_database_url(url))


@pytest.fixture
def aio(request, driver):
    """On the async driver, the test's :class:`AioWorld` (its loop, client, sessions); ``None`` on sync."""
    if driver == "sync":
        yield None
        return
    if "engine" in request.fixturenames:
        request.getfixturevalue("engine")  # set up first, so torn down after the world's sessions are closed
    world = AioWorld(request.getfixturevalue("redis_conn"), REDIS_URL, async_engine_for)
    yield world
    world.close()


@pytest.fixture
def db(engine, aio):
    """A session on the test database (on the async driver: the sync_session of an AsyncSession)."""
    if aio is not None:
        yield aio.session(engine)
        return
    with Session(engine) as session:
        yield session


@pytest.fixture
def key_prefix(redis_conn):
    """A prefix no other test uses; its keys are deleted afterwards."""
    prefix = f"wtt{uuid.uuid4().hex[:10]}"
    yield prefix
    try:
        keys = list(redis_conn.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            redis_conn.delete(*keys)
    except redis.RedisError:
        pass  # a test that broke the connection on purpose


@pytest.fixture
def make_cache(redis_conn, key_prefix, aio):
    """Factory: ``make_cache(**options)`` builds a WriteThroughCache on ``redis_conn`` (or its asyncio twin)."""

    def make(**options) -> WriteThroughCache:
        options.setdefault("prefix", key_prefix)
        if aio is not None:
            from wtsim.aio import AsyncWriteThroughCache

            return aio.facade(AsyncWriteThroughCache(aio.redis, **options))
        return WriteThroughCache(redis_conn, **options)

    return make


@pytest.fixture(params=[False, True], ids=["naive", "versioned"])
def versioned(request) -> bool:
    """Run the test with versioned=False and with versioned=True."""
    return request.param


@pytest.fixture
def events(db, monkeypatch) -> list[str]:
    """A shared log of calls; the session's commit and rollback write to it."""
    log: list[str] = []
    for name in ("commit", "rollback"):
        original = getattr(db, name)

        def recorded(*args, _name=name, _original=original, **kwargs):
            log.append(f"db.{_name}")
            return _original(*args, **kwargs)

        monkeypatch.setattr(db, name, recorded)
    return log


@pytest.fixture
def server(tmp_path):
    """A private redis-server; killed at the end whatever happens."""
    with RedisServer(tmp_path / "redis") as srv:
        yield srv


@pytest.fixture
def raw(server):
    """A patient client of the private server, to set up and inspect it."""
    client = server.client()
    yield client
    client.close()


REAL_TIME = frozenset({
    "test_load.py", "test_write_behind_crash.py", "test_cluster.py", "test_proxy.py", "test_cache_faults.py",
    "10-the-model-against-reality.ipynb", "10-the-model-against-reality-solutions.ipynb",
})
"""The files whose tests judge real time (live load runs against a CPU budget, timeouts, failovers)."""


def pytest_xdist_make_scheduler(config, log):
    """``make test``'s scheduler (``-n auto --dist loadfile``): the files of :data:`REAL_TIME` as one unit.

    As ``loadfile``, a file's tests run on one worker, in order (a notebook's
    cells share its kernel); the real-time files run one after another, so that
    two live runs never compete for the CPU. :func:`pytest_collection_modifyitems`
    puts them first, and ``--no-loadscope-reorder`` keeps that order: the longest
    unit starts at once.
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class RealTimeTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "real-time" if path.rsplit("/", 1)[-1] in REAL_TIME else path

    return RealTimeTogether(config, log)


def pytest_collection_modifyitems(config, items):
    """Put the real-time files first; run the cluster backend over SQLite only.

    The cluster backend runs over SQLite only: PostgreSQL adds nothing the cluster could break.

    The asyncio driver does not run on Redis Cluster: those combinations are
    dropped too; and the few tests of :data:`aio_facade.SYNC_ONLY` skip on it.
    Its Redis half and its database half are independent code, so it runs on
    the diagonal only: fakeredis with SQLite (aiosqlite), the real Redis with
    PostgreSQL (psycopg's asyncio); every backend of each half is covered.
    """
    kept, dropped = [], []
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        cluster = params.get("redis_conn") == "cluster"
        on_async = params.get("driver") == "async"
        off_diagonal = on_async and (params.get("redis_conn"), params.get("engine")) in (
            ("fakeredis", "postgres"), ("redis", "sqlite"))
        (dropped if off_diagonal or cluster and (params.get("engine") == "postgres" or on_async)
         else kept).append(item)
        if on_async and item.originalname in SYNC_ONLY:
            item.add_marker(pytest.mark.skip(reason=f"asyncio driver: {SYNC_ONLY[item.originalname]}"))
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    kept.sort(key=lambda item: item.path.name not in REAL_TIME)  # stable: each file keeps its order
    items[:] = kept
