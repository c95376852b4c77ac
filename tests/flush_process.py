"""Test helper: a ``wtsim flush`` process (``python -m wtsim flush ...``) to signal, kill -9 and read.

Not a test module. Its output goes to a log file (a pipe could fill and block
it); :meth:`FlushProcess.wait_for` polls that file with a deadline. The kernel
kills the process if the test process dies; the context exit kills it too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from servers import _die_with_parent, _kill

TESTS = Path(__file__).resolve().parent


class FlushProcess:
    """``wtsim flush --redis-url ... --database-url ... -v ARGS``, started by :meth:`start`."""

    def __init__(self, redis_url: str, database_url: str, log_path: Path, *args: str,
                 env: dict[str, str] | None = None) -> None:
        self.command = [sys.executable, "-m", "wtsim", "flush", "--redis-url", redis_url,
                        "--database-url", database_url, "-v", *args]
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])),
                    **(env or {})}
        self.log_path = Path(log_path)
        self.process: subprocess.Popen | None = None

    def start(self, *, ready_timeout: float = 20.0) -> "FlushProcess":
        """Start it and wait for its "started" line (it has connected and checked its appliers)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT, env=self.env, preexec_fn=_die_with_parent())
        self.wait_for("wtsim.flush: started", timeout=ready_timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for(self, text: str, *, timeout: float = 20.0) -> None:
        """Poll the log until it holds ``text``; fail, with the log, if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if self.process.poll() is not None:
                raise AssertionError(f"wtsim flush exited with {self.process.returncode} before {text!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} from wtsim flush within {timeout}s:\n{self.log()}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, *, timeout: float = 15.0) -> int:
        """Send ``sig`` and wait for the exit code."""
        self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(self.process)
            raise AssertionError(f"wtsim flush did not exit within {timeout}s of {signal.Signals(sig).name}:\n{self.log()}")

    def kill(self) -> None:
        """kill -9, and reap it."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def __enter__(self) -> "FlushProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            _kill(self.process)
