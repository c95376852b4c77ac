"""The JSON envelope stored at a cache key. JSON only: never pickle.

An entry is ``{"v": <version or null>, "d": <the serialized row>}``, plus, with
early recompute on, ``"x"`` (how long the database read took) and ``"e"`` (when
the entry expires, on the cache's clock); a tombstone is
``{"v": <version or null>, "t": 1}``; a lease is ``{"l": <token>}``. A
write-behind entry not yet in the database is *dirty*: ``{"v": N, "w": 1, "d": ...}``,
built by string concatenation (here and, identically, in the Lua script
:data:`wtsim.scripts.QUEUE_WRITE`) so the flusher can rebuild its exact bytes. The version
travels with the value so that a compare-and-set at the cache (versioned mode)
can refuse an older one. Unpickling a cache payload would let whoever can write
to Redis run code in every app server; JSON cannot.

:func:`decode` never raises: bytes that are not one of our envelopes (corrupt,
truncated, written by another program) decode as :data:`FOREIGN`, which the
policies treat as a miss and overwrite.

A policy reaches this module through its state (``state.codec``), as it reaches
the clock: the simulator swaps in a codec that keeps entries decoded.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple


class Entry(NamedTuple):
    """A decoded cache payload: a value, a tombstone, or another reader's lease.

    A named tuple rather than a frozen dataclass: every cache hit builds one, and
    a tuple is built in a third of the time.
    """

    data: dict[str, Any] | None
    version: int | None
    tombstone: bool = False
    lease: str | None = None
    delta: float | None = None  # seconds the database read took (early recompute)
    expires_at: float | None = None  # when the entry expires, on the policy's clock (early recompute)
    dirty: bool = False  # write-behind: queued, not yet in the database


_value = tuple.__new__
"""``_value(Entry, (...all seven fields...))`` builds an Entry without the Python-level ``__new__``
that fills in defaults: the hit path below uses it, at two thirds of the cost."""

FOREIGN = Entry(data=None, version=None)
"""What :func:`decode` answers for anything that is not a wtsim envelope."""

_COMPACT = (",", ":")


def encode(data: dict[str, Any], version: int | None = None, delta: float | None = None,
           expires_at: float | None = None) -> str:
    """Wrap ``data`` and its version in the envelope; raise TypeError/ValueError if not JSON."""
    if not isinstance(data, dict):
        raise TypeError(f"serialize must return a dict, got {type(data).__name__}")
    envelope: dict[str, Any] = {"v": version, "d": data}
    if delta is not None:
        envelope["x"], envelope["e"] = delta, expires_at
    # allow_nan=False: NaN and Infinity are not JSON, and other readers would reject them.
    return json.dumps(envelope, separators=_COMPACT, allow_nan=False)


def encode_data(data: dict[str, Any]) -> str:
    """A row as compact JSON, the ``d`` of an envelope; raise TypeError/ValueError if not JSON."""
    if not isinstance(data, dict):
        raise TypeError(f"data must be a dict, got {type(data).__name__}")
    return json.dumps(data, separators=_COMPACT, allow_nan=False)


def dirty_payload(version: int, data_json: str) -> str:
    """The exact bytes of a dirty entry, as the Lua script QUEUE_WRITE builds them."""
    return '{"v":' + str(version) + ',"w":1,"d":' + data_json + "}"


def clean_payload(version: int, data_json: str) -> str:
    """The entry once its version is in the database: the same row, not dirty."""
    return '{"v":' + str(version) + ',"d":' + data_json + "}"


def encode_tombstone(version: int | None) -> str:
    """A tombstone envelope for ``version`` (``None``: unknown, refuses every set)."""
    return json.dumps({"v": version, "t": 1}, separators=_COMPACT)


def encode_lease(token: str) -> str:
    """A lease envelope: ``token``'s holder, and only it, may populate this key."""
    return json.dumps({"l": token}, separators=_COMPACT)


def decode(raw: bytes | str) -> Entry:
    """Unwrap a payload; answer :data:`FOREIGN` when it is not a well-formed envelope.

    A value is tested first: it is what every cache hit decodes.
    """
    try:
        obj = _parse(raw)
    except (ValueError, TypeError):  # UnicodeDecodeError is a ValueError
        return FOREIGN
    if type(obj) is not dict:
        return FOREIGN
    version = obj.get("v")
    if version is not None and type(version) is not int:
        return FOREIGN
    data = obj.get("d")
    if type(data) is dict:
        if "x" not in obj:
            if "w" in obj:
                return Entry(data, version, dirty=obj["w"] == 1 and obj["w"] is not True)
            return _value(Entry, (data, version, False, None, None, None, False))  # a plain value: every hit
        delta, expires_at = obj["x"], obj.get("e")
        if not (_is_seconds(delta) and _is_seconds(expires_at)):
            delta = expires_at = None  # a damaged hint only turns early recompute off for this entry
        return Entry(data, version, delta=delta, expires_at=expires_at)
    if data is None and "d" not in obj:
        if obj.get("t") == 1 and obj["t"] is not True:
            return Entry(data=None, version=version, tombstone=True)
        if len(obj) == 1 and type(obj.get("l")) is str:
            return Entry(data=None, version=None, lease=obj["l"])
    return FOREIGN


_scan = json.JSONDecoder().scan_once
"""The C scanner that ``json.loads`` runs, without the two Python layers around it (they cost a hit a microsecond)."""


def _parse(raw: bytes | str) -> Any:
    """``json.loads(raw)``, faster for what a hit reads: UTF-8 bytes holding one JSON value, nothing around it.

    Anything else (whitespace around the value, another encoding, garbage) is
    left to ``json.loads`` itself, so the answer (or the error) is always the same.
    """
    try:
        text = raw.decode() if type(raw) is bytes else raw
        obj, end = _scan(text, 0)
        if end == len(text):
            return obj
    except Exception:  # StopIteration when nothing parses at 0; let json.loads say what is wrong
        pass
    return json.loads(raw)


def _is_seconds(value: object) -> bool:
    return type(value) in (int, float)
