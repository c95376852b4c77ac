"""wtsim.proxy: each fault really happens, measured with a real client.

A private redis-server (never the shared one, except :func:`wtsim.proxy.flush`
on keys of our own prefix) sits behind a :class:`FaultProxy`; a redis-py
client with a connect timeout (``CONNECT_S``) shorter than its socket timeout
(``SOCKET_S``) shows which of the two an op waits. Latencies are measured
with ``perf_counter``; waits for something to happen poll with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import redis

from servers import REQUIRE_SERVERS, RedisServer, free_port
from wtsim import make_engine, redis_client
from wtsim.cli import main
from wtsim.proxy import FaultProxy, ProxyGroup, failing_connections, flush, maxmemory_window, run_schedule
from wtsim.sim import Fault

CONNECT_S = 0.2
SOCKET_S = 0.4
FAST_S = 0.1  # "at once": well under either timeout
DATABASE_URL = os.environ.get("WTSIM_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("WTSIM_REDIS_URL", "redis://127.0.0.1:6379/0")

pytestmark = pytest.mark.redis_server


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    """A private redis-server for the whole module."""
    with RedisServer(tmp_path_factory.mktemp("proxy-redis")) as server:
        yield server


@pytest.fixture
def direct(srv):
    """A patient client straight to the server, to inspect what the ops did; empties it after the test."""
    client = srv.client()
    yield client
    client.flushall()  # our own server
    client.close()


@pytest.fixture
def proxy(srv):
    with FaultProxy("127.0.0.1", 0, "127.0.0.1", srv.port) as p:
        yield p


def client_of(proxy: FaultProxy) -> redis.Redis:
    """The cache's kind of client: short timeouts, no retries."""
    return redis_client(proxy.url, socket_timeout=SOCKET_S, connect_timeout=CONNECT_S)


def timed(op):
    """``(seconds, result or exception)`` of ``op()``."""
    t = time.perf_counter()
    try:
        out = op()
    except Exception as exc:  # noqa: BLE001 - the outcome is what we measure
        out = exc
    return time.perf_counter() - t, out


def wait_until(condition, what: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def about(seconds: float, expected: float) -> bool:
    """Waited ``expected`` (a timeout), give or take scheduling."""
    return expected * 0.9 <= seconds <= expected + 0.15


# -- the modes -----------------------------------------------------------------------------------

def test_ok_forwards_both_ways(proxy, direct):
    c = client_of(proxy)
    assert c.set("k", "v") and c.get("k") == b"v" and direct.get("k") == b"v"
    elapsed, out = timed(c.ping)
    assert out is True and elapsed < FAST_S
    assert proxy.port and proxy.accepted == 1 and proxy.connections == 1


def test_down_refuses_at_once_and_resets_open_connections(proxy, direct):
    c = client_of(proxy)
    c.set("k", "kept")
    proxy.set_mode("down")
    elapsed, out = timed(lambda: c.get("k"))  # an open connection: reset
    assert isinstance(out, redis.ConnectionError) and elapsed < FAST_S, (elapsed, out)
    elapsed, out = timed(client_of(proxy).ping)  # a new one: refused by the kernel
    assert isinstance(out, redis.ConnectionError) and "refused" in str(out).lower() and elapsed < FAST_S
    proxy.set_mode("ok")
    assert c.get("k") == b"kept"  # the data is retained; the client reconnects


def test_unreachable_waits_the_connect_timeout(proxy):
    c = client_of(proxy)
    assert c.ping()
    proxy.set_mode("unreachable")
    # The open connection's packets are lost: its first op waits the socket timeout...
    elapsed, out = timed(c.ping)
    assert isinstance(out, redis.TimeoutError) and about(elapsed, SOCKET_S), (elapsed, out)
    # ...then every op reconnects, and the SYN is dropped: the connect timeout.
    for client in (c, client_of(proxy)):
        elapsed, out = timed(client.ping)
        assert isinstance(out, redis.TimeoutError) and "connecting" in str(out), out
        assert about(elapsed, CONNECT_S), elapsed
    proxy.set_mode("ok")
    elapsed, out = timed(c.ping)
    assert out is True and elapsed < FAST_S


def test_hang_waits_the_socket_timeout_and_the_op_has_no_effect(proxy, direct):
    c = client_of(proxy)
    assert c.ping()
    proxy.set_mode("hang")
    elapsed, out = timed(lambda: c.set("hung", 1))
    assert isinstance(out, redis.TimeoutError) and about(elapsed, SOCKET_S), (elapsed, out)
    other = client_of(proxy)  # a new connection is accepted, then nothing is answered
    elapsed, out = timed(lambda: other.set("hung-too", 1))
    assert isinstance(out, redis.TimeoutError) and "reading" in str(out) and about(elapsed, SOCKET_S), out
    proxy.set_mode("ok")
    assert c.set("after", 1) and other.ping()
    assert direct.get("hung") is None and direct.get("hung-too") is None and direct.get("after") == b"1"


def test_slow_adds_the_delay_and_a_late_answer_still_lands(proxy, direct):
    c = client_of(proxy)
    c.ping()  # connected: the next ones are one round trip each
    base, _ = timed(c.ping)
    proxy.set_mode("slow", 0.1)
    elapsed, out = timed(c.ping)
    assert out is True and 0.1 <= elapsed <= base + 0.1 + 0.05, (base, elapsed)
    proxy.set_mode("slow", 1.0)  # answers after 1 s, past the client's 0.4 s
    sent = time.monotonic()
    elapsed, out = timed(lambda: c.set("late", 1))
    assert isinstance(out, redis.TimeoutError) and about(elapsed, SOCKET_S), (elapsed, out)
    assert direct.get("late") is None  # not there yet: it arrives half the slow round trip after it was sent
    wait_until(lambda: direct.get("late") == b"1", "the late SET to land")
    assert time.monotonic() - sent >= 0.5 * 0.95
    proxy.set_mode("ok")
    assert c.get("late") == b"1"


def test_a_partition_cuts_only_the_named_app_servers(srv):
    with ProxyGroup(2, "127.0.0.1", srv.port) as group:
        cut, fine = (redis_client(url, socket_timeout=SOCKET_S, connect_timeout=CONNECT_S) for url in group.urls)
        assert cut.ping() and fine.ping()
        group.set_mode("unreachable", servers=1)
        assert [p.mode for p in group] == ["unreachable", "ok"]
        elapsed, out = timed(lambda: client_of(group[0]).ping())
        assert isinstance(out, redis.TimeoutError) and about(elapsed, CONNECT_S)
        elapsed, out = timed(fine.ping)
        assert out is True and elapsed < FAST_S
        group.set_mode("ok")
        assert cut.ping() is True  # its connection lost no bytes (it sent nothing while cut): still intact


def test_modes_are_checked():
    with pytest.raises(ValueError, match="one of ok, down"):
        FaultProxy(mode="broken")
    with pytest.raises(ValueError, match="needs a delay"):
        FaultProxy().set_mode("slow")
    with pytest.raises(ValueError, match="slow only"):
        FaultProxy().set_mode("hang", 0.5)
    with pytest.raises(ValueError, match="count >= 1"):
        ProxyGroup(0)


def test_a_server_that_is_down_behind_the_proxy_resets_the_client():
    port = free_port()
    with FaultProxy("127.0.0.1", 0, "127.0.0.1", port) as p:
        elapsed, out = timed(client_of(p).ping)
        assert isinstance(out, redis.ConnectionError) and elapsed < FAST_S


# -- the faults that are not about the network ---------------------------------------------------------

def test_flush_deletes_only_its_prefix_on_the_shared_redis():
    client = redis_client(REDIS_URL, socket_timeout=2, connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if REQUIRE_SERVERS:
            pytest.fail(f"Redis at {REDIS_URL} not reachable: {exc} (WTSIM_REQUIRE_SERVERS=1)")
        pytest.skip(f"Redis at {REDIS_URL} not reachable: {exc}")
    mine, neighbour = f"wtp{uuid.uuid4().hex[:10]}", f"wtp{uuid.uuid4().hex[:10]}"
    try:
        for i in range(1200):
            client.set(f"{mine}:{i}", i)
        client.set(f"{mine}x:1", 1)  # a prefix that merely starts the same is not ours
        client.set(f"{neighbour}:1", 1)
        assert flush(client, mine) == 1200
        assert not list(client.scan_iter(match=f"{mine}:*"))
        assert client.get(f"{mine}x:1") == b"1" and client.get(f"{neighbour}:1") == b"1"
        with pytest.raises(ValueError, match="non-empty key prefix"):
            flush(client, "")
    finally:
        client.delete(f"{mine}x:1", f"{neighbour}:1")
        client.close()


def test_a_maxmemory_window_refuses_writes_not_reads(direct):
    direct.set("k", "v")
    with pytest.raises(ValueError, match="owned=True"):
        with maxmemory_window(direct):
            pass
    old = direct.config_get("maxmemory")["maxmemory"]
    with maxmemory_window(direct, owned=True):
        with pytest.raises(redis.ResponseError, match="maxmemory"):  # redis-py's OutOfMemoryError
            direct.set("new", "x")
        assert direct.get("k") == b"v" and direct.delete("k") == 1
    assert direct.config_get("maxmemory")["maxmemory"] == old
    assert direct.set("new", "x")


def test_failing_connections_make_sqlite_down(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    gate = failing_connections(engine)
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    with gate:
        elapsed, out = timed(lambda: engine.connect())
        assert isinstance(out, OperationalError) and "db-down" in str(out) and elapsed < FAST_S
    with engine.connect() as conn:
        assert conn.execute(text("select 1")).scalar() == 1
    engine.dispose()


# -- a scenario's faults on the wall clock ------------------------------------------------------------

def outcome(client: redis.Redis) -> str:
    try:
        client.ping()
        return "ok"
    except redis.TimeoutError:
        return "timeout"
    except redis.ConnectionError:
        return "refused"


def probe(client: redis.Redis, t0: float, until: float, seen: list) -> None:
    """PING over and over until ``until``; record ``(start, end, outcome)`` in seconds since ``t0``."""
    while (start := time.monotonic() - t0) < until:
        result = outcome(client)
        seen.append((start, time.monotonic() - t0, result))
        time.sleep(0.005)


def test_run_schedule_applies_faults_at_their_times(srv, direct):
    import threading

    direct.set("wts:a", 1)
    direct.set("other:a", 1)
    faults = [Fault("cache-down", 0.2, 0.5), Fault("cache-flush", 0.6), Fault("partition", 0.7, 1.5, servers=1)]
    with ProxyGroup(2, "127.0.0.1", srv.port) as group:
        clients = [redis_client(url, socket_timeout=SOCKET_S, connect_timeout=CONNECT_S) for url in group.urls]
        seen: list[list] = [[], []]
        t0 = time.monotonic()
        threads = [threading.Thread(target=probe, args=(c, t0, 1.8, s)) for c, s in zip(clients, seen)]
        with run_schedule(faults, group, time.monotonic, t0=t0, cache_client=direct, prefix="wts") as runner:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        assert all(p.mode == "ok" for p in group)

    def within(server: int, start: float, end: float) -> list[str]:
        """Outcomes of the ops sent and answered in [start, end] (20 ms off the edges, for the clock)."""
        return [o for s, e, o in seen[server] if start + 0.02 <= s and e <= end - 0.02]

    for server in (0, 1):
        assert set(within(server, 0, 0.2)) == {"ok"}
        assert set(within(server, 0.2, 0.5)) == {"refused"}  # cache-down: both
        assert set(within(server, 0.5, 0.7)) == {"ok"}
    assert set(within(0, 0.7, 1.5)) == {"timeout"}  # the partition cuts server 0 only
    assert set(within(1, 0.7, 1.5)) == {"ok"}
    assert seen[0][-1][2] == "ok" and seen[1][-1][2] == "ok"
    assert direct.get("wts:a") is None and direct.get("other:a") == b"1"  # the flush deleted our prefix only
    assert [what for _, what in runner.log][:2] == ["cache proxy 0: down", "cache proxy 1: down"]


def test_run_schedule_db_down_on_sqlite(tmp_path):
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with run_schedule([Fault("db-down", 0.0, 0.3)], db=engine) as runner:
        wait_until(lambda: runner.log, "the window to open")
        with pytest.raises(OperationalError):
            engine.connect()
        wait_until(lambda: len(runner.log) == 2, "the window to close")
        with engine.connect() as conn:
            assert conn.execute(text("select 1")).scalar() == 1
    engine.dispose()


def test_run_schedule_refuses_what_it_cannot_inject(proxy, direct):
    cases = [
        (Fault("flusher-down", 1.0, 2.0), [proxy], {}, "flusher-down"),
        (Fault("cache-set-fail", 1.0, 2.0), [proxy], {"cache_client": direct}, "cache-set-fail.*owned_redis"),
        (Fault("cache-down", 1.0, 2.0, probability=0.5), [proxy], {}, "cache-down.*probability"),
        (Fault("partition", 1.0, 2.0, servers=2), [proxy], {}, "partition.*2 app servers"),
        (Fault("cache-slow", 1.0, 2.0, factor=3), [proxy], {}, "cache-slow.*rtt_s"),
        (Fault("cache-hang", 1.0, 2.0), [], {}, "cache-hang.*proxies"),
        (Fault("cache-flush", 1.0), [proxy], {}, "cache-flush.*prefix"),
        (Fault("db-down", 1.0, 2.0), [proxy], {}, "db-down.*db"),
    ]
    for fault, proxies, options, message in cases:
        with pytest.raises(ValueError, match=message):
            run_schedule([fault], proxies, **options)


def test_run_schedule_slow_and_set_fail_on_an_owned_server(proxy, direct):
    c = client_of(proxy)
    assert c.ping()  # connected before the window: a new connection's handshake is several round trips
    faults = [Fault("cache-slow", 0.0, 0.6, factor=3), Fault("cache-set-fail", 0.0, 0.6)]
    with run_schedule(faults, proxy, cache_client=direct, owned_redis=True, rtt_s=0.05) as runner:
        wait_until(lambda: len(runner.log) == 2, "both windows to open")
        elapsed, out = timed(c.ping)
        assert out is True and 0.1 <= elapsed <= 0.1 + 0.05  # (3 - 1) * 50 ms added
        elapsed, out = timed(lambda: c.set("x", 1))
        assert isinstance(out, redis.ResponseError) and "maxmemory" in str(out)
        wait_until(lambda: len(runner.log) == 4, "both windows to close")
        assert c.set("x", 1) and proxy.mode == "ok"


# -- PostgreSQL behind the proxy: db-down -------------------------------------------------------------

def test_postgres_behind_a_down_proxy_fails_at_once():
    psycopg = pytest.importorskip("psycopg")
    from sqlalchemy.engine import make_url

    url = make_url(DATABASE_URL)
    params = {"user": url.username or "postgres", "dbname": url.database or "postgres", "connect_timeout": 2}
    if url.password:
        params["password"] = url.password
    try:
        psycopg.connect(host=url.host or "127.0.0.1", port=url.port or 5432, **params).close()
    except psycopg.Error as exc:
        if REQUIRE_SERVERS:
            pytest.fail(f"PostgreSQL at {DATABASE_URL} not reachable: {exc} (WTSIM_REQUIRE_SERVERS=1)")
        pytest.skip(f"PostgreSQL at {DATABASE_URL} not reachable: {exc}")
    with FaultProxy("127.0.0.1", 0, url.host or "127.0.0.1", url.port or 5432) as p:
        conn = psycopg.connect(host="127.0.0.1", port=p.port, **params)
        assert conn.execute("select 1").fetchone() == (1,)
        p.set_mode("down")
        elapsed, out = timed(lambda: psycopg.connect(host="127.0.0.1", port=p.port, **params))
        assert isinstance(out, psycopg.OperationalError) and elapsed < FAST_S, (elapsed, out)
        elapsed, out = timed(lambda: conn.execute("select 1"))  # the open connection was reset
        assert isinstance(out, psycopg.OperationalError) and elapsed < FAST_S, (elapsed, out)
        conn.close()
        p.set_mode("ok")
        with psycopg.connect(host="127.0.0.1", port=p.port, **params) as again:
            assert again.execute("select 1").fetchone() == (1,)


# -- the command -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    ([], "needs --listen"),
    (["--listen", "nohost", "--to", "127.0.0.1:6379"], "must be HOST:PORT"),
    (["--listen", "127.0.0.1:99999", "--to", "127.0.0.1:6379"], "port must be in"),
    (["--listen", "127.0.0.1:0", "--to", "127.0.0.1:0"], "real port"),
    (["--listen", "127.0.0.1:0", "--to", "127.0.0.1:6379", "--mode", "slow"], "needs --delay-ms"),
    (["--listen", "127.0.0.1:0", "--to", "127.0.0.1:6379", "--delay-ms", "-1"], "milliseconds >= 0"),
    (["--listen", "127.0.0.1:0", "--to", "127.0.0.1:6379", "--mode", "stuck"], "invalid choice"),
    (["--listen", "127.0.0.1:0", "--to", "127.0.0.1:6379", "mode", "down"], "unexpected argument"),
    (["--control-to", "FREE"], "needs a command"),
    (["--control-to", "FREE", "status"], "no proxy answers"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    argv = [str(free_port()) if a == "FREE" else a for a in argv]
    with pytest.raises(SystemExit) if message in ("must be HOST:PORT", "port must be in", "real port",
                                                  "milliseconds >= 0", "invalid choice") else _nothing() as exited:
        code = main(["proxy", *argv])
    if exited is not None:
        code = exited.value.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_a_listen_port_in_use_is_one_line(proxy, capsys):
    assert main(["proxy", "--listen", f"127.0.0.1:{proxy.port}", "--to", "127.0.0.1:6379"]) == 2
    err = capsys.readouterr().err
    assert "cannot listen" in err and err.count("\n") == 1


def test_the_command_forwards_and_switches_mode_through_its_control_port(srv, direct, capsys):
    proc = subprocess.Popen(
        [sys.executable, "-m", "wtsim", "proxy", "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{srv.port}",
         "--control", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # the first line says where; it comes before any client can connect
        assert line.startswith("wtsim proxy: 127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        port = int(line.split("127.0.0.1:")[1].split()[0])
        control = line.rsplit(":", 1)[1].strip()
        c = redis_client(f"redis://127.0.0.1:{port}/0", socket_timeout=SOCKET_S, connect_timeout=CONNECT_S)
        assert c.set("via-cli", 1) and direct.get("via-cli") == b"1"

        def control_to(*words):
            """``wtsim proxy --control-to PORT WORDS...``, in this process (a subprocess is tested once)."""
            code = main(["proxy", "--control-to", control, *words])
            out, err = capsys.readouterr()
            return subprocess.CompletedProcess(words, code, out, err)

        done = subprocess.run([sys.executable, "-m", "wtsim", "proxy", "--control-to", control, "mode", "down"],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.startswith("ok mode=down"), done
        elapsed, out = timed(c.ping)
        assert isinstance(out, redis.ConnectionError) and elapsed < FAST_S
        done = control_to("mode", "sideways")
        assert done.returncode == 2 and "one of ok, down" in done.stderr and done.stderr.count("\n") == 1
        done = control_to("mode", "slow", "100")
        assert done.returncode == 0 and "delay_ms=100" in done.stdout
        assert c.ping()  # reconnects (the reset of 'down'): a handshake of several round trips
        elapsed, out = timed(c.ping)
        assert out is True and 0.1 <= elapsed <= 0.15
        assert control_to("mode", "ok").returncode == 0
        assert control_to("status").stdout.startswith("ok mode=ok delay_ms=0 connections=1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_a_half_close_is_passed_on_after_the_data(proxy):
    import socket

    with socket.create_connection(("127.0.0.1", proxy.port), timeout=2) as s:
        s.sendall(b"PING\r\n")
        s.shutdown(socket.SHUT_WR)  # as `printf 'PING\r\n' | nc`: the answer still comes back
        assert s.recv(100) == b"+PONG\r\n"
        assert s.recv(100) == b""  # then Redis closes, and so does the proxy
    wait_until(lambda: proxy.connections == 0, "the proxy to drop the connection")


def test_asyncio_code_switches_modes_without_blocking_its_loop(proxy):
    import asyncio

    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    async def scenario():
        client = aredis.Redis(host="127.0.0.1", port=proxy.port, socket_timeout=SOCKET_S,
                              socket_connect_timeout=CONNECT_S, retry=Retry(NoBackoff(), 0))
        assert await client.ping()
        await proxy.aset_mode("hang")
        t = time.perf_counter()
        with pytest.raises(redis.TimeoutError):
            await client.ping()
        elapsed = time.perf_counter() - t
        await proxy.aset_mode("ok")
        assert await client.ping()
        await client.aclose()
        return elapsed

    assert about(asyncio.run(scenario()), SOCKET_S)
