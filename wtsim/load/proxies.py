"""The load run's fault proxies, each a ``wtsim proxy`` process of its own, switched through its control port.

A :class:`~wtsim.proxy.FaultProxy` in the load run's own process would share
its interpreter lock with the clients: a proxy thread waiting for the lock
while the event loop runs adds milliseconds to round trips that take a tenth
of one. A proxy in a process of its own is what the model means by the
network: another hop, on another core. :class:`ProxyProcess` has the
``mode``, ``delay_s`` and ``set_mode`` that :func:`wtsim.proxy.run_schedule`
needs, so the fault schedule drives it as it drives an in-process proxy.
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from ..proxy import OK, SLOW, check_mode
from ..proxy_command import send_control

_FIRST_LINE = re.compile(r"wtsim proxy: ([\d.]+):(\d+) -> .*control on ([\d.]+):(\d+)")


class ProxyProcess:
    """``python -m wtsim proxy --listen 127.0.0.1:0 --to HOST:PORT --control 0``, started and stopped by PID."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.process: subprocess.Popen | None = None
        self.port = self.control_port = 0
        self._mode, self._delay_s = OK, 0.0

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def delay_s(self) -> float:
        return self._delay_s

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def launch(self) -> None:
        """Start the process (without waiting for it: see :meth:`wait_ready`)."""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wtsim", "proxy", "--listen", "127.0.0.1:0",
             "--to", f"{self.target[0]}:{self.target[1]}", "--control", "0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def wait_ready(self) -> None:
        """Read the first line, which says where it listens."""
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline()
        match = _FIRST_LINE.search(line)
        if not match:
            error = self.process.stderr.read() if self.process.poll() is not None and self.process.stderr else ""
            raise RuntimeError(f"wtsim proxy did not start: {line.strip() or error.strip()}")
        self.port, self.control_port = int(match.group(2)), int(match.group(4))

    def set_mode(self, mode: str, delay_s: float | None = None) -> None:
        """Switch the proxy's mode (``slow`` with ``delay_s``), through its control port."""
        delay = check_mode(mode, delay_s)
        command = f"mode {mode}" + (f" {delay * 1000:g}" if mode == SLOW else "")
        answer = send_control("127.0.0.1", self.control_port, command)
        if not answer.startswith("ok"):
            raise RuntimeError(f"proxy on port {self.port}: {answer}")
        self._mode, self._delay_s = mode, delay if mode == SLOW else 0.0

    def terminate(self) -> None:
        """Ask the process to end (SIGTERM), without waiting for it: see :meth:`stop`."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """End the process: SIGTERM, then SIGKILL if it has not exited within 5 s."""
        self.terminate()
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None


class ProxyProcesses:
    """One :class:`ProxyProcess` per app server, started together."""

    def __init__(self, count: int, target_host: str, target_port: int) -> None:
        self.proxies = [ProxyProcess(target_host, target_port) for _ in range(count)]

    def start(self) -> "ProxyProcesses":
        try:
            for proxy in self.proxies:
                proxy.launch()
            for proxy in self.proxies:
                proxy.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.proxies]

    def __iter__(self) -> Any:
        return iter(self.proxies)

    def __len__(self) -> int:
        return len(self.proxies)

    def stop(self) -> None:
        for proxy in self.proxies:  # every one asked first: they exit side by side
            proxy.terminate()
        for proxy in self.proxies:
            proxy.stop()
