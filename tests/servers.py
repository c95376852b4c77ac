"""Test helpers for fault tests: a private redis-server, and a proxy that can hang it.

Not a test module. Fault tests must kill, hang or limit Redis, which they may
never do to a shared server, so they start their own:

* :class:`RedisServer` runs ``redis-server`` on a free port of 127.0.0.1 with
  no persistence. ``stop()`` kills it (connections are then refused: "Redis
  down"), ``start()`` brings it back on the same port, empty ("Redis back").
  ``options`` adds settings, e.g. ``("--appendonly", "yes")`` for a server
  that a restart on the same directory reloads.
* :class:`HangProxy` sits in front of a server and forwards bytes both ways
  until ``hang()``; from then on it accepts and reads, but never answers (a
  hung Redis, whose data is still there). ``resume()`` forwards again.

Both are context managers and clean up whatever happens in the test: threads
are daemons, sockets are closed, and the server process is killed by the
context exit, a ``weakref`` finalizer and, on Linux, by the kernel when the
test process dies (``PR_SET_PDEATHSIG``).

When ``redis-server`` is not on PATH, :func:`redis_server_binary` skips the
test, or fails it when ``WTSIM_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import ctypes
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import pytest
import redis

REQUIRE_SERVERS = os.environ.get("WTSIM_REQUIRE_SERVERS") == "1"
HOST = "127.0.0.1"


def redis_server_binary() -> str:
    """The path of ``redis-server``; skip (or fail when servers are required) without it."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not on PATH"
        if REQUIRE_SERVERS:
            pytest.fail(f"{message} (WTSIM_REQUIRE_SERVERS=1)")
        pytest.skip(message)
    return path


def _ephemeral_ports() -> range:
    """The range the kernel takes outgoing connections' local ports from."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


_handed_out: set[int] = set()
_ports = random.Random(os.getpid())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, outside the ephemeral range.

    Binding port 0 would return an ephemeral port, and between choosing it and a
    server listening on it, any outgoing connection (a client, a replica, a
    cluster bus link) may take it as its local port: the server then fails with
    "Address already in use". Ports below the ephemeral range are only ever
    taken by listeners, and this process never hands the same one out twice.
    """
    ephemeral = _ephemeral_ports()
    low, high = (10000, ephemeral.start - 1) if ephemeral.start > 11000 else (ephemeral.stop, 65535)
    for _ in range(1000):
        port = _ports.randint(low, high)
        if port in _handed_out:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{high}")


def _die_with_parent():
    """A ``preexec_fn`` that has the kernel kill the child when the test process dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


def _kill(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.kill()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # pragma: no cover - a kill -9 that did not land
        pass


class RedisServer:
    """A private ``redis-server`` on a free port; ``stop()`` and ``start()`` it at will."""

    def __init__(self, directory: str | Path | None = None, *, port: int | None = None,
                 start_timeout: float = 10.0, options: tuple[str, ...] = ()) -> None:
        self.binary = redis_server_binary()
        self._tmp = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="wtsim-redis-")
            directory = self._tmp.name
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.options = tuple(options)
        self.process: subprocess.Popen | None = None
        self._finalizer: weakref.finalize | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def client(self, **kwargs) -> redis.Redis:
        """A plain, patient client for setting up and inspecting the server (not for the cache)."""
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 5)
        return redis.Redis(host=HOST, port=self.port, **kwargs)

    def start(self) -> "RedisServer":
        """Start the server (again, on the same port) and wait until it answers PING."""
        if self.running:
            return self
        command = [
            self.binary,
            "--port", str(self.port),
            "--bind", HOST,
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
            *self.options,  # last: a setting given twice takes its last value
        ]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent(),
        )
        self._finalizer = weakref.finalize(self, _kill, self.process)
        self._wait_for_ping()
        return self

    def _wait_for_ping(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        probe = redis.Redis(host=HOST, port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server on port {self.port} exited with {self.process.returncode}: "
                        f"{self._log_tail()}"
                    )
                try:
                    if probe.ping():
                        return
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server on port {self.port} did not answer PING in time")
                time.sleep(0.02)
        finally:
            probe.close()

    def _log_tail(self) -> str:
        try:
            return (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Kill the server: from now on connections to its port are refused."""
        if self._finalizer is not None:
            self._finalizer()  # kills and reaps; runs at most once
            self._finalizer = None
        self.process = None

    def close(self) -> None:
        """Stop the server for good and remove its directory if it made one."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> "RedisServer":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisServer port={self.port} {'running' if self.running else 'stopped'}>"


class HangProxy:
    """A TCP proxy in front of a server that can stop answering, as a hung Redis does.

    While forwarding, bytes pass both ways unchanged. After :meth:`hang`, new
    connections are accepted and read from, never answered, and connections
    that were open stop forwarding; a connection that lost bytes to the hang
    stays silent until its client closes it (its protocol stream is broken, as
    with a real hung server). :meth:`resume` forwards again on every connection
    that is still intact and on all new ones.
    """

    POLL_S = 0.05

    def __init__(self, upstream_port: int, *, port: int | None = None) -> None:
        self.upstream_port = upstream_port
        self._hung = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, port or 0))
        self._listener.listen(64)
        self._listener.settimeout(self.POLL_S)
        self.port = self._listener.getsockname()[1]
        self._finalizer = weakref.finalize(self, HangProxy._shutdown, self._closed, self._listener,
                                           self._sockets, self._lock)
        self._spawn(self._accept_loop)

    @classmethod
    def for_server(cls, server: RedisServer) -> "HangProxy":
        """A proxy in front of ``server``."""
        return cls(server.port)

    @property
    def url(self) -> str:
        """The URL a client uses to reach Redis through the proxy."""
        return f"redis://{HOST}:{self.port}/0"

    @property
    def hung(self) -> bool:
        return self._hung.is_set()

    def hang(self) -> None:
        """Stop answering: accept and read, forward nothing."""
        self._hung.set()

    def resume(self) -> None:
        """Forward again."""
        self._hung.clear()

    def close(self) -> None:
        """Close every socket; the proxy threads end within a poll interval."""
        self._finalizer()
        for thread in list(self._threads):
            if thread is not threading.current_thread():
                thread.join(timeout=2)

    def __enter__(self) -> "HangProxy":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    @staticmethod
    def _shutdown(closed: threading.Event, listener: socket.socket, sockets: set, lock: threading.Lock) -> None:
        closed.set()
        listener.close()
        with lock:
            for s in list(sockets):
                _close(s)
            sockets.clear()

    def _spawn(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"hang-proxy-{self.port}")
        self._threads.append(thread)
        thread.start()

    def _track(self, s: socket.socket) -> bool:
        with self._lock:
            if self._closed.is_set():
                _close(s)
                return False
            self._sockets.add(s)
            return True

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # listener closed
            client.settimeout(None)
            if not self._track(client):
                return
            if self._hung.is_set():
                self._spawn(self._black_hole, client)
                continue
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=2)
            except OSError:
                _close(client)  # the server is down: the client sees a reset
                continue
            upstream.settimeout(None)
            if not self._track(upstream):
                return
            broken = threading.Event()  # set when the hang swallowed bytes of this connection
            self._spawn(self._pump, client, upstream, broken)
            self._spawn(self._pump, upstream, client, broken)

    def _readable(self, s: socket.socket) -> bool:
        """Wait up to one poll interval for ``s`` to have bytes (or EOF) to read."""
        return bool(select.select([s], [], [], self.POLL_S)[0])

    def _black_hole(self, client: socket.socket) -> None:
        """Read and discard until the client gives up."""
        while not self._closed.is_set():
            try:
                if not self._readable(client):
                    continue
                if not client.recv(65536):
                    break
            except (OSError, ValueError):
                break
        _close(client)

    def _pump(self, source: socket.socket, sink: socket.socket, broken: threading.Event) -> None:
        while not self._closed.is_set():
            try:
                if not self._readable(source):
                    continue
                data = source.recv(65536)
            except (OSError, ValueError):  # ValueError: select on a socket closed meanwhile
                break
            if not data:
                break
            if self._hung.is_set() or broken.is_set():
                broken.set()
                continue  # swallowed: never answered
            try:
                sink.sendall(data)
            except OSError:
                break
        _close(source)
        _close(sink)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        s.close()
    except OSError:
        pass


class RedisClusterServers:
    """A private Redis Cluster: ``primaries`` primaries with ``replicas`` replicas each, on free ports.

    Each node is a :class:`RedisServer` with ``--cluster-enabled yes`` in a
    directory of its own (its ``nodes-<port>.conf`` survives a ``stop()``, so a
    restarted node rejoins). ``redis-cli --cluster create`` assigns the slots;
    :meth:`wait_ok` polls ``CLUSTER INFO`` until every running node says
    ``cluster_state:ok`` and agrees on who serves all 16384 slots. Closing kills
    every node by its process.
    """

    def __init__(self, directory: str | Path, *, primaries: int = 3, replicas: int = 1,
                 node_timeout_ms: int = 1000, start_timeout: float = 30.0) -> None:
        self.cli = shutil.which("redis-cli")
        if self.cli is None:
            message = "redis-cli is not on PATH"
            if REQUIRE_SERVERS:
                pytest.fail(f"{message} (WTSIM_REQUIRE_SERVERS=1)")
            pytest.skip(message)
        self.directory = Path(directory)
        self.replicas = replicas
        self.start_timeout = start_timeout
        self.nodes: list[RedisServer] = []
        for _ in range(primaries * (1 + replicas)):
            port = free_port()
            self.nodes.append(RedisServer(
                self.directory / f"node-{port}", port=port,
                options=("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                         "--cluster-port", str(free_port()),  # not port + 10000, which may be past 65535
                         "--cluster-node-timeout", str(node_timeout_ms),
                         "--repl-diskless-sync-delay", "0"),  # replicas sync at once, not after 5 s
            ))

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [(HOST, node.port) for node in self.nodes]

    @property
    def url(self) -> str:
        """A URL of one node, which is all a cluster client needs to find the others."""
        return self.nodes[0].url

    def start(self) -> "RedisClusterServers":
        """Start every node, create the cluster and wait until it is ``ok``."""
        for node in self.nodes:
            node.start()
        created = subprocess.run(
            [self.cli, "--cluster", "create", *(f"{HOST}:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=self.start_timeout,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({created.returncode}): "
                               f"{created.stdout[-2000:]}{created.stderr[-2000:]}")
        self.wait_ok()
        deadline = time.monotonic() + self.start_timeout
        while not all(len(self.replicas_of(p)) == self.replicas for p in self.primaries()):
            if time.monotonic() > deadline:
                raise RuntimeError("the replicas did not connect to their primaries in time")
            time.sleep(0.05)
        return self

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def primaries(self) -> list[RedisServer]:
        """The running nodes that are primaries now, by ``ROLE``."""
        found = []
        for node in self.nodes:
            if not node.running:
                continue
            with node.client() as probe:
                if probe.execute_command("ROLE")[0] in (b"master", "master"):
                    found.append(node)
        return found

    def wait_ok(self, timeout: float | None = None) -> None:
        """Poll until every running node reports ``cluster_state:ok`` and the same full slot map."""
        deadline = time.monotonic() + (self.start_timeout if timeout is None else timeout)
        last: object = None
        while True:
            try:
                maps = set()
                for node in self.nodes:
                    if not node.running:
                        continue
                    with node.client(socket_timeout=1, socket_connect_timeout=1) as probe:
                        info = probe.cluster("info")
                        if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                            raise RuntimeError(f"node {node.port}: {info.get('cluster_state')}, "
                                               f"{info.get('cluster_slots_ok')} slots ok")
                        maps.add(tuple(sorted((s[0], s[1], s[2][1]) for s in probe.execute_command("CLUSTER SLOTS"))))
                if len(maps) == 1:
                    return
                last = f"nodes disagree on the slot map: {maps}"
            except (redis.RedisError, RuntimeError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ok in time: {last}")
            time.sleep(0.05)

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The running nodes that replicate ``primary``, by its ``ROLE``."""
        with primary.client() as probe:
            role = probe.execute_command("ROLE")
        ports = {int(entry[1]) for entry in role[2]} if role[0] in (b"master", "master") else set()
        return [n for n in self.nodes if n.port in ports and n.running]

    def wait_failover(self, dead: RedisServer, slot: int, timeout: float = 30.0) -> RedisServer:
        """Poll until the cluster is ok and no running node names ``dead`` as a primary; answer who serves ``slot``."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                self.wait_ok(timeout=0)
                ranges = []
                for node in self.nodes:
                    if node.running:
                        with node.client(socket_timeout=1, socket_connect_timeout=1) as probe:
                            ranges += probe.execute_command("CLUSTER SLOTS")
                if all(int(r[2][1]) != dead.port for r in ranges):
                    return self.node(int(next(r[2][1] for r in ranges if int(r[0]) <= slot <= int(r[1]))))
                last = f"port {dead.port} still serves slots"
            except (redis.RedisError, RuntimeError) as exc:
                last = exc
            if time.monotonic() > deadline:
                raise RuntimeError(f"no replica took over from the node on port {dead.port} in time: {last}")
            time.sleep(0.05)

    def close(self) -> None:
        """Kill every node (by its process)."""
        for node in self.nodes:
            node.close()

    def __enter__(self) -> "RedisClusterServers":
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()
