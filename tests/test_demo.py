"""`wtsim demo`: one-line errors, the same story on every run, narration that tells the truth.

* A server that does not answer, a URL SQLAlchemy cannot use, a missing driver:
  one line on stderr, exit code 2, nothing on stdout (checked before scene 1).
* Two runs in a row print the same story on SQLite and PostgreSQL (the demo
  resets its own table, ``wtsim_demo_products``, and touches no other).
* The narration says what the null version, ``cache_skipped`` and the hang
  scene's timeout really are, the timeout read from the client used.
"""

from __future__ import annotations

import functools
import io
import os
import re
import subprocess
import sys
import uuid
from contextlib import redirect_stdout
from pathlib import Path
from urllib.parse import quote

import fakeredis
import pytest
import redis
from sqlalchemy import inspect, select, text, update
from sqlalchemy.orm import Session

from conftest import DATABASE_URL, REDIS_URL, unavailable
from wtsim import demo as demo_module
from wtsim import make_engine, redis_client
from wtsim.cli import main
from wtsim.demo import HANG_S, FlakyRedis, hang_cost, run_demo
from wtsim.models import Product, load_catalog

README = Path(__file__).resolve().parents[1] / "README.md"


def _wtsim(*argv: str, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run ``wtsim ARGV`` in a fresh interpreter in which the modules ``blocked`` cannot be imported."""
    script = (
        "import sys\n"
        f"for name in {blocked!r}:\n"
        "    sys.modules[name] = None  # import raises ModuleNotFoundError, as if not installed\n"
        "from wtsim.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60)


def _demo(*argv: str) -> str:
    """What ``wtsim demo --no-report ARGV`` prints; it must succeed."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(["demo", "--no-report", *argv])
    assert code == 0
    return printed.getvalue()


def _without_timings(out: str) -> str:
    """The output with what a clock decides (milliseconds, TTL seconds) blanked."""
    return re.sub(r"TTL \d+ s", "TTL _ s", re.sub(r"\d+ ms\b", "_ ms", out))


def _scene(out: str, start: str, end: str | None = None) -> str:
    tail = out[out.index(start):]
    return tail[: tail.index(end)] if end else tail


def _hang_reads_ms(out: str) -> list[int]:
    """The milliseconds of the hang scene's reads 1..3 (before the breaker opens)."""
    return [int(ms) for ms in re.findall(r"read [123]\s+p-9 stock=\d+\s+(\d+) ms", out)]


# --- 1. errors: one line, exit code 2, before any scene ----------------------------------------


@pytest.mark.parametrize(
    "argv, blocked, expected",
    [
        pytest.param(["--redis-url", "redis://127.0.0.1:1/0"], (),
                     ["Redis at redis://127.0.0.1:1/0 did not answer PING", "Connection refused",
                      "leave out --redis-url"], id="redis-unreachable"),
        pytest.param(["--database-url", "nonsense://x"], (),
                     ["database nonsense://x: not a URL SQLAlchemy can use", "sqlite:///"], id="no-such-dialect"),
        pytest.param(["--database-url", "not a url"], (),
                     ["not a URL SQLAlchemy can use", "Could not parse"], id="unparsable-url"),
        pytest.param(["--database-url", "postgresql+psycopg://postgres@127.0.0.1:1/test"], (),
                     ["cannot connect to database postgresql+psycopg://postgres@127.0.0.1:1/test",
                      "Connection refused", "start the server"], id="postgres-refuses"),
        pytest.param(["--database-url", "postgresql+pg8000://postgres@127.0.0.1:5432/test"], ("pg8000",),
                     ["its driver pg8000 is not installed", "pip install pg8000",
                      'pip install "wtsim[postgres]" and use postgresql+psycopg://'], id="pg8000-missing"),
        pytest.param(["--database-url", "postgresql+psycopg://postgres@127.0.0.1:5432/test"], ("psycopg",),
                     ['its driver psycopg is not installed: pip install "wtsim[postgres]"'], id="psycopg-missing"),
        pytest.param(["--database-url", "postgresql://postgres@127.0.0.1:5432/test"], ("psycopg",),
                     ['pip install "wtsim[postgres]"'], id="psycopg-missing-default-driver"),
        pytest.param(["--database-url", "sqlite:////nonexistent-wtsim-dir/demo.db"], (),
                     ["cannot connect to database sqlite:////nonexistent-wtsim-dir/demo.db",
                      "check that its folder exists"], id="sqlite-folder-missing"),
    ],
)
def test_a_failed_setup_is_one_line_and_exit_code_2(argv, blocked, expected):
    """Each kind of set-up failure: one `wtsim: error:` line naming it and the fix; no scene printed."""
    proc = _wtsim("demo", "--no-report", *argv, blocked=blocked)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wtsim: error: "), proc.stderr
    for part in expected:
        assert part in lines[0], (part, lines[0])
    assert proc.stdout == ""  # checked before the first scene


def test_a_password_in_a_url_is_not_printed():
    """The error names the URL, with its password replaced by ***."""
    proc = _wtsim("demo", "--no-report", "--database-url", "postgresql+psycopg://postgres:s3cret@127.0.0.1:1/test")
    assert proc.returncode == 2
    assert "s3cret" not in proc.stderr and "postgres:***@127.0.0.1:1/test" in proc.stderr


def test_readme_names_the_extra_before_the_command_that_needs_it():
    """In "Real Redis and PostgreSQL", `pip install "wtsim[postgres]"` comes before the PostgreSQL demo."""
    readme = README.read_text(encoding="utf-8")
    section = _scene(readme, "## Real Redis and PostgreSQL", "\n## ")
    assert 'pip install "wtsim[postgres]"' in section
    assert section.index('pip install "wtsim[postgres]"') < section.index("--database-url postgresql+psycopg://")


# --- 2. the same story on every run -------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path):
    """A SQLite file that already holds the catalog's `products` table, with p-8 at stock 999."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    engine = make_engine(url)
    _plant_products(engine)
    yield url, engine
    engine.dispose()


@pytest.fixture
def postgres_url():
    """A PostgreSQL URL whose search_path is a fresh schema holding a `products` table; dropped after."""
    schema = f"wtsim_demo_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        admin = make_engine(DATABASE_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # driver missing, refused, auth: all mean "not here"
        unavailable(f"PostgreSQL at {DATABASE_URL}", exc)
    sep = "&" if "?" in DATABASE_URL else "?"
    url = f"{DATABASE_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    engine = make_engine(url)
    try:
        _plant_products(engine)
        yield url, engine
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _plant_products(engine) -> None:
    """Another user's `products` table, the one the demo must never touch."""
    load_catalog(engine)
    with Session(engine) as session:
        session.execute(update(Product).where(Product.id == "p-8").values(stock=999))
        session.commit()


def _assert_untouched(engine) -> None:
    assert set(inspect(engine).get_table_names()) == {"products", "wtsim_demo_products"}
    with Session(engine) as session:
        assert session.scalar(select(Product.stock).where(Product.id == "p-8")) == 999


@pytest.mark.parametrize(
    "database, redis_url",
    [
        ("sqlite_url", None),
        pytest.param("postgres_url", None, marks=pytest.mark.real_postgres),
        pytest.param("postgres_url", "real", marks=[pytest.mark.real_postgres, pytest.mark.real_redis]),
    ],
    ids=["sqlite", "postgres", "postgres+redis"],
)
def test_two_runs_in_a_row_tell_the_same_story(request, database, redis_url):
    """Run 2 prints what run 1 printed: the stale p-8 (stock=23) in Redis, the fresh one (7) in the DB."""
    url, engine = request.getfixturevalue(database)
    argv = ["--database-url", url]
    if redis_url:
        request.getfixturevalue("real_redis")  # skips (or fails) when Redis does not answer
        argv += ["--redis-url", REDIS_URL]
    first, second = _demo(*argv), _demo(*argv)
    try:
        for out in (first, second):
            assert "wtsim_demo_products, reset: 300 products" in out
            assert "database   id=p-7 stock=41 version=2" in _scene(out, "1  A write", "2  Reading")
            outage = _scene(out, "While Redis is unreachable", "Redis is back")
            assert "database   id=p-8 stock=7 version=2" in outage
            assert "redis      wtsim-demo:{products:p-8}  id=p-8 stock=23 version=1" in outage  # stale
            back = _scene(out, "Redis is back")
            assert "redis      wtsim-demo:{products:p-8}  id=p-8 stock=7 version=2" in back  # repaired
        assert _without_timings(second) == _without_timings(first)
        _assert_untouched(engine)
    finally:
        if redis_url:
            _delete_demo_keys()


def _delete_demo_keys() -> None:
    client = redis_client(REDIS_URL)
    keys = list(client.scan_iter(match="wtsim-demo:*"))
    if keys:
        client.delete(*keys)


# --- 3. the narration ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_run() -> str:
    """One `wtsim demo --no-report` on the embedded fakeredis and SQLite."""
    return _demo()


def test_output_fits_a_projector(default_run):
    """Every line is under 80 columns."""
    long = [line for line in default_run.splitlines() if len(line) >= 80]
    assert not long, long


def test_the_null_version_is_explained(default_run):
    """The naive payload's `"v":null` is said to mean "not versioned", and what versioned=True would put."""
    write = _scene(default_run, "1  A write", "2  Reading")
    assert '{"v":null,' in write
    assert "v is null: naive mode (versioned=False) does not version" in write
    row_version = re.search(r"database   id=p-7 stock=41 version=(\d+)", write).group(1)
    assert f"versioned=True would put the row's version, {row_version}, there" in write


def test_cache_skipped_is_said_to_count_operations_not_requests(default_run):
    """The note names cache_skipped's own number, and fewer requests than operations."""
    stats = _scene(default_run, "What the cache counted")
    skipped = int(re.search(r"cache_skipped\s+(\d+)\n", stats).group(1))
    assert "cache_skipped counts operations the open breaker kept from Redis, not\n   requests:" in stats
    requests, operations = map(int, re.search(r"(\d+) requests skipped (\d+) of them", stats).groups())
    assert operations == skipped
    assert 0 < requests < operations  # a read skips its GET and its SET


def test_hang_cost_is_the_clients_socket_timeout():
    """A real client's socket_timeout (through FlakyRedis too); fakeredis, with no socket, gets HANG_S."""
    real = redis_client("redis://127.0.0.1:1/0", socket_timeout=0.4)  # builds, does not connect
    assert hang_cost(real)[:2] == (0.4, True) and "socket_timeout is 0.4 s" in hang_cost(real).why
    assert hang_cost(FlakyRedis(real))[:2] == (0.4, True)
    assert hang_cost(redis_client("redis://127.0.0.1:1/0")).seconds == 0.25  # redis_client()'s default
    fake = fakeredis.FakeRedis()
    assert fake.connection_pool.connection_kwargs.get("socket_timeout") != HANG_S  # a number it never uses
    assert hang_cost(fake)[:2] == (HANG_S, False) and "fakeredis has no socket" in hang_cost(fake).why
    untimed = redis.Redis(host="127.0.0.1", port=1, socket_timeout=None)
    assert hang_cost(untimed)[:2] == (HANG_S, False) and "no socket timeout" in hang_cost(untimed).why


def test_on_fakeredis_the_hang_scene_says_what_a_hung_call_costs(default_run):
    """The heading's number is what reads 1-3 took: the simulated hang, not a socket timeout."""
    hang = _scene(default_run, "Redis hangs", "While Redis")
    ms = round(HANG_S * 1000)
    assert f"Redis hangs: each call waits {ms} ms, then times out" in hang
    assert "fakeredis has no socket" in hang and "socket timeout..." not in hang
    reads = _hang_reads_ms(hang)
    assert len(reads) == 3 and all(ms <= t < ms + 150 for t in reads), reads


@pytest.mark.real_redis
@pytest.mark.parametrize("socket_timeout", [None, 0.3], ids=["redis_client-default", "client-0.3s"])
def test_on_a_real_redis_the_hang_scene_uses_the_clients_timeout(real_redis, monkeypatch, socket_timeout):
    """The heading names the socket timeout of the client the demo built, and reads 1-3 last that long."""
    if socket_timeout is not None:
        monkeypatch.setattr(demo_module, "redis_client", functools.partial(redis_client, socket_timeout=socket_timeout))
    printed = io.StringIO()
    try:
        run_demo(redis_url=REDIS_URL, out=printed)
    finally:
        _delete_demo_keys()
    expected = socket_timeout if socket_timeout is not None else 0.25
    ms = round(expected * 1000)
    hang = _scene(printed.getvalue(), "Redis hangs", "While Redis")
    assert f"Redis hangs: each call waits for the {ms} ms socket timeout..." in hang
    assert f"the client's socket_timeout is {expected} s" in hang
    reads = _hang_reads_ms(hang)
    assert len(reads) == 3 and all(ms <= t < ms + 150 for t in reads), reads


def test_a_postgresql_that_never_answers_fails_after_the_connect_timeout(monkeypatch, capsys):
    """A host that accepts and stays silent (packets dropped further on): one line after the timeout, not a stall."""
    import socket
    import threading
    import time

    pytest.importorskip("psycopg")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held = []
    threading.Thread(target=lambda: held.append(listener.accept()), daemon=True).start()
    monkeypatch.setattr(demo_module, "DB_CONNECT_TIMEOUT_S", 2)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{listener.getsockname()[1]}/test"
    started = time.monotonic()
    try:
        assert main(["demo", "--no-report", "--database-url", url]) == 2
    finally:
        listener.close()
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert err.startswith("wtsim: error: cannot connect to database") and err.count("\n") == 1


def test_a_connect_timeout_in_the_url_is_kept():
    assert demo_module._connect_timeout("postgresql+psycopg://u@h/db?connect_timeout=9") == {}
    assert demo_module._connect_timeout("postgresql+psycopg://u@h/db") == {"connect_args": {"connect_timeout": 5}}
    assert demo_module._connect_timeout("sqlite:///x.db") == {}
