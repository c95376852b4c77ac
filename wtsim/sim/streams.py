"""A Redis Stream with consumer groups, reduced to what the write-behind flusher uses.

The rules, as in Redis (``XADD``, ``XREADGROUP``, ``XAUTOCLAIM``, ``XACK``,
``XDEL``):

* Entries have increasing ids (``"1-0"``, ``"2-0"``, ...) and are kept in order.
* A group remembers the last entry it delivered and a *pending entries list*:
  every entry delivered to a consumer and not yet acknowledged, with when it
  was delivered. Reading new entries (id ``>``) delivers the ones after the
  last delivered and adds them to the list; reading with id ``0`` re-delivers
  the consumer's own pending entries (an entry deleted meanwhile comes back as
  ``(id, None)``).
* A claim takes over pending entries idle for at least ``min_idle_s``, whoever
  holds them.
* An ack removes entries from the pending list; the flusher's ack also deletes
  them (``XDEL``), so the stream's length is what is still to flush.
* ``waiters`` are called once when the next entry is added: a blocked
  ``XREADGROUP`` is served as soon as an entry arrives, not at its timeout.

A command on a group that does not exist (after the cache restarted empty)
raises :class:`~wtsim.ops.CacheRejected`, as Redis answers ``NOGROUP``.
Nothing here knows about time passing: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..ops import CacheRejected

Fields = dict[str, str]


@dataclass(slots=True)
class Group:
    """A consumer group: the last entry delivered, and what is delivered but not acknowledged."""

    last: int = 0
    pending: dict[int, tuple[str, float]] = field(default_factory=dict)  # seq -> (consumer, delivered at)


class SimStream:
    """One stream: entries in order, its groups, and the readers blocked on it."""

    def __init__(self) -> None:
        self.entries: dict[int, Fields] = {}  # seq -> fields; dicts keep insertion order
        self.groups: dict[str, Group] = {}
        self.waiters: list[Callable[[], None]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, fields: Fields) -> str:
        """``XADD``: append ``fields``; wake the blocked readers; the answer is the new id."""
        self._seq += 1
        self.entries[self._seq] = fields
        if self.waiters:
            waiters, self.waiters = self.waiters, []
            for wake in waiters:
                wake()
        return f"{self._seq}-0"

    def create_group(self, name: str) -> None:
        """``XGROUP CREATE ... 0 MKSTREAM``, unless the group exists: it will deliver every entry."""
        self.groups.setdefault(name, Group())

    def read(self, group: str, consumer: str, count: int, pending: bool, now: float) -> list[tuple[str, Fields | None]]:
        """``XREADGROUP``: this consumer's pending entries (``pending``), or up to ``count`` new ones."""
        g = self._group(group)
        if pending:
            mine = [seq for seq, (owner, _) in g.pending.items() if owner == consumer][:count]
            return [(f"{seq}-0", self.entries.get(seq)) for seq in mine]
        out: list[tuple[str, Fields | None]] = []
        for seq, fields in self.entries.items():  # entries after the last delivered, in order
            if seq <= g.last:
                continue
            out.append((f"{seq}-0", fields))
            g.pending[seq] = (consumer, now)
            g.last = seq
            if len(out) == count:
                break
        return out

    def claim(self, group: str, consumer: str, min_idle_s: float, count: int,
              now: float) -> list[tuple[str, Fields | None]]:
        """``XAUTOCLAIM``: take over up to ``count`` entries pending at least ``min_idle_s``."""
        g = self._group(group)
        out: list[tuple[str, Fields | None]] = []
        for seq, (_, delivered) in list(g.pending.items()):
            if now - delivered < min_idle_s:
                continue
            g.pending[seq] = (consumer, now)
            out.append((f"{seq}-0", self.entries.get(seq)))
            if len(out) == count:
                break
        return out

    def ack(self, group: str, ids: tuple[str, ...]) -> int:
        """``XACK`` + ``XDEL`` in one transaction; the answer is how many were pending."""
        g = self._group(group)
        acked = 0
        for entry_id in ids:
            seq = int(entry_id.partition("-")[0])
            acked += g.pending.pop(seq, None) is not None
            self.entries.pop(seq, None)
        return acked

    def _group(self, name: str) -> Group:
        try:
            return self.groups[name]
        except KeyError:
            raise CacheRejected(f"NOGROUP No such key or consumer group {name!r}") from None
