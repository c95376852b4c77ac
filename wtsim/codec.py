"""The JSON envelope stored at a cache key. JSON only: never pickle.

An entry is ``{"v": <version or null>, "d": <the serialized row>}``; a tombstone
is ``{"v": <version or null>, "t": 1}``. The version travels with the value so
that a compare-and-set at the cache (versioned mode) can refuse an older one.
Unpickling a cache payload would let whoever can write to Redis run code in
every app server; JSON cannot.

:func:`decode` never raises: bytes that are not one of our envelopes (corrupt,
truncated, written by another program) decode as :data:`FOREIGN`, which the
policies treat as a miss and overwrite.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Entry:
    """A decoded cache payload: a value, or a tombstone when ``tombstone`` is true."""

    data: dict[str, Any] | None
    version: int | None
    tombstone: bool = False


FOREIGN = Entry(data=None, version=None)
"""What :func:`decode` answers for anything that is not a wtsim envelope."""


def encode(data: dict[str, Any], version: int | None = None) -> str:
    """Wrap ``data`` and its version in the envelope; raise TypeError/ValueError if not JSON."""
    if not isinstance(data, dict):
        raise TypeError(f"serialize must return a dict, got {type(data).__name__}")
    # allow_nan=False: NaN and Infinity are not JSON, and other readers would reject them.
    return json.dumps({"v": version, "d": data}, separators=(",", ":"), allow_nan=False)


def encode_tombstone(version: int | None) -> str:
    """A tombstone envelope for ``version`` (``None``: unknown, refuses every set)."""
    return json.dumps({"v": version, "t": 1}, separators=(",", ":"))


def decode(raw: bytes | str | Entry) -> Entry:
    """Unwrap a payload; answer :data:`FOREIGN` when it is not a well-formed envelope.

    An :class:`Entry` passes through unchanged: a driver that keeps entries
    decoded (the simulator's in-memory cache) spares every hit a JSON parse.
    """
    if type(raw) is Entry:
        return raw
    try:
        obj = json.loads(raw)
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return FOREIGN
    if not isinstance(obj, dict):
        return FOREIGN
    version = obj.get("v")
    if version is not None and (type(version) is not int):
        return FOREIGN
    if obj.get("t") == 1 and obj["t"] is not True and "d" not in obj:
        return Entry(data=None, version=version, tombstone=True)
    data = obj.get("d")
    if not isinstance(data, dict):
        return FOREIGN
    return Entry(data=data, version=version)
