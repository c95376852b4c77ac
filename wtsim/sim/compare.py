"""Every pattern side by side: the same seeded workload and faults, one run per policy.

The runs differ in ``policy`` alone (each named ``<scenario> [policy=...]``),
so the seed gives each the same arrivals, keys and fault coins: what differs
is what the pattern did with them. :func:`compare` runs them (in parallel
with ``jobs``, as :func:`~wtsim.sim.sweep.sweep` does); :func:`format_comparison`
is the table ``wtsim compare`` prints, :func:`wtsim.plots.comparison_figure`
its figure.
"""

from __future__ import annotations

import concurrent.futures
from typing import Mapping, Sequence

from ..policies import POLICIES, policy_module
from .metrics import Result
from .scenario import Scenario
from .sweep import sweep

COMPARED = tuple(POLICIES)
"""The patterns compared by default: every registered one."""


def compare(scenario: Scenario, policies: Sequence[str] = COMPARED, *, jobs: int | None = None,
            executor: concurrent.futures.Executor | None = None, progress: bool = False) -> dict[str, Result]:
    """Run ``scenario`` under each of ``policies``; the results by policy name, in the order given."""
    policies = list(policies)
    if not policies:
        raise ValueError("policies must name at least one pattern")
    for name in policies:
        policy_module(name)  # a bad name lists the registered ones
    if len(set(policies)) != len(policies):
        raise ValueError(f"policies must not repeat a pattern, got {', '.join(policies)}")
    results = sweep(scenario, {"policy": policies}, executor=executor, jobs=jobs, progress=progress)
    return dict(zip(policies, results))


def parse_policies(text: str) -> list[str]:
    """``"none,write-through"`` -> ``["none", "write-through"]``, each name checked."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--policies expects a comma-separated list of {', '.join(POLICIES)}; got {text!r}")
    for name in names:
        policy_module(name)
    return names


COLUMNS = ("policy", "DB q/s", "hit ratio", "read p50", "read p99", "write p50", "write p99",
           "stale reads", "max stale", "keys stale at rest", "writes lost", "DB lag p99", "failed")


def comparison_rows(results: Mapping[str, Result]) -> list[list[str]]:
    """The table's cells, a row per policy, as :data:`COLUMNS`."""
    rows = []
    for name, r in results.items():
        rows.append([
            name,
            f"{r.db_queries_per_s:,.1f}",
            _pct(r.hit_ratio),
            _ms(r.read_latency_s["p50"]),
            _ms(r.read_latency_s["p99"]),
            _ms(r.write_latency_s["p50"]),
            _ms(r.write_latency_s["p99"]),
            f"{r.stale_reads:,}",
            f"{r.max_staleness_s:.3f} s",
            f"{r.keys_stale_at_rest:,}",
            f"{r.writes_lost:,}",
            _ms(r.db_lag_s["p99"]),
            f"{r.errors:,}",
        ])
    return rows


def format_comparison(results: Mapping[str, Result]) -> str:
    """The comparison as an aligned table, under a line naming the scenario, its seed and faults."""
    first = next(iter(results.values()))
    s = first.scenario
    head = s.name.rsplit(" [", 1)[0]
    lines = [f"{head}: {s.duration_s:g} s simulated (the first {s.warmup_s:g} s left out), seed {s.seed}, "
             f"{s.read_rate:g} reads/s + {s.write_rate:g} writes/s"]
    if s.faults:
        lines.append("faults: " + "; ".join(
            f"{f.kind} {f.start_s:g}-{'end' if f.end_s is None else format(f.end_s, 'g')} s" for f in s.faults))
    table = [list(COLUMNS)] + comparison_rows(results)
    widths = [max(len(row[i]) for row in table) for i in range(len(COLUMNS))]
    body = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
            for row in table]
    body.insert(1, "  ".join("-" * w for w in widths))
    unflushed = {name: r.writes_unflushed for name, r in results.items() if r.writes_unflushed}
    notes = [f"{name}: {n:,} acknowledged writes still queued at the end" for name, n in unflushed.items()]
    return "\n".join(lines + [""] + body + ([""] + notes if notes else []))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f} %"


__all__ = ["COLUMNS", "COMPARED", "compare", "comparison_rows", "format_comparison", "parse_policies"]
