"""Faults on the wall clock: a TCP proxy that wtsim starts in front of Redis (or PostgreSQL).

The simulator's fault kinds (:mod:`wtsim.sim.faults`) are injected for real by
putting the server behind a :class:`FaultProxy` and switching its mode, at
any time and from any thread:

``ok``
    Bytes pass both ways unchanged.
``down``
    The listening socket is closed, so the kernel answers a connect with RST
    (the client sees ``ConnectionRefusedError`` after about one round trip),
    and every open connection is reset (its next op fails at once).
``unreachable``
    A true SYN drop, without root: the proxy stops accepting, shrinks its
    listen backlog to 0 and fills it with one connection of its own. Linux
    drops the SYN of a connect to a listener whose accept queue is full, so a
    new connection never completes and the client waits its *connect*
    timeout. Open connections forward nothing any more (their packets are
    lost): the first op on one waits the *socket* timeout, and a client that
    then reconnects waits the connect timeout. (Other kernels may not drop
    the SYN; the tests measure what happens.)
``hang``
    Connections are accepted (new ones too) and kept open, but nothing is
    forwarded in either direction: every op waits the socket timeout and has
    no effect, as the model's ``cache-hang``. Bytes that arrive during the hang
    are discarded, so the connection's protocol stream is broken: when the
    mode changes again such connections are reset.
``slow``
    Every chunk is delayed by ``delay_s / 2`` in each direction, in order: a
    request/answer gains ``delay_s`` (the model's ``cache-slow`` with
    ``delay_s = (factor - 1) * rtt``), and a command reaches the server
    ``delay_s / 2`` after it was sent, even when its client gave up waiting
    and closed the connection meanwhile (an answer that came too late still
    landed).

The model's ``partition`` cuts only some app servers; here each app server
gets a proxy of its own (:class:`ProxyGroup`), and cutting server ``k`` sets
proxy ``k`` to ``unreachable``. The faults that are not about the network
have helpers: :func:`flush` (``cache-flush``: deletes one prefix's keys, never
``FLUSHALL`` on a shared server), :func:`maxmemory_window` (``cache-set-fail``,
on a server you started) and :func:`failing_connections` (``db-down`` on
SQLite). :func:`run_schedule` applies a scenario's faults at their times.

The proxy runs an asyncio loop in a daemon thread of its own, so sync code
uses it as is (``start()``/``stop()`` or ``with``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

OK, DOWN, UNREACHABLE, HANG, SLOW = "ok", "down", "unreachable", "hang", "slow"
MODES = (OK, DOWN, UNREACHABLE, HANG, SLOW)
_SILENT = (UNREACHABLE, HANG)  # open connections forward nothing
_ACCEPTING = (OK, HANG, SLOW)
CHUNK = 65536
BACKLOG = 128
_EOF = object()


def check_mode(mode: str, delay_s: float | None = None) -> float:
    """Validate a mode (and its delay); answer the delay in seconds (0 unless ``slow``)."""
    if mode not in MODES:
        raise ValueError(f"proxy mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != SLOW:
        if delay_s not in (None, 0):
            raise ValueError(f"a delay applies to mode slow only, not {mode}")
        return 0.0
    if delay_s is None or isinstance(delay_s, bool) or not isinstance(delay_s, (int, float)) \
            or not math.isfinite(delay_s) or delay_s < 0:
        raise ValueError(f"mode slow needs a delay >= 0 seconds (added to each round trip), got {delay_s!r}")
    return float(delay_s)


class _Connection:
    """One client connection and its upstream: two pumps, each an ordered queue of (due, chunk)."""

    def __init__(self, proxy: "FaultProxy", client: socket.socket) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: socket.socket | None = None
        self.broken = False  # bytes were swallowed by a hang: the protocol stream is lost
        self.tasks: list[asyncio.Task] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        p = self.proxy
        try:
            up = socket.socket(socket.AF_INET6 if ":" in p.target_host else socket.AF_INET, socket.SOCK_STREAM)
            up.setblocking(False)
            self.upstream = up
            await asyncio.wait_for(loop.sock_connect(up, (p.target_host, p.target_port)), p.connect_timeout_s)
        except (OSError, asyncio.TimeoutError):
            self.reset()  # the server itself is down: the client sees a reset
            return
        for s in (self.client, self.upstream):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.tasks = [asyncio.ensure_future(self._pump(self.client, self.upstream)),
                      asyncio.ensure_future(self._pump(self.upstream, self.client))]
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.close()

    async def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        """Read ``source`` into a queue stamped with due times; a writer delivers them to ``sink`` in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        writer = asyncio.ensure_future(self._deliver(queue, sink))
        try:
            while True:
                try:
                    data = await loop.sock_recv(source, CHUNK)
                except OSError:
                    data = b""
                due = time.monotonic() + self.proxy._delay_s / 2
                queue.put_nowait((due, data or _EOF))
                if not data:
                    break
            await writer
        finally:
            writer.cancel()

    async def _deliver(self, queue: asyncio.Queue, sink: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if data is _EOF:  # the source closed its side: pass the half-close on, after what came before
                with contextlib.suppress(OSError):
                    sink.shutdown(socket.SHUT_WR)
                return
            if self.proxy._mode in _SILENT or self.broken:
                self.broken = True
                continue  # swallowed: never answered, never executed
            try:
                await loop.sock_sendall(sink, data)
            except OSError:  # the sink is gone: so is the connection
                self.close()
                return

    def reset(self) -> None:
        """Close the client with RST (SO_LINGER 0), and the upstream."""
        with contextlib.suppress(OSError):
            self.client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close()

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for s in (self.client, self.upstream):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        self.proxy._connections.discard(self)


class FaultProxy:
    """A TCP proxy ``listen_host:listen_port -> target_host:target_port`` whose mode is a fault.

    ``listen_port=0`` binds a free port (see :attr:`port`); it stays the same
    across modes (``down`` closes the socket, leaving ``down`` binds it again).
    ``delay_s`` is the round trip added in mode ``slow``. Thread-safe:
    :meth:`set_mode` returns once the mode is in effect.
    """

    def __init__(self, listen_host: str = "127.0.0.1", listen_port: int = 0, target_host: str = "127.0.0.1",
                 target_port: int = 6379, *, mode: str = OK, delay_s: float | None = None,
                 connect_timeout_s: float = 5.0) -> None:
        self.listen_host, self.target_host, self.target_port = listen_host, target_host, int(target_port)
        self.connect_timeout_s = connect_timeout_s
        self._delay_s = check_mode(mode, delay_s)
        self._mode = mode
        self._port = int(listen_port)
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self._filler_peers: set = set()
        self._accept_task: asyncio.Task | None = None
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.accepted = 0
        """Connections accepted so far (fillers of ``unreachable`` not counted)."""

    # -- public ------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port the proxy listens on (known after :meth:`start`)."""
        return self._port

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def delay_s(self) -> float:
        return self._delay_s

    @property
    def address(self) -> str:
        return f"{self.listen_host}:{self._port}"

    @property
    def url(self) -> str:
        """``redis://host:port/0`` through the proxy."""
        return f"redis://{self.listen_host}:{self._port}/0"

    @property
    def connections(self) -> int:
        """Client connections open through the proxy now."""
        return len(self._connections)

    def start(self) -> "FaultProxy":
        """Bind, and serve in a daemon thread with its own event loop; raises ``OSError`` if the bind fails."""
        if self._thread is not None:
            return self
        loop = asyncio.new_event_loop()
        ready: list = []
        started = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._open_listener()  # the port is known from now on, whatever the mode
                loop.run_until_complete(self._apply(self._mode, self._delay_s))
                ready.append(None)
            except BaseException as exc:  # the bind failed: report it to start()
                ready.append(exc)
            started.set()
            if ready[0] is None:
                loop.run_forever()
            loop.run_until_complete(self._shutdown())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=serve, daemon=True, name=f"wtsim-proxy-{self.listen_port_hint}")
        self._thread.start()
        started.wait()
        if ready[0] is not None:
            self._thread.join()
            self._thread = self._loop = None
            raise ready[0]
        return self

    @property
    def listen_port_hint(self) -> str:
        return str(self._port or "auto")

    def stop(self) -> None:
        """Close the listener and every connection; the thread ends."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._thread = self._loop = None

    close = stop

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        """Switch to ``mode`` (``delay_s``: the round trip added by ``slow``); in effect when this returns."""
        delay = check_mode(mode, delay_s)
        if self._loop is None:
            self._mode, self._delay_s = mode, delay
            return
        if threading.current_thread() is self._thread:
            raise RuntimeError("from the proxy's own loop, await FaultProxy._apply(mode, delay) instead")
        asyncio.run_coroutine_threadsafe(self._apply(mode, delay), self._loop).result(timeout=10)

    async def aset_mode(self, mode: str, delay_s: float | None = None) -> None:
        """:meth:`set_mode` for asyncio code: awaits, instead of blocking the caller's loop."""
        delay = check_mode(mode, delay_s)
        if self._loop is None:
            self._mode, self._delay_s = mode, delay
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._apply(mode, delay), self._loop))

    def __enter__(self) -> "FaultProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FaultProxy {self.address} -> {self.target_host}:{self.target_port} {self._mode}>"

    # -- on the loop -------------------------------------------------------------------------------

    async def _apply(self, mode: str, delay: float) -> None:
        old = self._mode
        self._mode, self._delay_s = mode, delay
        if mode not in _SILENT:
            for conn in [c for c in self._connections if c.broken]:
                conn.reset()  # lost bytes to a hang: its stream is broken
        if mode == DOWN:
            self._stop_accepting()
            self._close_listener()
            for conn in list(self._connections):
                conn.reset()
            return
        if self._listener is None:
            self._open_listener()
        if mode == UNREACHABLE:
            self._stop_accepting()
            self._fill_backlog()
            return
        if old == UNREACHABLE or self._fillers:
            self._listener.listen(BACKLOG)
            for f in self._fillers:
                with contextlib.suppress(OSError):
                    f.close()
            self._fillers.clear()
        if self._accept_task is None:
            self._accept_task = asyncio.ensure_future(self._accept_loop())

    def _open_listener(self) -> None:
        family = socket.AF_INET6 if ":" in self.listen_host else socket.AF_INET
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.listen_host, self._port))
            s.listen(BACKLOG)
        except OSError:
            s.close()
            raise
        s.setblocking(False)
        self._listener = s
        self._port = s.getsockname()[1]

    def _close_listener(self) -> None:
        for f in self._fillers:
            with contextlib.suppress(OSError):
                f.close()
        self._fillers.clear()
        self._filler_peers.clear()
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._listener = None

    def _stop_accepting(self) -> None:
        if self._accept_task is not None:
            self._accept_task.cancel()
            self._accept_task = None

    def _fill_backlog(self) -> None:
        """Backlog 0 plus one queued connection of our own: the accept queue is full, SYNs are dropped."""
        assert self._listener is not None
        self._listener.listen(0)
        if self._fillers:
            return
        f = socket.socket(self._listener.family, socket.SOCK_STREAM)
        f.setblocking(False)
        with contextlib.suppress(BlockingIOError, InterruptedError):
            f.connect(self._listener.getsockname()[:2])
        with contextlib.suppress(OSError):
            self._filler_peers.add(f.getsockname()[:2])
        self._fillers.append(f)

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        listener = self._listener
        while True:
            try:
                client, peer = await loop.sock_accept(listener)
            except asyncio.CancelledError:
                raise
            except OSError:
                return
            if peer[:2] in self._filler_peers:
                self._filler_peers.discard(peer[:2])
                client.close()
                continue
            client.setblocking(False)
            self.accepted += 1
            conn = _Connection(self, client)
            self._connections.add(conn)
            asyncio.ensure_future(conn.run())

    async def _shutdown(self) -> None:
        self._stop_accepting()
        self._close_listener()
        for conn in list(self._connections):
            conn.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class ProxyGroup:
    """One :class:`FaultProxy` per app server, all in front of the same target: a partition cuts some.

    ``group[k]`` is app server ``k``'s proxy (``group.urls[k]`` its Redis URL);
    :meth:`set_mode` with ``servers=n`` switches the first ``n`` only, as the
    model's ``servers=n`` (``partition`` = ``unreachable`` for servers ``0..n-1``).
    """

    def __init__(self, count: int, target_host: str = "127.0.0.1", target_port: int = 6379, *,
                 listen_host: str = "127.0.0.1") -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"a proxy group needs count >= 1 (one proxy per app server), got {count!r}")
        self.proxies = [FaultProxy(listen_host, 0, target_host, target_port) for _ in range(count)]

    def __getitem__(self, k: int) -> FaultProxy:
        return self.proxies[k]

    def __len__(self) -> int:
        return len(self.proxies)

    def __iter__(self) -> Iterator[FaultProxy]:
        return iter(self.proxies)

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.proxies]

    def set_mode(self, mode: str, delay_s: float | None = None, *, servers: int | None = None) -> None:
        """Switch the first ``servers`` proxies (all: ``None``) to ``mode``."""
        for proxy in self.proxies[:servers]:
            proxy.set_mode(mode, delay_s)

    def start(self) -> "ProxyGroup":
        try:
            for p in self.proxies:
                p.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for p in self.proxies:
            p.stop()

    def __enter__(self) -> "ProxyGroup":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the faults that are not about the network -------------------------------------------------------

def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def flush(redis_client: Any, prefix: str, *, batch: int = 500) -> int:
    """``cache-flush`` on a shared server: delete every key under ``prefix:`` (never ``FLUSHALL``); answer how many."""
    if not isinstance(prefix, str) or not prefix:
        raise ValueError("flush needs a non-empty key prefix: it never empties a whole server")
    deleted = 0
    keys: list = []
    for key in redis_client.scan_iter(match=f"{_glob_escape(prefix)}:*", count=batch):
        keys.append(key)
        if len(keys) >= batch:
            deleted += redis_client.unlink(*keys)
            keys = []
    if keys:
        deleted += redis_client.unlink(*keys)
    return deleted


@contextlib.contextmanager
def maxmemory_window(redis_client: Any, *, owned: bool = False, maxmemory: int = 1) -> Iterator[None]:
    """``cache-set-fail``: ``CONFIG SET maxmemory`` (policy ``noeviction``) for the block, restored after.

    Every command that may grow memory is then refused with ``OOM``; reads and
    deletes still work. It changes the whole server, so it demands
    ``owned=True``: a server you started, never a shared one.
    """
    if owned is not True:
        raise ValueError("maxmemory_window changes the whole Redis server: only on a server you started "
                         "(pass owned=True)")
    old = redis_client.config_get("maxmemory")["maxmemory"]
    old_policy = redis_client.config_get("maxmemory-policy")["maxmemory-policy"]
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", maxmemory)
    try:
        yield
    finally:
        redis_client.config_set("maxmemory", old)
        redis_client.config_set("maxmemory-policy", old_policy)


class failing_connections:
    """``db-down`` on SQLite (no socket to cut): while active, the database of ``engine`` cannot be reached.

    Every connection taken from the pool is refused (a ``checkout`` listener
    raises ``DisconnectionError``, so the pool discards it and connects anew),
    and every new DBAPI connection fails: the next op fails at once with
    ``sqlalchemy.exc.OperationalError``. A connection already checked out
    finishes its work. Nothing is done from the caller's thread to the pool,
    so this works for an asyncio engine too (pass it, or its ``sync_engine``).
    Exiting lets connections succeed again.
    """

    def __init__(self, engine: Any) -> None:
        from sqlalchemy import event

        self.engine = getattr(engine, "sync_engine", engine)
        self.active = False
        event.listen(self.engine, "do_connect", self._connect)
        event.listen(self.engine, "checkout", self._checkout)

    def _connect(self, dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
        if self.active:
            import sqlite3

            raise sqlite3.OperationalError("wtsim: the database is down (db-down fault)")
        return None

    def _checkout(self, dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
        if self.active:
            from sqlalchemy.exc import DisconnectionError

            raise DisconnectionError("wtsim: the database is down (db-down fault)")

    def __enter__(self) -> "failing_connections":
        self.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.active = False


# -- a scenario's faults on the wall clock -------------------------------------------------------------

_PRECEDENCE = (UNREACHABLE, DOWN, HANG, SLOW)  # the model's: unreachable beats refused beats hung beats slow
_PROXY_KINDS = {"cache-down": DOWN, "cache-unreachable": UNREACHABLE, "partition": UNREACHABLE,
                "cache-hang": HANG, "cache-slow": SLOW}


@dataclass
class _Setup:
    proxies: list
    cache_client: Any
    prefix: str | None
    owned_redis: bool
    db: Any
    rtt_s: float | None


def _check_fault(fault: Any, s: _Setup) -> None:
    kind = fault.kind
    name = f"fault {kind} at {fault.start_s} s"
    if fault.probability != 1.0:
        raise ValueError(f"{name}: probability {fault.probability} cannot be injected for real "
                         "(a proxy cuts connections, not single ops)")
    if kind in _PROXY_KINDS or kind in ("cache-flush", "cache-crash"):
        if not s.proxies:
            raise ValueError(f"{name}: needs the proxies in front of Redis")
        if fault.servers is not None and fault.servers > len(s.proxies):
            raise ValueError(f"{name}: cuts {fault.servers} app servers, but there are {len(s.proxies)} proxies "
                             "(one per app server: see ProxyGroup)")
    if kind == "cache-slow" and not (s.rtt_s and s.rtt_s > 0):
        raise ValueError(f"{name}: needs rtt_s, the round trip its factor multiplies")
    if kind in ("cache-flush", "cache-crash") and (s.cache_client is None or not s.prefix):
        raise ValueError(f"{name}: needs cache_client (a direct client of Redis) and the cache's prefix")
    if kind == "cache-set-fail":
        if s.cache_client is None or not s.owned_redis:
            raise ValueError(f"{name}: needs cache_client of a Redis server you started, and owned_redis=True "
                             "(CONFIG SET maxmemory changes the whole server)")
        if fault.servers is not None:
            raise ValueError(f"{name}: maxmemory is server-wide; it cannot strike some app servers only")
    if kind == "db-down":
        if s.db is None:
            raise ValueError(f"{name}: needs db: the proxies in front of PostgreSQL, or a SQLite engine")
        if fault.servers is not None and (not isinstance(s.db, (list, tuple, ProxyGroup))
                                          or fault.servers > len(s.db)):
            raise ValueError(f"{name}: strikes {fault.servers} app servers; needs that many database proxies")
    if kind == "flusher-down":
        raise ValueError(f"{name}: cannot be injected by wtsim.proxy (stop the flusher processes instead)")


class ScheduleRunner(threading.Thread):
    """The thread that :func:`run_schedule` starts; ``stop()`` ends it and puts everything back to normal."""

    def __init__(self, faults: Sequence[Any], setup: _Setup, t0: float, clock: Callable[[], float],
                 on_event: Callable[[float, str], None] | None) -> None:
        super().__init__(daemon=True, name="wtsim-fault-schedule")
        self.faults, self.setup, self.t0, self.clock, self.on_event = list(faults), setup, t0, clock, on_event
        self._stop_event = threading.Event()
        self.error: BaseException | None = None
        self.log: list[tuple[float, str]] = []
        """``(seconds since t0, what was done)``, in order."""
        self._maxmemory: contextlib.ExitStack | None = None
        self._db_gate: failing_connections | None = None
        if setup.db is not None and not isinstance(setup.db, (list, tuple, ProxyGroup)) \
                and any(f.kind == "db-down" for f in faults):
            self._db_gate = failing_connections(setup.db)

    def _note(self, what: str) -> None:
        t = self.clock() - self.t0
        self.log.append((t, what))
        if self.on_event is not None:
            self.on_event(t, what)

    def _state(self, now: float) -> tuple[list, list, bool]:
        """Per cache proxy ``(mode, factor)``, per database target down, maxmemory window, at ``now``."""
        s = self.setup
        cache = [[None, 1.0] for _ in s.proxies]
        n_db = len(s.db) if isinstance(s.db, (list, tuple, ProxyGroup)) else 1
        db = [False] * n_db
        set_fail = False
        for f in self.faults:
            if not f.active(now):
                continue
            if f.kind == "db-down":
                for k in range(f.servers or n_db):
                    db[k] = True
                continue
            if f.kind == "cache-set-fail":
                set_fail = True
                continue
            if f.kind in ("cache-flush", "cache-crash"):
                if f.end_s is None:
                    continue  # an instant restart: handled at start_s (run)
                mode = DOWN  # restarting until end_s: refused
            else:
                mode = _PROXY_KINDS.get(f.kind)
            if mode is None:
                continue
            for k in range(f.servers or len(cache)):
                if f.kind == "cache-slow":
                    cache[k][1] *= f.factor
                current = cache[k][0]
                if current is None or _PRECEDENCE.index(mode) < _PRECEDENCE.index(current):
                    cache[k][0] = mode
        return cache, db, set_fail

    def _apply(self, now: float) -> None:
        s = self.setup
        cache, db, set_fail = self._state(now)
        for k, (proxy, (mode, factor)) in enumerate(zip(s.proxies, cache)):
            mode = mode or OK
            delay = (factor - 1) * s.rtt_s if mode == SLOW else None
            if proxy.mode != mode or (mode == SLOW and proxy.delay_s != delay):
                proxy.set_mode(mode, delay)
                self._note(f"cache proxy {k}: {mode}" + (f" +{delay * 1000:.3g} ms" if mode == SLOW else ""))
        if isinstance(s.db, (list, tuple, ProxyGroup)):
            for k, (proxy, down) in enumerate(zip(s.db, db)):
                mode = DOWN if down else OK
                if proxy.mode != mode:
                    proxy.set_mode(mode)
                    self._note(f"database proxy {k}: {mode}")
        elif self._db_gate is not None and self._db_gate.active != db[0]:
            (self._db_gate.__enter__ if db[0] else self._db_gate.__exit__)()
            self._note(f"database: {'down' if db[0] else 'up'}")
        if set_fail and self._maxmemory is None:
            self._maxmemory = contextlib.ExitStack()
            self._maxmemory.enter_context(maxmemory_window(s.cache_client, owned=True))
            self._note("maxmemory window open")
        elif not set_fail and self._maxmemory is not None:
            self._maxmemory.close()
            self._maxmemory = None
            self._note("maxmemory window closed")

    def run(self) -> None:
        times = sorted({f.start_s for f in self.faults} | {f.end_s for f in self.faults if f.end_s is not None})
        flushes = sorted((f.start_s, f.kind) for f in self.faults if f.kind in ("cache-flush", "cache-crash"))
        try:
            for at in times:
                if self._stop_event.wait(max(0.0, self.t0 + at - self.clock())):
                    return
                self._apply(at)  # the state at the boundary, not at a late clock reading
                for when, kind in flushes:
                    if when == at:
                        self._restart(kind)
            self._stop_event.wait()
        except BaseException as exc:  # reported by stop()/join via .error
            self.error = exc
        finally:
            self._restore()

    def _restart(self, kind: str) -> None:
        """Delete the prefix's keys; a crash also resets every connection (down around the flush)."""
        s = self.setup
        crash = kind == "cache-crash"
        before = [(p.mode, p.delay_s) for p in s.proxies]
        if crash:
            for p in s.proxies:
                if p.mode != DOWN:
                    p.set_mode(DOWN)
        n = flush(s.cache_client, s.prefix)
        self._note(f"{kind}: {n} keys under {s.prefix}: deleted")
        if crash:
            for p, (mode, delay) in zip(s.proxies, before):
                if p.mode != mode:
                    p.set_mode(mode, delay if mode == SLOW else None)

    def _restore(self) -> None:
        s = self.setup
        for proxy in list(s.proxies) + (list(s.db) if isinstance(s.db, (list, tuple, ProxyGroup)) else []):
            with contextlib.suppress(Exception):
                if proxy.mode != OK:
                    proxy.set_mode(OK)
        if self._db_gate is not None:
            self._db_gate.__exit__()
        if self._maxmemory is not None:
            self._maxmemory.close()
            self._maxmemory = None

    def stop(self) -> None:
        """End the schedule now; every proxy back to ``ok``, maxmemory restored. Re-raises a failure."""
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout=10)
        if self.error is not None:
            raise self.error

    def __enter__(self) -> "ScheduleRunner":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_schedule(faults: Iterable[Any], proxies: ProxyGroup | Sequence[FaultProxy] | FaultProxy | None = None,
                 clock: Callable[[], float] = time.monotonic, *, t0: float | None = None,
                 cache_client: Any = None, prefix: str | None = None, owned_redis: bool = False,
                 db: Any = None, rtt_s: float | None = None,
                 on_event: Callable[[float, str], None] | None = None) -> ScheduleRunner:
    """Apply ``faults`` (:class:`wtsim.sim.Fault`) at ``t0 + start_s`` on ``clock``, in a thread; answer it.

    ``proxies``: the proxies in front of Redis, one per app server (a single
    proxy stands for all of them). ``cache_client``: a direct client of Redis
    for ``cache-flush``/``cache-crash`` (delete ``prefix``'s keys, behind a
    ``down`` window when the fault has an ``end_s``) and ``cache-set-fail``
    (``owned_redis=True`` only). ``db``: the database proxies (per app server)
    or a SQLite engine, for ``db-down``. ``rtt_s``: the round trip a
    ``cache-slow`` factor multiplies. Overlapping faults combine as in the
    model. A fault this setup cannot inject raises ``ValueError`` naming its
    kind, before anything starts. ``runner.stop()`` puts everything back.
    """
    faults = list(faults)
    if isinstance(proxies, FaultProxy):
        proxies = [proxies]
    setup = _Setup(list(proxies or ()), cache_client, prefix, owned_redis, db, rtt_s)
    for fault in faults:
        _check_fault(fault, setup)
    runner = ScheduleRunner(faults, setup, clock() if t0 is None else t0, clock, on_event)
    runner.start()
    return runner
