"""What a load run recorded, request by request, and how it is judged.

Every request of a run is one :class:`Record`: the app server that sent it,
read or write, the key, when it started and ended (seconds since the run's
start), the version it returned or committed, whether it failed (and why),
how many database operations it sent and how many cache operations failed on
it. A write also records when its commit returned: from then on the database
held the new version, and a read that begins later and returns an older one
is stale.

:func:`judge` runs the simulator's own oracle (:mod:`wtsim.oracle`) over
the history, and :func:`measured_result` folds it into a
:class:`~wtsim.sim.Result` with the simulator's :class:`~wtsim.sim.metrics.Recorder`,
so the measured result and the predicted one are computed by the same code.
:func:`write_history` saves it as CSV or JSON lines.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

from .. import oracle
from ..sim.driver import Tally
from ..sim.metrics import Recorder, Result
from ..sim.scenario import Scenario

READ, WRITE = "read", "write"


@dataclass(slots=True)
class Record:
    """One request of a load run; times in seconds since the run's start."""

    server: int
    kind: str
    key: int
    start: float
    """When it started; later than ``at`` when the client was busy (the oracle judges from here)."""
    at: float | None = None
    """When the scenario asked for it (the simulator's arrival); ``None``: at ``start`` (a retry)."""
    end: float | None = None
    version: int | None = None
    """The version a read returned, or a write committed; ``None`` when it failed."""
    failed: bool = False
    error: str | None = None
    """Why it failed: the exception's class name (``TimeoutError``: its client gave up)."""
    attempt: int = 0
    """0 for a first attempt, else which retry it is."""
    db_reads: int = 0
    db_writes: int = 0
    cache_errors: int = 0
    committed_version: int | None = None
    """A write's new version once its commit returned (even when the request failed later)."""
    committed_at: float | None = None

    @property
    def latency(self) -> float:
        return (self.end if self.end is not None else self.start) - self.start


FIELDS = tuple(f.name for f in fields(Record))


def judge(records: Iterable[Record], start: float = 0.0) -> list[float | None]:
    """The oracle's staleness of every record, in order: ``None`` for fresh reads, writes and failures."""
    records = list(records)
    history = oracle.History(start)
    for r in records:
        if r.committed_version is not None and r.committed_at is not None:
            history.committed(r.key, r.committed_version, r.committed_at)
    return [history.judge(r.key, r.version, r.start)
            if r.kind == READ and not r.failed and r.version is not None else None
            for r in records]


def measured_result(scenario: Scenario, records: Sequence[Record], policy_stats: dict[str, int],
                    keys_stale_at_rest: int = 0) -> Result:
    """The run's :class:`~wtsim.sim.Result`, folded by the simulator's recorder from the history.

    A request counts in the second it was asked for (``at``), as in the
    simulator, so both count the same requests; its latency runs from when it
    really started (a client busy elsewhere is the load runner's delay, not
    the system's).
    """
    recorder = Recorder(scenario.duration_s, scenario.warmup_s)
    for r, staleness in zip(records, judge(records)):
        tally = Tally(db_reads=r.db_reads, db_writes=r.db_writes, cache_errors=r.cache_errors)
        arrived = r.start if r.at is None else r.at  # counted in the second the simulator counts it in
        if r.kind == READ:
            recorder.read(arrived, r.latency, tally, r.failed, staleness)
        else:
            recorder.write(arrived, r.latency, tally, r.failed)
        if r.error == "TimeoutError":
            recorder.timeout(arrived)
        if r.attempt:
            recorder.retry(arrived)
    return recorder.result(scenario, policy_stats, keys_stale_at_rest=keys_stale_at_rest)


def write_history(records: Sequence[Record], path: str | Path) -> Path:
    """Save the history as CSV (``.csv``) or JSON lines (any other suffix, e.g. ``.jsonl``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staleness = judge(records)
    with path.open("w", newline="", encoding="utf-8") as f:
        if path.suffix.lower() == ".csv":
            writer = csv.writer(f)
            writer.writerow((*FIELDS, "staleness_s"))
            for r, age in zip(records, staleness):
                writer.writerow([_cell(getattr(r, name)) for name in FIELDS] + [_cell(age)])
        else:
            for r, age in zip(records, staleness):
                f.write(json.dumps({**asdict(r), "staleness_s": age}) + "\n")
    return path


def read_history(path: str | Path) -> list[Record]:
    """A history written by :func:`write_history`, back as records (the staleness column is dropped)."""
    path = Path(path)
    records = []
    with path.open(newline="", encoding="utf-8") as f:
        if path.suffix.lower() == ".csv":
            for row in csv.DictReader(f):
                records.append(Record(**{name: _parse(name, row[name]) for name in FIELDS}))
        else:
            for line in f:
                row = json.loads(line)
                records.append(Record(**{name: row[name] for name in FIELDS}))
    return records


def _cell(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


_INTS = {"server", "key", "version", "attempt", "db_reads", "db_writes", "cache_errors", "committed_version"}
_FLOATS = {"start", "at", "end", "committed_at"}


def _parse(name: str, text: str) -> object:
    if name == "failed":
        return text == "True"
    if text == "":
        return None
    if name in _INTS:
        return int(text)
    if name in _FLOATS:
        return float(text)
    return text
