"""What a run measured: per-request records folded into totals, a timeline, and a Result.

Rules of this module:

* A request belongs to the second it *arrived* in. The timeline has one row per
  simulated second, warm-up included (so a cold start can be seen); the totals
  leave out requests that arrived during ``[0, warmup_s)``.
* A read is a *hit* when it succeeded and never went to the database, a *miss*
  otherwise: it sent a ``DbRead`` (whether or not the database answered), or it
  failed (a client that gave up waiting for another reader's lease sent no
  query, and got no answer either). ``hits + misses == reads``.
* ``db_reads`` and ``db_writes`` count the database operations sent;
  ``db_queries_per_s`` is their sum over the measured window's length. Under
  write-behind a write's database op is its flusher's batch (one transaction,
  counted when it is sent), plus the base-version read of a write that found
  nothing cached (counted with the reads).
* Durability (write-behind; zero for the others, whose writes are committed
  before they are acknowledged): ``writes_lost``, ``writes_unflushed`` and
  ``db_lag_s`` come from the :class:`~wtsim.sim.ledger.WriteLedger`;
  ``queue_max`` and the timeline's ``queue`` are the longest the queue got.
* ``errors`` counts requests that failed: they raised (the database was down,
  a write-behind queue was full or unreachable) or their client gave up
  (``timeouts``, recorded when it gave up, latency not counted);
  ``cache_errors`` counts cache ops that failed and were handled by the policy.
  Latencies are those of the requests that succeeded.
* Stale reads are judged by :func:`wtsim.oracle.staleness` (in the simulator
  through :meth:`wtsim.sim.world.SimDB.staleness`, or the write-behind
  ledger's): a read is stale when it returned a version older than the newest
  one current when it began; its staleness is how long the version after the
  returned one had been current, at that moment. The recorder is given each
  read's staleness and judges nothing itself.
* ``consistency`` is :func:`wtsim.oracle.consistency` over the measured reads
  that did not fail (each returned a version): the share fresh, and at most
  1 s, 10 s, 60 s stale. ``keys_stale_at_rest`` is counted by the caller once
  the run is over (:func:`wtsim.oracle.stale_at_rest`), and passed in.
* Undefined figures (a hit ratio without reads, a percentile without samples)
  are ``None``, never NaN, so :meth:`Result.to_dict` is valid JSON.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .. import oracle
from .driver import Tally
from .ledger import WriteLedger, lag_summary
from .scenario import Scenario

TIMELINE_FIELDS = ("reads", "writes", "hits", "misses", "db_reads", "db_writes",
                   "stale_reads", "cache_errors", "errors", "timeouts", "retries", "queue")


class Recorder:
    """Collects what each request did, while the simulation runs; :meth:`result` folds it.

    Every request appends its arrival time, its latency (NaN when it failed)
    and its number of database ops to compact columns (``array('d')``, 8 bytes
    a number); the rare events (cache errors, stale reads) go to short lists.
    At the end numpy counts them per second and after the warm-up. It judges
    nothing: whatever recorded the requests (the simulator, a real-time load
    run) passes in each read's staleness and, at the end, the keys stale at rest.
    """

    def __init__(self, duration_s: float, warmup_s: float) -> None:
        self.duration_s = duration_s
        self.warmup_s = warmup_s
        self.read_starts, self.read_latencies, self.read_db = array("d"), array("d"), array("d")
        self.write_starts, self.write_latencies, self.write_db = array("d"), array("d"), array("d")
        self.write_db_reads: list[tuple[float, int]] = []  # (arrival, how many): write-behind base reads
        self.flush_writes = array("d")  # when each flusher transaction was sent
        self.queue_max = [0] * math.ceil(duration_s)  # the longest the queue got, per second
        self.queue_max_measured = 0
        self._queue_length = 0
        self._queue_second = 0
        self.cache_errors: list[tuple[float, int]] = []  # (arrival, how many)
        self.stale: list[tuple[float, float]] = []  # (arrival, staleness)
        self.db_waits = array("d")
        self.timeouts = array("d")  # arrival of each request whose client gave up
        self.retries = array("d")  # arrival of each retry

    def read(self, start: float, latency: float, tally: Tally, failed: bool, staleness: float | None) -> None:
        """Record one read that arrived at ``start``."""
        self.read_starts.append(start)
        self.read_latencies.append(math.nan if failed else latency)
        self.read_db.append(tally.db_reads)
        if tally.cache_errors:
            self.cache_errors.append((start, tally.cache_errors))
        if staleness is not None:
            self.stale.append((start, staleness))

    def write(self, start: float, latency: float, tally: Tally, failed: bool) -> None:
        """Record one write that arrived at ``start``."""
        self.write_starts.append(start)
        self.write_latencies.append(math.nan if failed else latency)
        self.write_db.append(tally.db_writes)
        if tally.db_reads:
            self.write_db_reads.append((start, tally.db_reads))
        if tally.cache_errors:
            self.cache_errors.append((start, tally.cache_errors))

    def timeout(self, start: float) -> None:
        """Record that the client of the request that arrived at ``start`` gave up on it."""
        self.timeouts.append(start)

    def retry(self, start: float) -> None:
        """Record that the request arriving at ``start`` is a client's retry."""
        self.retries.append(start)

    def flush_write(self, sent: float) -> None:
        """Record one write-behind flusher transaction sent at ``sent``."""
        self.flush_writes.append(sent)

    def queue(self, now: float, length: int) -> None:
        """Record that the write-behind queue holds ``length`` entries from ``now`` on."""
        second, seconds = int(now), len(self.queue_max)
        for t in range(self._queue_second + 1, min(second, seconds - 1) + 1):
            self.queue_max[t] = self._queue_length  # the seconds it did not change in: what it held
        self._queue_second = max(self._queue_second, second)
        if second < seconds and length > self.queue_max[second]:
            self.queue_max[second] = length
        if now >= self.warmup_s and length > self.queue_max_measured:
            self.queue_max_measured = length
        self._queue_length = length

    def db_wait(self, issued: float, wait: float) -> None:
        """Record how long a database op sent at ``issued`` waited for a connection."""
        if issued >= self.warmup_s:
            self.db_waits.append(wait)

    def result(self, scenario: Scenario, policy_stats: dict[str, int], scripted: list[dict] | None = None,
               measured_stats: dict[str, int] | None = None, ledger: WriteLedger | None = None,
               flush_stats: dict[str, int] | None = None, *, keys_stale_at_rest: int = 0) -> Result:
        """Fold everything into a :class:`Result`.

        ``measured_stats``: the policy counters after the warm-up; ``ledger``
        and ``flush_stats``: the write-behind oracle and flushers, if any;
        ``keys_stale_at_rest``: how many keys the cache held stale at the end.
        """
        measured_stats = measured_stats or {}
        for t in range(self._queue_second + 1, len(self.queue_max)):
            self.queue_max[t] = self._queue_length
        seconds = math.ceil(self.duration_s)
        warmup = self.warmup_s
        r_start, r_lat, r_db = (np.frombuffer(a) for a in (self.read_starts, self.read_latencies, self.read_db))
        w_start, w_lat, w_db = (np.frombuffer(a) for a in (self.write_starts, self.write_latencies, self.write_db))
        e_start, e_count = _columns(self.cache_errors)
        s_start, s_age = _columns(self.stale)
        b_start, b_count = _columns(self.write_db_reads)
        f_start = np.frombuffer(self.flush_writes)
        t_start, y_start = np.frombuffer(self.timeouts), np.frombuffer(self.retries)

        def per_second(starts: np.ndarray, weights: np.ndarray | None = None) -> list[int]:
            counts = np.bincount(starts.astype(np.int64), weights=weights, minlength=seconds)
            return [int(round(c)) for c in counts[:seconds]]

        r_failed, w_failed = np.isnan(r_lat), np.isnan(w_lat)
        r_hit = (r_db == 0) & ~r_failed
        columns = {
            "reads": per_second(r_start),
            "writes": per_second(w_start),
            "hits": per_second(r_start[r_hit]),
            "misses": per_second(r_start[~r_hit]),
            "db_reads": [a + b for a, b in zip(per_second(r_start, r_db), per_second(b_start, b_count))],
            "db_writes": [a + b for a, b in zip(per_second(w_start, w_db), per_second(f_start))],
            "stale_reads": per_second(s_start),
            "cache_errors": per_second(e_start, e_count),
            "errors": per_second(np.concatenate([r_start[r_failed], w_start[w_failed]])),
            "timeouts": per_second(t_start),
            "retries": per_second(y_start),
            "queue": self.queue_max,
        }
        timeline = [{"t": t, **{name: columns[name][t] for name in TIMELINE_FIELDS}} for t in range(seconds)]

        r_in, w_in, s_in = r_start >= warmup, w_start >= warmup, s_start >= warmup
        reads, writes = int(r_in.sum()), int(w_in.sum())
        hits = int((r_in & r_hit).sum())
        stale_reads = int(s_in.sum())
        db_reads = int(r_db[r_in].sum()) + int(b_count[b_start >= warmup].sum())
        db_writes = int(w_db[w_in].sum()) + int((f_start >= warmup).sum())
        staleness = s_age[s_in]
        returned = int((r_in & ~r_failed).sum())  # the reads that returned a version
        if ledger is not None:
            lost, unflushed, lags = ledger.outcome(warmup)
        else:  # committed before acknowledged: nothing to lose, no lag
            lost = unflushed = 0
            lags = np.zeros(int((w_in & ~w_failed).sum()))
        return Result(
            scenario=scenario,
            reads=reads,
            writes=writes,
            hits=hits,
            misses=reads - hits,
            hit_ratio=_ratio(hits, reads),
            db_reads=db_reads,
            db_writes=db_writes,
            db_queries_per_s=(db_reads + db_writes) / scenario.measured_s,
            read_latency_s=latency_summary(r_lat[r_in & ~r_failed]),
            write_latency_s=latency_summary(w_lat[w_in & ~w_failed]),
            db_wait_mean_s=float(np.mean(self.db_waits)) if len(self.db_waits) else None,
            errors=int((r_in & r_failed).sum() + (w_in & w_failed).sum()),
            cache_errors=int(e_count[e_start >= warmup].sum()),
            stale_reads=stale_reads,
            stale_read_ratio=_ratio(stale_reads, reads),
            max_staleness_s=float(staleness.max()) if stale_reads else 0.0,
            mean_staleness_s=float(staleness.mean()) if stale_reads else None,
            consistency=oracle.consistency(returned, staleness.tolist()),
            keys_stale_at_rest=keys_stale_at_rest,
            lease_waits=measured_stats.get("lease_waits", 0),
            early_recomputes=measured_stats.get("early_recomputes", 0),
            timeouts=int((t_start >= warmup).sum()),
            retries=int((y_start >= warmup).sum()),
            writes_lost=lost,
            writes_unflushed=unflushed,
            db_lag_s=lag_summary(lags),
            queue_max=self.queue_max_measured,
            timeline=timeline,
            policy_stats=policy_stats,
            flush_stats=flush_stats or {},
            scripted=scripted or [],
        )


def _columns(pairs: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    if not pairs:
        return np.zeros(0), np.zeros(0)
    table = np.asarray(pairs, dtype=np.float64)
    return table[:, 0], table[:, 1]


@dataclass(frozen=True, slots=True)
class Result:
    """The measurements of one run, after the warm-up. Rates per second, times in seconds."""

    scenario: Scenario
    reads: int
    writes: int
    hits: int
    misses: int
    hit_ratio: float | None
    db_reads: int
    db_writes: int
    db_queries_per_s: float
    read_latency_s: dict[str, float | None]
    write_latency_s: dict[str, float | None]
    db_wait_mean_s: float | None
    errors: int
    cache_errors: int
    stale_reads: int
    stale_read_ratio: float | None
    max_staleness_s: float
    mean_staleness_s: float | None
    consistency: dict[str, float | None]
    """The share of the reads that returned a version that were ``fresh``, and at most ``1s``, ``10s``,
    ``60s`` stale (:func:`wtsim.oracle.consistency`; ``None`` each without such reads)."""
    keys_stale_at_rest: int
    """Keys whose cached entry was older than the database's row once the run was over (requests done,
    write-behind drained): they stay wrong until their TTL (:func:`wtsim.oracle.stale_at_rest`)."""
    lease_waits: int
    """Waits for another reader's lease (``leases``), counted by the policies after the warm-up."""
    early_recomputes: int
    """Hits that recomputed early (``early_recompute_beta``), counted by the policies after the warm-up."""
    timeouts: int
    """Requests whose client gave up (``request_timeout_s``); each is also one of the ``errors``."""
    retries: int
    """Requests that were a client's retry; each is also one of the reads or writes."""
    writes_lost: int
    """Acknowledged writes the database never got: a crash took them with the write-behind queue."""
    writes_unflushed: int
    """Acknowledged writes still queued at the end (the flushers down, or the drain out of time): not lost yet."""
    db_lag_s: dict[str, float | None]
    """``mean``, ``p50``, ``p99``, ``max`` of commit time minus acknowledge time; 0 when committed first."""
    queue_max: int
    """The longest the write-behind queue got after the warm-up (0 for the other policies)."""
    timeline: list[dict[str, int]] = field(repr=False)
    policy_stats: dict[str, int] = field(repr=False)
    """The app servers' :class:`~wtsim.policies.CacheStats`, summed, for the whole run (warm-up included)."""
    flush_stats: dict[str, int] = field(repr=False, default_factory=dict)
    """The write-behind flushers' :class:`~wtsim.policies.flush.FlushStats`, summed (empty otherwise)."""
    scripted: list[dict[str, Any]] = field(repr=False, default_factory=list)
    """One dict per scripted request (``Scenario.requests``), warm-up or not: the request, the
    ``version`` it returned (or wrote), ``latency_s``, ``staleness_s`` (``None``: fresh),
    ``failed``, and ``ops``: when each op was sent."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe data: no NaN or infinity (``None`` instead), the scenario as a dict."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.to_dict() if f.name == "scenario" else _json_safe(value)
        return out


def latency_summary(samples: np.ndarray) -> dict[str, float | None]:
    """``mean``, ``p50``, ``p95`` and ``p99`` of ``samples`` (``None`` each when empty)."""
    values = np.asarray(samples, dtype=np.float64)
    if values.size == 0:
        return {"mean": None, "p50": None, "p95": None, "p99": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99]).tolist()
    return {"mean": float(values.mean()), "p50": p50, "p95": p95, "p99": p99}


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
