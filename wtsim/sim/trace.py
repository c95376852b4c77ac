"""Recorded workloads: replay a CSV trace instead of the Poisson and Zipf one.

``Scenario(trace="FILE.csv")``, or ``wtsim run SCENARIO --trace FILE.csv``. The file:

* a header line naming the columns ``time_s``, ``key`` and ``op`` (in any
  order; other columns are ignored), then one request a line;
* ``time_s``: seconds from the start, ``>= 0``, never decreasing: requests are
  replayed in the file's order, each at its time;
* ``key``: any non-empty string; ``op``: ``read`` or ``write``.

How a trace becomes a run:

* The keys are numbered 1, 2, ... in the order they first appear, so the
  simulated world is the usual one: every key of the trace is a row at version
  1 from the start, and the cache keys are ``wtc:{items:<n>}``. ``n_keys`` is
  not used (the trace's distinct keys are the key space); ``prefill`` warms the
  first keys to appear, the first one most recently.
* ``duration_s`` still ends the run: lines at ``time_s >= duration_s`` are not
  replayed (``wtsim run`` says how many), so a long trace can be replayed in
  part. ``warmup_s`` leaves out the first seconds, as usual.
* ``read_rate``, ``write_rate``, ``zipf_alpha`` and ``bursts`` are unused;
  scripted ``requests`` cannot be combined with a trace. With several
  ``app_servers``, each request goes to one drawn uniformly from the seeded
  servers stream, as the Poisson workload's do.
* The file is read twice, line by line, never whole: once to check it and
  number its keys (:func:`scan`: only the key numbering stays in memory), then
  as the run goes, a few thousand lines at a time (:class:`TraceWorkload`).

Errors are ``ValueError`` naming the file, the line and the column.
:func:`write_trace` writes a scenario's own Poisson workload as a trace, so
that a replay can be checked against the run it came from.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from .workload import READ, WRITE, Chunk, Workload

if TYPE_CHECKING:
    from .scenario import Scenario

COLUMNS = ("time_s", "key", "op")
CHUNK = 4096
"""Lines replayed per piece of arrivals."""


@dataclass(frozen=True)
class TraceInfo:
    """What :func:`scan` found: the key numbering and the counts, up to ``duration_s``."""

    path: str
    duration_s: float
    keys: dict[str, int] = field(repr=False)  # key -> its number, 1 .. n, in order of first appearance
    reads: int
    writes: int
    skipped: int  # lines at time_s >= duration_s: not replayed

    @property
    def n_keys(self) -> int:
        """The distinct keys replayed: the simulated table's rows."""
        return len(self.keys)

    @property
    def requests(self) -> int:
        """The requests replayed."""
        return self.reads + self.writes


def read_trace(path: str | os.PathLike) -> Iterator[tuple[float, str, str]]:
    """``(time_s, key, op)`` of every line of the trace, checked; ValueError naming the file, line and column."""
    name = os.fspath(path)
    try:
        f = open(name, newline="", encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"trace {name}: cannot open it ({exc.strerror or exc})") from None
    with f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"trace {name}: empty; expected a header line {','.join(COLUMNS)}")
            header = [column.strip() for column in header]
            missing = [column for column in COLUMNS if column not in header]
            if missing:
                raise ValueError(f"trace {name} line 1: the header must name the columns "
                                 f"{', '.join(COLUMNS)}; missing {', '.join(missing)} (got {','.join(header)!r})")
            at_time, at_key, at_op = (header.index(column) for column in COLUMNS)
            width = len(header)
            previous = 0.0
            for row in reader:
                if not row:
                    continue  # a blank line
                where = f"trace {name} line {reader.line_num}"
                if len(row) != width:
                    raise ValueError(f"{where}: {len(row)} fields, the header has {width}")
                raw = row[at_time]
                try:
                    at = float(raw)
                except ValueError:
                    raise ValueError(f"{where}, column time_s: not a number: {raw!r}") from None
                if not math.isfinite(at) or at < 0:
                    raise ValueError(f"{where}, column time_s: must be a number of seconds >= 0, got {raw!r}")
                if at < previous:
                    raise ValueError(f"{where}, column time_s: {raw} is before the line above ({previous!r}); "
                                     "times must not decrease (requests are replayed in the file's order)")
                previous = at
                key, op = row[at_key], row[at_op].strip()
                if not key:
                    raise ValueError(f"{where}, column key: empty")
                if op != READ and op != WRITE:
                    raise ValueError(f"{where}, column op: must be 'read' or 'write', got {row[at_op]!r}")
                yield at, key, op
        except csv.Error as exc:
            raise ValueError(f"trace {name} line {reader.line_num}: not valid CSV ({exc})") from None
        except UnicodeDecodeError as exc:
            raise ValueError(f"trace {name}: not UTF-8 text ({exc.reason})") from None


def scan(path: str | os.PathLike, duration_s: float) -> TraceInfo:
    """Check the whole trace and number its keys, in order of first appearance before ``duration_s``.

    Remembered for the file as it is (its path, size and modification time): a
    sweep over one trace reads it once per process.
    """
    name = os.fspath(path)
    try:
        stat = os.stat(name)
    except OSError as exc:
        raise ValueError(f"trace {name}: cannot open it ({exc.strerror or exc})") from None
    return _scan(str(Path(name).resolve()), stat.st_size, stat.st_mtime_ns, float(duration_s), name)


@lru_cache(maxsize=4)
def _scan(resolved: str, size: int, mtime_ns: int, duration_s: float, name: str) -> TraceInfo:
    keys: dict[str, int] = {}
    reads = writes = skipped = 0
    for at, key, op in read_trace(name):
        if at >= duration_s:
            skipped += 1
            continue
        if key not in keys:
            keys[key] = len(keys) + 1
        if op == WRITE:
            writes += 1
        else:
            reads += 1
    return TraceInfo(name, duration_s, keys, reads, writes, skipped)


class TraceWorkload:
    """The trace's requests as pieces of arrivals (``Workload.chunks()``'s shape), up to ``duration_s``."""

    def __init__(self, info: TraceInfo, app_servers: int, servers_rng: np.random.Generator) -> None:
        self.info = info
        self.app_servers = app_servers
        self._servers = servers_rng

    def chunks(self) -> Iterator[Chunk]:
        """Times, is_write flags, key numbers and app servers, :data:`CHUNK` lines at a time."""
        numbers, end = self.info.keys, self.info.duration_s
        times: list[float] = []
        writes: list[bool] = []
        keys: list[int] = []
        for at, key, op in read_trace(self.info.path):
            if at >= end:
                break  # times never decrease: the rest is later still
            times.append(at)
            writes.append(op == WRITE)
            keys.append(numbers[key])
            if len(times) == CHUNK:
                yield times, writes, keys, self._draw(len(times))
                times, writes, keys = [], [], []
        if times:
            yield times, writes, keys, self._draw(len(times))

    def _draw(self, n: int) -> list[int]:
        if self.app_servers > 1:
            return self._servers.integers(self.app_servers, size=n).tolist()
        return [0] * n


def write_trace(path: str | os.PathLike, scenario: Scenario) -> int:
    """Write ``scenario``'s Poisson and Zipf arrivals (seeded, bursts included) as a trace; the lines written.

    Keys are written as their numbers (``"1"`` is the most popular), times with
    every digit (``repr``), so a replay of the trace sees the very arrivals of
    the scenario's own run. Scripted ``requests`` are not included.
    """
    s = scenario
    # the first three of the streams Simulation spawns from the seed: arrival times, keys, app servers
    arrivals, keys, servers = (np.random.default_rng(seq) for seq in np.random.SeedSequence(s.seed).spawn(6)[:3])
    workload = Workload(
        duration_s=s.duration_s, read_rate=s.read_rate, write_rate=s.write_rate, n_keys=s.n_keys,
        zipf_alpha=s.zipf_alpha, app_servers=s.app_servers, bursts=s.bursts,
        arrivals_rng=arrivals, keys_rng=keys, servers_rng=servers,
    )
    lines = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        f.write(",".join(COLUMNS) + "\n")
        for times, is_write, numbers, _servers in workload.chunks():
            f.writelines(f"{at!r},{key},{WRITE if write else READ}\n"
                         for at, write, key in zip(times, is_write, numbers))
            lines += len(times)
    return lines
