"""The workload: who asks for what, and when.

Reads and writes arrive as two independent Poisson processes, at
``read_rate`` and ``write_rate`` per second, on keys drawn from the same Zipf
popularity (:func:`wtsim.analytic.zipf_popularity`; key 1 is the most popular)
and spread uniformly over the app servers. A :class:`Burst` multiplies the
rates inside a window, for a "Black Friday" surge; overlapping bursts multiply.

Arrivals are generated one simulated second at a time (split further at burst
edges, so each piece has a constant rate): the number of arrivals in a piece of
length ``L`` is Poisson with mean ``rate * L`` and, given that number, their
times are independent and uniform over the piece. That is exactly a Poisson
process, drawn with a few vectorised numpy calls instead of one call per
request, and it never holds more than a second of arrivals in memory.

Each kind of randomness has its own generator (arrival times, keys, servers),
spawned from the scenario's seed by :mod:`wtsim.sim.run`, so adding a write
burst does not shift which keys the reads pick.

A :class:`Request` is one scripted request at a given time: a way to tell a
small story (the read-populate race, step by step) with no randomness at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..analytic import zipf_popularity

READ = "read"
WRITE = "write"


def _number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class Burst:
    """Multiply the read and write rates by ``read_factor`` and ``write_factor`` in ``[start_s, end_s)``."""

    start_s: float
    end_s: float
    read_factor: float = 1.0
    write_factor: float = 1.0

    def __post_init__(self) -> None:
        if not _number(self.start_s) or self.start_s < 0:
            raise ValueError(f"burst start_s must be a number of seconds >= 0, got {self.start_s!r}")
        if not _number(self.end_s) or self.end_s <= self.start_s:
            raise ValueError(f"burst end_s must be a number of seconds > start_s ({self.start_s}), got {self.end_s!r}")
        for name in ("read_factor", "write_factor"):
            value = getattr(self, name)
            if not _number(value) or value < 0:
                raise ValueError(f"burst {name} must be a number >= 0, got {value!r}")

    def to_dict(self) -> dict:
        """The burst as a plain dict."""
        return {"start_s": self.start_s, "end_s": self.end_s,
                "read_factor": self.read_factor, "write_factor": self.write_factor}


@dataclass(frozen=True, slots=True)
class Request:
    """A scripted request: ``kind`` ("read" or "write") of ``key`` at ``at_s``, on app server ``server``."""

    at_s: float
    kind: str
    key: int
    server: int = 0

    def __post_init__(self) -> None:
        if not _number(self.at_s) or self.at_s < 0:
            raise ValueError(f"request at_s must be a number of seconds >= 0, got {self.at_s!r}")
        if self.kind not in (READ, WRITE):
            raise ValueError(f"request kind must be 'read' or 'write', got {self.kind!r}")
        for name in ("key", "server"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "key" else 0):
                raise ValueError(f"request {name} must be an integer >= {1 if name == 'key' else 0}, got {value!r}")

    def to_dict(self) -> dict:
        """The request as a plain dict."""
        return {"at_s": self.at_s, "kind": self.kind, "key": self.key, "server": self.server}


Chunk = tuple[list[float], list[bool], list[int], list[int]]
"""One piece of arrivals: times, is_write flags, keys, server indexes; sorted by time."""

SLICE = 1024
"""Arrivals handed out at a time: a second's are drawn together, then turned into Python lists this many
at a time (10,000 Python floats and ints would not stay in the CPU's caches until they are used)."""


class Workload:
    """Poisson reads and writes over Zipf-popular keys, generated a second at a time."""

    def __init__(
        self,
        *,
        duration_s: float,
        read_rate: float,
        write_rate: float,
        n_keys: int,
        zipf_alpha: float,
        app_servers: int,
        bursts: tuple[Burst, ...],
        arrivals_rng: np.random.Generator,
        keys_rng: np.random.Generator,
        servers_rng: np.random.Generator,
    ) -> None:
        self.duration_s = duration_s
        self.rates = (read_rate, write_rate)
        self.app_servers = app_servers
        self.bursts = bursts
        self._arrivals = arrivals_rng
        self._keys = keys_rng
        self._servers = servers_rng
        self.popularity = zipf_popularity(n_keys, zipf_alpha)
        self._cdf = np.cumsum(self.popularity)
        self._cdf[-1] = 1.0  # float rounding must not leave a gap above the last key

    def pieces(self) -> Iterator[tuple[float, float, float, float]]:
        """``(start, end, read_rate, write_rate)`` pieces of constant rate covering the run."""
        edges = {float(s) for s in range(math.ceil(self.duration_s))} | {0.0, float(self.duration_s)}
        for burst in self.bursts:
            edges |= {burst.start_s, burst.end_s}
        edges = sorted(e for e in edges if 0.0 <= e <= self.duration_s)
        for start, end in zip(edges, edges[1:]):
            read, write = self.rates
            for burst in self.bursts:
                if burst.start_s <= start and end <= burst.end_s:
                    read *= burst.read_factor
                    write *= burst.write_factor
            yield start, end, read, write

    def chunks(self) -> Iterator[Chunk]:
        """The arrivals of the whole run, one piece at a time, in slices of :data:`SLICE`."""
        rng = self._arrivals
        for start, end, read_rate, write_rate in self.pieces():
            length = end - start
            n_reads = rng.poisson(read_rate * length) if read_rate > 0 else 0
            n_writes = rng.poisson(write_rate * length) if write_rate > 0 else 0
            n = n_reads + n_writes
            if n == 0:
                continue
            times = start + rng.random(n) * length
            order = np.argsort(times, kind="stable")
            is_write = order >= n_reads
            keys = np.searchsorted(self._cdf, self._keys.random(n), side="right") + 1
            servers = self._servers.integers(self.app_servers, size=n) if self.app_servers > 1 else None
            times = times[order]
            for at in range(0, n, SLICE):  # as Python lists a slice at a time: they stay in the CPU's cache
                part = slice(at, at + SLICE)
                keys_part = keys[part].tolist()
                yield (times[part].tolist(), is_write[part].tolist(), keys_part,
                       [0] * len(keys_part) if servers is None else servers[part].tolist())
