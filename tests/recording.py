"""Recording stand-ins for a Redis client: every command they pass on is recorded, and some can be made to fail.

``RecordingRedis`` wraps a ``redis.Redis`` (or ``RedisCluster``);
``AsyncRecordingRedis`` a ``redis.asyncio`` client, recording each command
once it was awaited. ``fail`` maps a command name to the exception it raises
every time, or to a list of exceptions raised by its next calls, one each,
after which it works again; ``calls`` lists ``(name, args, kwargs)``. A
``NoScriptError`` that the script recovers from (it loads and retries) is not
recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.commands.core import AsyncScript, Script

NOT_COMMANDS = {"get_encoder", "script_load"}  # plumbing of redis-py's Script, not cache operations


class RecordingRedis:
    """A Redis client stand-in: records each command it passes on, and can make some fail."""

    script_class = Script

    def __init__(self, client: Any, events: list[str], fail: dict[str, Any] | None = None):
        self._client = client
        self._events = events
        self.fail = fail or {}
        self.calls: list[tuple[str, tuple, dict]] = []

    def _record(self, name: str, args: tuple, kwargs: dict) -> None:
        self.calls.append((name, args, kwargs))
        self._events.append(f"redis.{name}")

    def _planned(self, name: str) -> BaseException | None:
        """The failure planned for the next call of ``name``, if any (a list is used up one by one)."""
        planned = self.fail.get(name)
        if isinstance(planned, list):
            planned = planned.pop(0) if planned else None
        return planned

    def register_script(self, script: str) -> Any:
        return self.script_class(self, script)  # so that EVALSHA comes through this proxy too

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name in NOT_COMMANDS:
            return attr

        def command(*args, **kwargs):
            planned = self._planned(name)
            if planned is not None:
                self._record(name, args, kwargs)
                raise planned
            result = attr(*args, **kwargs)
            self._record(name, args, kwargs)
            return result

        return command


class AsyncRecordingRedis(RecordingRedis):
    """:class:`RecordingRedis` for a ``redis.asyncio`` client: a command is recorded once it was awaited."""

    script_class = AsyncScript

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name in NOT_COMMANDS:
            return attr

        def command(*args, **kwargs):
            planned = self._planned(name)
            if planned is not None:
                self._record(name, args, kwargs)

                async def failing():
                    raise planned

                return failing()
            result = attr(*args, **kwargs)
            if not asyncio.iscoroutine(result):  # pipeline(), scan_iter(): no round trip of their own
                self._record(name, args, kwargs)
                return result

            async def answered():
                value = await result
                self._record(name, args, kwargs)
                return value

            return answered()

        return command
