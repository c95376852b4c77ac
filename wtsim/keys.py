"""Injective cache keys.

The article builds keys as ``f"wtc:{namespace}:{entity_id}"``. Two different
entries can then share a key, ``("a:b", "c")`` and ``("a", "b:c")`` both give
``wtc:a:b:c``, and a ``{`` in an id silently becomes a Redis Cluster hash tag.

Here every part is percent-encoded (RFC 3986, nothing kept "safe"), so the
encoded parts never contain ``:``, ``{``, ``}``, ``%``-ambiguity, spaces or glob
characters, and the separators can be read back unambiguously::

    entry_key("wtc", "products", "p-1")    == "wtc:{products:p-1}"
    entry_key("wtc", "a:b", "c")           == "wtc:{a%3Ab:c}"
    entry_key("wtc", "a", "b:c")           == "wtc:{a:b%3Ac}"

The braces make ``namespace:entity`` the Redis Cluster hash tag, so every key
that belongs to one entry lands in the same slot (a Lua script may touch them
together), and ``namespace_prefix`` is a literal prefix of every key in a
namespace, usable in ``SCAN MATCH``.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

EntityId = str | int


def _part(value: str) -> str:
    return quote(value, safe="")


def _check(field: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"{field} must be a str or int, got {type(value).__name__}")
    text = str(value)
    if field == "prefix" and not text:
        raise ValueError("prefix must be a non-empty string")
    return text


def entry_key(prefix: str, namespace: str, entity_id: EntityId) -> str:
    """The Redis key that holds the entry for ``(namespace, entity_id)``."""
    return (
        f"{_part(_check('prefix', prefix))}:"
        f"{{{_part(_check('namespace', namespace))}:{_part(_check('entity_id', entity_id))}}}"
    )


def namespace_prefix(prefix: str, namespace: str) -> str:
    """The literal prefix shared by every entry key of ``namespace``."""
    return f"{_part(_check('prefix', prefix))}:{{{_part(_check('namespace', namespace))}:"


def parse_key(key: str) -> tuple[str, str, str]:
    """Decode a key made by :func:`entry_key` back into ``(prefix, namespace, entity_id)``."""
    head, sep, tag = key.partition(":{")
    if not sep or not tag.endswith("}") or tag.count(":") != 1:
        raise ValueError(f"not a wtsim entry key: {key!r}")
    namespace, _, entity = tag[:-1].partition(":")
    return unquote(head), unquote(namespace), unquote(entity)
