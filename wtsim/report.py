"""The demo report: three simulated scenarios, five figures, one HTML page.

``make demo`` ends with this. It simulates the article's example (with the
cache and without it), a Redis outage (the article's algorithm, versioned
mode, outage repair) and a cache crash under every pattern (``wtsim
compare``), draws the figures with :mod:`wtsim.plots`, and writes
``out/report.html`` beside ``out/figures/*.png``. Seeded: the same run gives
the same numbers, so the page can be compared from one machine to the next.

The HTML is written by hand with :mod:`html` escaping; a template engine would
be a dependency for twenty lines.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import analytic, plots
from .sim import Result, load_scenario, run
from .sim.compare import COLUMNS, compare, comparison_rows

OUTAGE_VARIANTS = {
    "article's algorithm": {"versioned": False, "outage_repair": False},
    "versioned": {"versioned": True, "outage_repair": False},
    "outage repair": {"versioned": False, "outage_repair": True},
}


@dataclass(frozen=True)
class Section:
    """One part of the report: a heading, a few sentences, a figure, a table."""

    title: str
    text: str
    figure: str
    rows: list[tuple[str, ...]]


def write_report(out_dir: str | Path = "out", progress: Callable[[str], None] | None = None) -> Path:
    """Simulate, draw and write ``out_dir/report.html``; return its path."""
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    figures = out / "figures"
    figures.mkdir(parents=True, exist_ok=True)

    say("simulating the article's example, with and without the cache")
    article = load_scenario("article")
    cached, uncached = run(article), run(article.replace(policy="none"))
    say("simulating a Redis outage four ways (three policies, and no breaker)")
    outage = load_scenario("redis-outage")
    variants = {label: run(outage.replace(**changes)) for label, changes in OUTAGE_VARIANTS.items()}
    breakers = {"with the breaker": variants["article's algorithm"], "without": run(outage.replace(breaker=False))}
    say("simulating a cache crash under each pattern")
    patterns = compare(load_scenario("cache-crash"))

    say("drawing the figures")
    _save(plots.db_load_figure(cached, uncached), figures / "db-load.png")
    _save(plots.hit_ratio_figure(variants), figures / "hit-ratio.png")
    _save(plots.stale_reads_figure(variants), figures / "stale-reads.png")
    _save(plots.latency_figure(breakers), figures / "latency.png")
    _save(plots.comparison_figure(patterns), figures / "patterns.png")

    sections = [
        _load_section(cached, uncached),
        Section(
            "Hit ratio through a Redis outage",
            "Redis is unreachable from t = 4 s to t = 7 s. Reads fall back to the database, so the "
            "hit ratio drops to zero and comes back when the cache answers again.",
            "figures/hit-ratio.png",
            [("run", "hit ratio", "DB queries/s")]
            + [(label, _pct(r.hit_ratio), f"{r.db_queries_per_s:,.0f}") for label, r in variants.items()],
        ),
        Section(
            "Stale reads after the outage",
            "Writes during the outage reach the database but not the cache, which still holds the old "
            "values when it comes back. The article's algorithm then serves them until each key is "
            "written again. Versioned mode alone does not help: nothing told the cache about those "
            "writes. Outage repair invalidates those keys before the cache is used again.",
            "figures/stale-reads.png",
            [("run", "stale reads", "max staleness")]
            + [(label, f"{r.stale_reads:,}", _seconds(r.max_staleness_s)) for label, r in variants.items()],
        ),
        Section(
            "Latency percentiles through the outage, with and without the circuit breaker",
            "A hit costs one cache round trip; a miss adds a database read. When Redis stops answering, "
            "every request already in flight waits for the connect timeout: the breaker can only react "
            "once the first timeouts come back. From then on it skips the cache (the late failures of "
            "requests sent before it opened do not prolong that), and one probe per cool-down tries "
            "it again; without it, every request of the outage pays the timeout.",
            "figures/latency.png",
            [("run", "read p50", "read p95", "read p99", "write p99")]
            + [
                (
                    label,
                    _ms(r.read_latency_s["p50"]),
                    _ms(r.read_latency_s["p95"]),
                    _ms(r.read_latency_s["p99"]),
                    _ms(r.write_latency_s["p99"]),
                )
                for label, r in breakers.items()
            ],
        ),
        _patterns_section(patterns),
    ]
    path = out / "report.html"
    path.write_text(_html(sections), encoding="utf-8")
    return path


def _load_section(cached: Result, uncached: Result) -> Section:
    s = cached.scenario
    claim = analytic.article_db_load(s.read_rate, s.write_rate)
    reduction = 1 - cached.db_queries_per_s / uncached.db_queries_per_s
    return Section(
        "Database load with and without the cache",
        f"The article's example: {s.read_rate:,.0f} reads/s and {s.write_rate:,.0f} writes/s over "
        f"{s.n_keys:,} keys (Zipf {s.zipf_alpha}), on a warm cache. The article claims "
        f"{claim['reduction']:.0%} less database load, assuming every read hits; the simulation "
        f"measured {reduction:.1%}.",
        "figures/db-load.png",
        [
            ("run", "DB queries/s", "hit ratio", "read p99"),
            ("write-through", f"{cached.db_queries_per_s:,.0f}", _pct(cached.hit_ratio), _ms(cached.read_latency_s["p99"])),
            ("no cache", f"{uncached.db_queries_per_s:,.0f}", "-", _ms(uncached.read_latency_s["p99"])),
        ],
    )


def _patterns_section(results: dict[str, Result]) -> Section:
    s = next(iter(results.values())).scenario
    behind, through = results.get("write-behind"), results.get("write-through")
    text = (f"The same seeded workload ({s.read_rate:,.0f} reads/s, {s.write_rate:,.0f} writes/s) and the same "
            "fault, a Redis crash with a half-second restart, under each pattern.")
    if behind is not None and through is not None:
        text += (f" Write-behind sends {behind.db_queries_per_s:,.0f} database queries/s against write-through's "
                 f"{through.db_queries_per_s:,.0f} (it batches and coalesces writes) and answers writes in one "
                 f"round trip, but the crash took {behind.writes_lost:,} acknowledged writes with its queue; "
                 f"write-through lost {through.writes_lost:,}.")
    return Section("Every pattern through a cache crash", text, "figures/patterns.png",
                   [COLUMNS] + [tuple(row) for row in comparison_rows(results)])


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=100, bbox_inches="tight")


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1%}"


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def _seconds(seconds: float | None) -> str:
    return "-" if not seconds else f"{seconds:.2f} s"


def _html(sections: list[Section]) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>wtsim report</title>',
        "<style>body{font:18px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "img{max-width:100%}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:.3em .8em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style></head><body>",
        "<h1>wtsim: what the simulator measured</h1>",
        "<p>Simulated with the policy code of <code>wtsim.WriteThroughCache</code>; "
        "scenarios from <code>data/scenarios/</code>; seeded, so the numbers repeat.</p>",
    ]
    for section in sections:
        head, *body = section.rows
        parts.append(f"<h2>{html.escape(section.title)}</h2><p>{html.escape(section.text)}</p>")
        parts.append(f'<img src="{html.escape(section.figure)}" alt="{html.escape(section.title)}">')
        parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>")
        for row in body:
            parts.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
