"""The consistency oracle: one definition of a stale read, called by the simulator and the load runner.

A read is judged against the versions of its key and the moment each became
*current* (was committed; under write-behind, was acknowledged):

* it is **stale** when it returned a version older than the newest one that
  was current when the read *began*;
* its **staleness** is how long the version after the one it returned had been
  current, at that moment (how far behind the read was).

The simulator judges each read as it ends: it knows the newest version when the
read began, and the commit times (:meth:`wtsim.sim.world.SimDB.staleness`).
The load runner judges a recorded history afterwards (:class:`History`): the
moment a real write's version became current is when its commit returned.
Both call :func:`staleness`.

Two summaries of the same judgement:

* :func:`consistency`: the share of reads that were fresh, and that were at
  most 1 s, 10 s and 60 s stale: consistency "in nines at timescales", as
  Meta's Polaris reports it ("99.97% fresh, 100% within 1 s");
* :func:`stale_at_rest`: after a run, the keys whose cached entry is older than
  the database's row. A stale read passes; a key stale at rest stays wrong
  until its TTL, however long that is.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Hashable, Iterable, Mapping

TIMESCALES_S = (1.0, 10.0, 60.0)
"""The staleness bounds :func:`consistency` reports, besides "fresh"."""


def staleness(returned: int, newest: int, current_since: Callable[[int], float], began: float) -> float | None:
    """How stale a read was: ``None`` when fresh, else seconds since the version after ``returned``.

    ``returned``: the version the read returned; ``newest``: the newest version
    current when it began (at ``began``); ``current_since(v)``: when version
    ``v`` became current.
    """
    if returned >= newest:
        return None
    return began - current_since(returned + 1)


class History:
    """When each version of each key became current, to judge recorded reads afterwards.

    Every key starts at version 1, current since ``start`` (the rows a run
    seeds). :meth:`committed` adds a version; :meth:`judge` is
    :func:`staleness` for a read that began at a given time: the newest
    version then is the highest one that had become current by then.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.start = start
        self._versions: dict[Hashable, dict[int, float]] = {}
        self._index: dict[Hashable, tuple[list[float], list[int]]] | None = None

    def committed(self, key: Hashable, version: int, at: float) -> None:
        """Version ``version`` of ``key`` became current at ``at``."""
        self._versions.setdefault(key, {})[version] = at
        self._index = None

    def current_since(self, key: Hashable, version: int) -> float:
        """When ``version`` of ``key`` became current (``start`` for version 1)."""
        if version <= 1:
            return self.start
        try:
            return self._versions[key][version]
        except KeyError:
            raise ValueError(f"key {key!r}: version {version} was never committed") from None

    def newest(self, key: Hashable, at: float) -> int:
        """The newest version of ``key`` that was current at ``at``."""
        if self._index is None:
            self._index = {}
            for k, versions in self._versions.items():
                times, highest, top = [], [], 1
                for version, t in sorted(versions.items(), key=lambda item: item[1]):
                    top = max(top, version)
                    times.append(t)
                    highest.append(top)
                self._index[k] = (times, highest)
        entry = self._index.get(key)
        if entry is None:
            return 1
        times, highest = entry
        i = bisect_right(times, at)
        return highest[i - 1] if i else 1

    def judge(self, key: Hashable, returned: int, began: float) -> float | None:
        """:func:`staleness` of a read of ``key`` that began at ``began`` and returned ``returned``."""
        return staleness(returned, self.newest(key, began),
                         lambda version: self.current_since(key, version), began)


def consistency(reads: int, staleness_s: Iterable[float]) -> dict[str, float | None]:
    """The share of ``reads`` that were fresh, and at most 1 s, 10 s, 60 s stale.

    ``reads``: how many reads returned a version; ``staleness_s``: the
    staleness of each of them that was stale. Keys ``fresh``, ``1s``, ``10s``,
    ``60s``; ``None`` each when no read returned a version.
    """
    stale = list(staleness_s)
    keys = ["fresh"] + [f"{bound:g}s" for bound in TIMESCALES_S]
    if reads <= 0:
        return dict.fromkeys(keys)
    if len(stale) > reads:
        raise ValueError(f"{len(stale)} stale reads out of {reads} reads")
    out: dict[str, float | None] = {"fresh": 1 - len(stale) / reads}
    for bound, key in zip(TIMESCALES_S, keys[1:]):
        out[key] = 1 - sum(age > bound for age in stale) / reads
    return out


def describe(shares: Mapping[str, float | None]) -> str:
    """``consistency()`` in words: "99.97% fresh, 100% within 1 s" (the timescales that add news)."""
    if shares.get("fresh") is None:
        return "no reads returned a value"
    words = [f"{_percent(shares['fresh'])} fresh"]
    last = shares["fresh"]
    for bound in TIMESCALES_S:
        if last == 1.0:
            break
        share = shares.get(f"{bound:g}s")
        if share is None or share == last:
            continue
        words.append(f"{_percent(share)} within {bound:g} s")
        last = share
    return ", ".join(words)


def _percent(share: float) -> str:
    if share == 1.0:
        return "100%"
    text = f"{share * 100:.2f}".rstrip("0").rstrip(".")
    return f"{text}%"


def stale_at_rest(cached: Mapping[Hashable, int | None], committed: Mapping[Hashable, int]) -> list:
    """The keys whose cached version is older than the database's, sorted.

    ``cached``: key -> the version its cache entry holds (``None``: no version,
    a tombstone or a lease: nothing a reader would be served); ``committed``:
    key -> the database's version. A key that is not cached is not stale.
    """
    return sorted(key for key, version in cached.items()
                  if version is not None and version < committed.get(key, 1))
