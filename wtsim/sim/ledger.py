"""The write-behind oracle: which writes the cache accepted, which reached the database, which were lost.

Under write-through the database is the order of writes, and
:meth:`wtsim.sim.world.SimDB.staleness` judges a read against the newest
*commit*. Under write-behind a write is acknowledged before it is committed,
so the oracle must judge against the newest *acknowledged* write: a read that
the database answers during the lag is stale. This ledger is that record.

Rules of this module:

* Every simulated write-behind write carries a unique number ``u`` in its row.
  The ledger keeps, per key, the writes in the order the cache accepted them
  (the order of the queue, which is also the order of their versions), and
  when each was accepted.
* A read returns a row; its position in that order (0: the row every key
  starts with) against the number of writes accepted when the read began
  says whether it is stale, and since when (when the next write was accepted):
  :func:`wtsim.oracle.staleness`, with positions for versions.
  After a crash the database answers an older row than the lost writes: that
  is stale too, until the key is written again.
* A write is *durable* once the database holds it or a later write of the
  same key queued in the same cache lifetime (the flusher coalesces: it writes
  only the newest version of a key in a batch). Versions restart from the
  database's after a crash, so a lifetime (``epoch``) ends at each crash or
  flush: a write from before it can be made durable only by the batch that
  already held it.
* At the end: an acknowledged write that is not durable is *lost* if its
  cache lifetime ended (a crash took the queue), or *unflushed* if it is still
  queued (the flushers were down, or the drain ran out of time).
"""

from __future__ import annotations

from array import array

import numpy as np

from .. import oracle


class WriteLedger:
    """Accepted, acknowledged and durable write-behind writes, per key; the oracle of their reads."""

    def __init__(self) -> None:
        self.epoch = 0
        self._accepted: dict[int, list[float]] = {}  # key -> when each write was accepted, in order
        self._position: dict[int, int] = {}  # u -> its 1-based position among its key's writes
        self._lifetime: dict[int, int] = {}  # u -> the epoch it was accepted in
        self._queued: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (key, epoch) -> [(version, u)]
        self._flushed: dict[tuple[int, int], int] = {}  # (key, epoch) -> how many of those are durable
        self._durable: dict[int, float] = {}  # u -> when it became durable
        self.starts, self.acks = array("d"), array("d")  # per acknowledged write: arrival, acknowledgement
        self._acked: list[int] = []  # their u, in the same order

    # -- what happens ----------------------------------------------------------------------

    def accepted(self, key: int, u: int, version: int, at: float) -> None:
        """The cache queued write ``u`` of ``key`` at ``version``."""
        times = self._accepted.setdefault(key, [])
        times.append(at)
        self._position[u] = len(times)
        self._lifetime[u] = self.epoch
        self._queued.setdefault((key, self.epoch), []).append((version, u))

    def acknowledged(self, u: int, start: float, at: float) -> None:
        """The client that sent write ``u`` at ``start`` was told at ``at`` that it succeeded."""
        self.starts.append(start)
        self.acks.append(at)
        self._acked.append(u)

    def committed(self, key: int, u: int, version: int, at: float) -> None:
        """A flusher committed write ``u`` (at ``version``): it, and the older ones it coalesced, are durable."""
        slot = (key, self._lifetime[u])
        queued = self._queued[slot]
        done = self._flushed.get(slot, 0)
        while done < len(queued) and queued[done][0] <= version:
            self._durable.setdefault(queued[done][1], at)
            done += 1
        self._flushed[slot] = done

    def cache_lost(self) -> None:
        """The cache restarted empty: the queue is gone, and versions restart from the database's."""
        self.epoch += 1

    # -- the oracle --------------------------------------------------------------------------

    def newest(self, key: int) -> int:
        """How many writes of ``key`` the cache has accepted so far."""
        times = self._accepted.get(key)
        return 0 if times is None else len(times)

    def accepted_at(self, key: int, position: int) -> float:
        """When the write at ``position`` (1-based) among ``key``'s was accepted; 0 for the row it starts with."""
        return self._accepted[key][position - 1] if position else 0.0

    def staleness(self, key: int, row: dict, newest: int, at: float) -> float | None:
        """:func:`wtsim.oracle.staleness` of a read of ``key`` that began at ``at`` and returned ``row``.

        The oracle's versions are positions here: ``row``'s among the accepted
        writes, against ``newest`` (:meth:`newest` when the read began); a
        write became current when the cache accepted it.
        """
        position = self._position.get(row.get("u"), 0)
        return oracle.staleness(position, newest, lambda p: self.accepted_at(key, p), at)

    # -- the totals ----------------------------------------------------------------------------

    def outcome(self, warmup_s: float) -> tuple[int, int, np.ndarray]:
        """``(lost, unflushed, lags)`` of the writes acknowledged that arrived after ``warmup_s``.

        ``lags``: for each durable one, when it became durable minus when it
        was acknowledged (0 when the database had it first).
        """
        lost = unflushed = 0
        lags: list[float] = []
        for start, ack, u in zip(self.starts, self.acks, self._acked):
            if start < warmup_s:
                continue
            durable = self._durable.get(u)
            if durable is not None:
                lags.append(max(0.0, durable - ack))
            elif self._lifetime[u] < self.epoch:
                lost += 1
            else:
                unflushed += 1
        return lost, unflushed, np.asarray(lags, dtype=np.float64)


def lag_summary(lags: np.ndarray) -> dict[str, float | None]:
    """``mean``, ``p50``, ``p99`` and ``max`` of the database lags (``None`` each when there are none)."""
    if lags.size == 0:
        return {"mean": None, "p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(lags, [50, 99]).tolist()
    return {"mean": float(lags.mean()), "p50": p50, "p99": p99, "max": float(lags.max())}


__all__ = ["WriteLedger", "lag_summary"]
