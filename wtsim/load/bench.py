"""``wtsim bench load``: how many cache-hit reads per second one load-runner process drives.

A warm cache, reads only, every request recorded in the history: the
achieved rate of hits after the warm-up, how late requests started, and
what a hit costs the client in CPU. The issue's target is 2,000 hits/s on a
2-core machine.
"""

from __future__ import annotations

from typing import Any

from ..sim.scenario import Scenario
from .run import run_load

TARGET_HITS_PER_S = 2000.0


def bench_load(redis_url: str | None = None, read_rate: float = 2500.0, duration_s: float = 5.0) -> dict[str, Any]:
    """Run a hits-only scenario at ``read_rate`` for ``duration_s``; answer the achieved figures."""
    scenario = Scenario(name="bench-load", duration_s=duration_s, warmup_s=1.0, seed=0, read_rate=read_rate,
                        write_rate=0.0, n_keys=1000, prefill=True, ttl_s=None)
    run = run_load(scenario, redis_url)
    m = run.measured
    return {
        "read_rate": read_rate,
        "hit_reads_per_s": m.hits / scenario.measured_s,
        "hit_ratio": m.hit_ratio,
        "recorded": len(run.records),
        "started_late_p99_s": run.rate["lag_s"]["p99"],
        "read_p50_s": m.read_latency_s["p50"],
        "cpu_hit_s": run.calibration.cpu_hit_s,
        "redis": run.redis,
        "target": TARGET_HITS_PER_S,
    }


def format_load_bench(figures: dict[str, Any]) -> str:
    """The figures of :func:`bench_load`, the achieved hit rate checked against its target."""
    verdict = "ok" if figures["hit_reads_per_s"] >= figures["target"] else "BELOW TARGET"
    rows = [
        ("Redis", figures["redis"]),
        ("asked", f"{figures['read_rate']:,.0f} reads/s, a warm cache"),
        (f"hits achieved (target >= {figures['target']:,.0f}/s)", f"{figures['hit_reads_per_s']:,.0f}/s  {verdict}"),
        ("requests recorded", f"{figures['recorded']:,}"),
        ("started late, p99", f"{figures['started_late_p99_s'] * 1e3:.1f} ms"),
        ("read p50", f"{figures['read_p50_s'] * 1e3:.2f} ms"),
        ("client CPU a hit", f"{figures['cpu_hit_s'] * 1e6:.0f} µs"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)
