"""A private ``redis-server`` for a load run: a free port, nothing on disk, stopped by its PID.

A run that starts its own Redis may do to it what a shared one must never
suffer: a ``CONFIG SET maxmemory`` window (``cache-set-fail``). It is started
with ``--save "" --appendonly no`` in a temporary folder, and killed at the
end, whatever happened.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import redis

HOST = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def redis_server_binary() -> str | None:
    """The path of ``redis-server``, or ``None`` when it is not installed."""
    return shutil.which("redis-server")


class PrivateRedis:
    """``redis-server`` on a free port of 127.0.0.1, for one run; use as a context manager."""

    def __init__(self, binary: str | None = None, *, start_timeout: float = 10.0) -> None:
        self.binary = binary or redis_server_binary()
        if self.binary is None:
            raise FileNotFoundError("redis-server is not installed (give --redis-url instead)")
        self.start_timeout = start_timeout
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._directory: tempfile.TemporaryDirectory | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> "PrivateRedis":
        """Start it and wait until it answers PING; a port taken meanwhile is tried again."""
        self._directory = tempfile.TemporaryDirectory(prefix="wtsim-load-redis-")
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "", "--appendonly", "no",
                 "--dir", self._directory.name, "--logfile", ""],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            if self._wait():
                return self
            self._kill()
        raise RuntimeError(f"{self.binary} did not start on a free port of {HOST}")

    def _wait(self) -> bool:
        probe = redis.Redis(host=HOST, port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + self.start_timeout
        try:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    return False
                try:
                    if probe.ping():
                        return True
                except redis.RedisError:
                    time.sleep(0.02)
            return False
        finally:
            probe.close()

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)
        self.process = None

    def stop(self) -> None:
        """Kill the server and remove its folder."""
        self._kill()
        if self._directory is not None:
            self._directory.cleanup()
            self._directory = None

    def __enter__(self) -> "PrivateRedis":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
