"""FlakyRedis: a Redis client you can break on purpose, for demos and notebooks.

To see a failure mode you need the failure. Killing a shared Redis in a
workshop is rude, and fakeredis has no ``maxmemory``, so this client injects
the faults itself, at the one place every redis-py command passes through
(``execute_command``), and raises exactly what redis-py raises for the real
thing:

=================  ===========================================  ====================
mode               what a command does                          real-world cause
=================  ===========================================  ====================
``go_down()``      raises ``ConnectionError`` at once           server stopped
``hang(t)``        waits ``t`` seconds, raises ``TimeoutError``  server hung, SIGSTOP
``refuse_writes``  writes raise ``ResponseError("OOM ...")``    ``maxmemory`` reached
``recover()``      everything works again                       server back
=================  ===========================================  ====================

The data behind it is untouched by the faults, as in a real outage where the
server keeps its memory: that is what makes a stale value survive one.
"""

from __future__ import annotations

import time
from typing import Any

import redis

UP, DOWN, HUNG, NO_WRITES = "up", "down", "hung", "refusing writes"

_WRITES = frozenset({"SET", "SETEX", "PSETEX", "EVALSHA", "EVAL", "MSET", "HSET", "EXPIRE", "PEXPIRE"})
_OOM = "OOM command not allowed when used memory > 'maxmemory'."


class FlakyRedis(redis.Redis):
    """A redis-py client over another client's connections, with switchable faults."""

    def __init__(self, client: redis.Redis) -> None:
        super().__init__(connection_pool=client.connection_pool)
        self.mode = UP
        self.hang_s = 0.0
        self.calls = 0
        self.failures = 0

    def go_down(self) -> None:
        """Refuse every command, as a stopped server refuses connections."""
        self.mode = DOWN

    def hang(self, timeout_s: float = 0.25) -> None:
        """Let every command wait ``timeout_s`` and time out, as a hung server does."""
        if not timeout_s >= 0:
            raise ValueError(f"timeout_s must be >= 0 seconds, got {timeout_s!r}")
        self.mode, self.hang_s = HUNG, timeout_s

    def refuse_writes(self) -> None:
        """Answer writes with Redis' out-of-memory error; reads and deletes still work."""
        self.mode = NO_WRITES

    def recover(self) -> None:
        """Work normally again; the data is as it was before the fault."""
        self.mode = UP

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.calls += 1
        command = str(args[0]).upper() if args else ""
        if self.mode == DOWN:
            self.failures += 1
            raise redis.exceptions.ConnectionError("Error 111 connecting to Redis: Connection refused.")
        if self.mode == HUNG:
            self.failures += 1
            time.sleep(self.hang_s)
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        if self.mode == NO_WRITES and command in _WRITES:
            self.failures += 1
            raise redis.exceptions.ResponseError(_OOM)
        return super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        if self.mode in (DOWN, HUNG):
            self.execute_command("PING")  # raises as the mode says
        return super().pipeline(transaction, shard_hint)

    def __repr__(self) -> str:
        return f"<FlakyRedis {self.mode}>"
