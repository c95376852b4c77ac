"""wtsim.plots: every figure of the package, for the notebooks, ``wtsim run --plot`` and the demo report.

Rules of this module:

* Each function returns a :class:`matplotlib.figure.Figure` built *without*
  pyplot: nothing is left open in pyplot's registry and no GUI backend is
  needed, so the CLI and the report just ``fig.savefig(path)``. In Jupyter a
  figure shows when it is a cell's last expression, or with ``display(fig)``.
* Sized for a projector: large fonts, thick lines, a title, axes labelled with
  their units. The style (:data:`STYLE`) is applied to each figure with
  ``matplotlib.rc_context`` while it is built; the caller's settings are
  never changed.
* Colour-blind safe: the Okabe-Ito palette, and lines that also differ in
  their dash pattern, so they can be told apart in grey too.
* Units: simulated seconds on time axes, rates per second, latencies in
  milliseconds, ratios in percent. A timeline's value for second ``t`` is
  drawn as a step over ``[t, t+1)`` (requests belong to the second they
  arrived in, as in :mod:`wtsim.sim.metrics`).
* Fault windows (``result.scenario.faults``) are shaded and labelled with their
  kind; the warm-up, left out of a Result's totals, is shaded grey.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, PercentFormatter
from matplotlib.transforms import blended_transform_factory

from . import analytic

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .sim import Fault, Result

__all__ = [
    "COLORS",
    "STYLE",
    "article_load_figure",
    "comparison_figure",
    "queue_figure",
    "compact_png",
    "show_compact_png",
    "db_load_figure",
    "db_reads_figure",
    "db_wait_figure",
    "early_recompute_figure",
    "hit_ratio_figure",
    "hit_ratio_sweep_figure",
    "latency_figure",
    "recovery_figure",
    "stale_reads_figure",
    "timeline_figure",
    "timelines_figure",
]

# Okabe & Ito (2008), without the yellow, which fades on a projector.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#56B4E9", "#E69F00", "#000000")
"""Line colours, in the order runs are drawn: blue, vermillion, green, purple, sky blue, orange, black."""
DASHES = ("-", "--", "-.", ":")
FAULT_COLOR = "#E69F00"  # orange, translucent
WARMUP_COLOR = "0.85"
PERCENTILE_COLORS = {"p50": "#56B4E9", "p95": "#0072B2", "p99": "#D55E00"}

STYLE: dict[str, Any] = {
    "figure.dpi": 100,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "font.size": 14,
    "axes.titlesize": 17,
    "axes.labelsize": 15,
    "figure.titlesize": 18,
    "xtick.labelsize": 13,
    "ytick.labelsize": 13,
    "legend.fontsize": 13,
    "legend.title_fontsize": 13,
    "lines.linewidth": 2.5,
    "lines.markersize": 8,
    "axes.grid": True,
    "grid.alpha": 0.35,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=COLORS),
    "axes.formatter.use_mathtext": True,
}
"""The rc settings every figure of this module is built with."""

WIDE = (11.0, 5.5)  # one panel
TALL = (11.0, 8.5)  # three stacked panels

FIELD_LABELS = {
    "cache_capacity": "cache capacity (keys)",
    "ttl_s": "TTL (s)",
    "zipf_alpha": "Zipf skew α (0 = uniform)",
    "read_rate": "reads per second",
    "write_rate": "writes per second",
    "n_keys": "number of keys",
    "cache_rtt_s": "cache round trip (s)",
    "db_connections": "DB connections",
}


# -- small PNGs for notebooks -------------------------------------------------------------------------


def compact_png(fig: Figure, dpi: int = 100) -> bytes:
    """``fig`` as a 256-colour PNG: about a third of matplotlib's bytes, the same to the eye.

    The figures are flat colours on white, so a palette loses nothing visible,
    and a notebook that shows ten of them stays small enough to share.
    """
    from PIL import Image  # matplotlib's own dependency

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").quantize(256)
    out = io.BytesIO()
    image.save(out, format="png", optimize=True)
    return out.getvalue()


def show_compact_png(dpi: int = 100) -> None:
    """In Jupyter or IPython: display every Figure as a :func:`compact_png` from now on."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("show_compact_png works inside Jupyter or IPython only")
    shell.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: compact_png(fig, dpi))


# -- helpers ----------------------------------------------------------------------------------------


def _figure(figsize: tuple[float, float]) -> Figure:
    """A white Figure with constrained layout, outside pyplot (call inside the style's rc_context)."""
    return Figure(figsize=figsize, layout="constrained")


def _style(i: int) -> dict[str, Any]:
    """Colour and dash pattern of the ``i``-th line of a figure."""
    return {"color": COLORS[i % len(COLORS)], "linestyle": DASHES[i % len(DASHES)]}


HEADROOM = 1.25  # y limits leave the top fifth free for the labels of the shaded windows


def _counts(ax: Axes, highest: float | None = None) -> None:
    """A y axis of counts per second: from 0, whole numbers with thousands separators, headroom."""
    top = ax.get_ylim()[1] if highest is None else highest
    ax.set_ylim(0, max(top, 1.0) * HEADROOM)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=True))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))


def _percent(ax: Axes) -> None:
    """A y axis of hit ratios: 0-100 %, with room above 100 for the labels of the shaded windows."""
    ax.set_ylim(0, 100 * HEADROOM)
    ax.yaxis.set_major_locator(FixedLocator([0, 20, 40, 60, 80, 100]))
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))


def _steps(result: Result, value: Callable[[dict, float], float]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` for ``ax.step(where="post")``: one value per timeline second, the last step closed."""
    rows = result.timeline
    duration = result.scenario.duration_s
    x = np.array([row["t"] for row in rows] + [duration], dtype=float)
    y = np.array([value(row, min(1.0, duration - row["t"])) for row in rows], dtype=float)
    return x, np.append(y, y[-1:]) if len(y) else y


def _db_rate(row: dict, width: float) -> float:
    return (row["db_reads"] + row["db_writes"]) / width


def _hit_pct(row: dict, width: float) -> float:
    return 100.0 * row["hits"] / row["reads"] if row["reads"] else math.nan


def _stale_rate(row: dict, width: float) -> float:
    return row["stale_reads"] / width


def _fault_text(fault: Fault) -> str:
    text = fault.kind
    if fault.kind == "partition" and fault.servers is not None:
        text += f" ({fault.servers} server{'s' if fault.servers > 1 else ''})"
    elif fault.servers is not None:
        text += f" (servers 0-{fault.servers - 1})"
    if fault.probability != 1.0:
        text += f", p={fault.probability:g}"
    if fault.factor is not None:
        text += f", ×{fault.factor:g}"
    return text


def _shade(axes: Sequence[Axes], results: Sequence[Result]) -> None:
    """Shade the warm-up (grey) and every distinct fault window (orange) on each of ``axes``.

    Both are named at the top of the first axes; a flush without an end is an instant, drawn as a line.
    """
    if not results:
        return
    warmup = results[0].scenario.warmup_s
    duration = max(r.scenario.duration_s for r in results)
    faults: list[Fault] = []
    for r in results:
        faults += [f for f in r.scenario.faults if f not in faults]
    for n, ax in enumerate(axes):
        if warmup > 0:
            ax.axvspan(0, warmup, color=WARMUP_COLOR, alpha=0.6, lw=0, zorder=0)
            if n == 0:
                narrow = warmup < 0.075 * duration
                ax.text(warmup / 2, 0.98, "warm-up", transform=_top(ax), ha="center", va="top",
                        fontsize=10 if narrow else 12, color="0.3", rotation=90 if narrow else 0)
        for i, fault in enumerate(faults):
            if fault.kind == "cache-flush" and fault.end_s is None:
                ax.axvline(fault.start_s, color=FAULT_COLOR, lw=3, zorder=0.5)
            else:
                end = duration if fault.end_s is None else fault.end_s
                ax.axvspan(fault.start_s, end, color=FAULT_COLOR, alpha=0.2, lw=0, zorder=0)
            if n == 0:  # staggered, in case windows overlap
                ax.text(fault.start_s, 0.98 - 0.09 * (i % 3), " " + _fault_text(fault), transform=_top(ax),
                        va="top", fontsize=12, color="#8a5a00", fontweight="bold", zorder=5,
                        bbox={"facecolor": "white", "alpha": 0.7, "edgecolor": "none", "pad": 1.5})


def _top(ax: Axes):
    """Data x, axes-fraction y: for labels pinned to the top of a time axis."""
    return blended_transform_factory(ax.transData, ax.transAxes)


def _time_axis(ax: Axes, results: Sequence[Result]) -> None:
    ax.set_xlabel("simulated time (s)")
    ax.set_xlim(0, max(r.scenario.duration_s for r in results))


def _legend_below(fig: Figure, ax: Axes, ncols: int | None = None) -> None:
    """The legend outside the plot, under it, where it cannot hide a line."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ncols = ncols or (1 if any(len(label) > 34 for label in labels) else min(len(labels), 3))
        fig.legend(handles, labels, loc="outside lower center", ncols=ncols, frameon=False)


def _run_label(result: Result) -> str:
    s = result.scenario
    if s.policy == "none":
        return "no cache"
    return s.policy + (", versioned" if s.versioned else "")


def _pct(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{100 * ratio:.1f} %"


def _measured_hit_ratio(result: Result) -> str:
    """``Result.hit_ratio`` in words: "83.2 % after warm-up", or "mean 83.2 %" when nothing was left out."""
    if result.scenario.warmup_s > 0:
        return f"{_pct(result.hit_ratio)} after warm-up"
    return f"mean {_pct(result.hit_ratio)}"


def _check_results(results: Mapping[str, Result], what: str) -> list[tuple[str, Result]]:
    items = list(results.items())
    if not items:
        raise ValueError(f"{what} needs at least one labelled Result, got none")
    return items


# -- one run ----------------------------------------------------------------------------------------


def timeline_figure(result: Result, title: str | None = None) -> Figure:
    """One run second by second: DB queries/s (reads, writes), hit ratio and stale reads.

    This is the figure of ``wtsim run --plot``. Failed requests (the database
    down) are added to the bottom panel when there are any.
    """
    s = result.scenario
    with mpl.rc_context(STYLE):
        fig = _figure(TALL)
        db_ax, hit_ax, stale_ax = fig.subplots(3, 1, sharex=True)
        for i, (label, value) in enumerate([
            ("all DB queries", _db_rate),
            ("DB reads", lambda row, w: row["db_reads"] / w),
            ("DB writes", lambda row, w: row["db_writes"] / w),
        ]):
            db_ax.step(*_steps(result, value), where="post", label=label, **_style(i))
        db_ax.set_ylabel("DB queries / s")
        _counts(db_ax)
        db_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)

        hit_ax.step(*_steps(result, _hit_pct), where="post", color=COLORS[0],
                    label=f"hit ratio ({_measured_hit_ratio(result)})")
        hit_ax.set_ylabel("hit ratio (%)")
        _percent(hit_ax)
        hit_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)

        stale_ax.step(*_steps(result, _stale_rate), where="post", color=COLORS[1],
                      label=f"stale reads ({result.stale_reads:,})")
        top = max([1, *(row["stale_reads"] for row in result.timeline)])
        if any(row["errors"] for row in result.timeline):
            stale_ax.step(*_steps(result, lambda row, w: row["errors"] / w), where="post",
                          label=f"failed requests ({result.errors:,})", **_style(2))
            top = max(top, *(row["errors"] for row in result.timeline))
        stale_ax.set_ylabel("per second")
        _counts(stale_ax, top)
        stale_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        _time_axis(stale_ax, [result])
        _shade([db_ax, hit_ax, stale_ax], [result])
        fig.suptitle(title or f"{s.name}: {_run_label(result)}, {s.read_rate:,.0f} reads/s, "
                              f"{s.write_rate:,.0f} writes/s")
    return fig


def db_load_figure(with_cache: Result, without_cache: Result, title: str | None = None) -> Figure:
    """Database queries per second over time, for two runs (e.g. write-through and policy "none").

    The legend gives each run's mean after the warm-up (``Result.db_queries_per_s``);
    a note on the plot, the reduction the first run achieves against the second.
    """
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        runs = [(_run_label(with_cache), with_cache), (_run_label(without_cache), without_cache)]
        if runs[0][0] == runs[1][0]:
            runs = [(r.scenario.name, r) for _, r in runs]
        for i, (label, r) in enumerate(runs):
            ax.step(*_steps(r, _db_rate), where="post", label=f"{label}: mean {r.db_queries_per_s:,.0f} queries/s",
                    **_style(i))
        ax.set_ylabel("DB queries / s")
        _counts(ax)
        _time_axis(ax, [with_cache, without_cache])
        _shade([ax], [with_cache, without_cache])
        if without_cache.db_queries_per_s > 0:
            reduction = 1 - with_cache.db_queries_per_s / without_cache.db_queries_per_s
            change = f"{100 * abs(reduction):.1f} % {'less' if reduction >= 0 else 'more'} DB load"
            ax.text(0.98, 0.5, f"{runs[0][0]}:\n{change}", transform=ax.transAxes,
                    ha="right", va="center", fontsize=15, fontweight="bold",
                    bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.4"})
        ax.set_title(title or f"Database load: {runs[0][0]} against {runs[1][0]}")
        _legend_below(fig, ax, ncols=2)
    return fig


# -- several runs over time -------------------------------------------------------------------------


def hit_ratio_figure(
    results: Mapping[str, Result],
    title: str | None = None,
    *,
    reference: Mapping[str, float | tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Figure:
    """Hit ratio per second over time, one line per labelled run; faults shaded.

    ``reference`` adds a model's lines in grey: a number is a steady state, drawn
    across (``{"Che (LRU)": 0.83}``); a pair ``(times_s, hit_ratios)`` is a curve.
    """
    items = _check_results(results, "hit_ratio_figure")
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        for i, (label, r) in enumerate(items):
            ax.step(*_steps(r, _hit_pct), where="post", label=f"{label} ({_measured_hit_ratio(r)})",
                    **_style(i))
        for j, (label, ref) in enumerate((reference or {}).items()):
            style = {"color": "0.2", "linestyle": DASHES[1 + j % (len(DASHES) - 1)], "lw": 2, "zorder": 2}
            if isinstance(ref, tuple):
                ax.plot(ref[0], 100 * np.asarray(ref[1], dtype=float), label=label, **style)
            else:
                ax.axhline(100 * ref, label=f"{label}: {100 * ref:.1f} %", **style)
        ax.set_ylabel("hit ratio (%)")
        _percent(ax)
        _time_axis(ax, [r for _, r in items])
        _shade([ax], [r for _, r in items])
        ax.set_title(title or "Cache hit ratio, second by second")
        _legend_below(fig, ax)
    return fig


def stale_reads_figure(results: Mapping[str, Result], title: str | None = None) -> Figure:
    """Stale reads per second over time, one line per labelled run; faults shaded.

    The legend gives each run's total after the warm-up and its worst staleness,
    so a run that stays at zero is visibly there.
    """
    items = _check_results(results, "stale_reads_figure")
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        top = 1
        for i, (label, r) in enumerate(items):
            ax.step(*_steps(r, _stale_rate), where="post", zorder=3 + i,
                    label=f"{label}: {r.stale_reads:,} stale, max {r.max_staleness_s:.2f} s old", **_style(i))
            top = max(top, *(row["stale_reads"] for row in r.timeline))
        ax.set_ylabel("stale reads / s")
        _counts(ax, top)
        _time_axis(ax, [r for _, r in items])
        _shade([ax], [r for _, r in items])
        ax.set_title(title or "Stale reads: answers older than the database's newest commit")
        _legend_below(fig, ax, ncols=1)
    return fig


def timelines_figure(results: Mapping[str, Result], title: str | None = None) -> Figure:
    """Several runs side by side in time: DB queries/s, hit ratio and stale reads/s, stacked."""
    items = _check_results(results, "timelines_figure")
    runs = [r for _, r in items]
    with mpl.rc_context(STYLE):
        fig = _figure(TALL)
        db_ax, hit_ax, stale_ax = fig.subplots(3, 1, sharex=True)
        top = 1
        for i, (label, r) in enumerate(items):
            style = {**_style(i), "where": "post", "zorder": 3 + i}
            db_ax.step(*_steps(r, _db_rate), label=f"{label}: {r.stale_reads:,} stale reads, max {r.max_staleness_s:.2f} s old",
                       **style)
            hit_ax.step(*_steps(r, _hit_pct), **style)
            stale_ax.step(*_steps(r, _stale_rate), **style)
            top = max(top, *(row["stale_reads"] for row in r.timeline))
        db_ax.set_ylabel("DB queries / s")
        _counts(db_ax)
        hit_ax.set_ylabel("hit ratio (%)")
        _percent(hit_ax)
        stale_ax.set_ylabel("stale reads / s")
        _counts(stale_ax, top)
        _time_axis(stale_ax, runs)
        _shade([db_ax, hit_ax, stale_ax], runs)
        fig.suptitle(title or "DB load, hit ratio and stale reads over time")
        _legend_below(fig, db_ax, ncols=1)
    return fig


def db_reads_figure(results: Mapping[str, Result], title: str | None = None, *, log: bool = False) -> Figure:
    """Database reads per second over time, one line per labelled run: a stampede is a spike.

    The legend gives each run's database reads after the warm-up and its busiest
    second after it. ``log=True`` draws the y axis on a symmetric log scale
    (linear from 0 to 1), so one read a second stays visible next to hundreds.
    """
    items = _check_results(results, "db_reads_figure")
    runs = [r for _, r in items]
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        top = 1.0
        for i, (label, r) in enumerate(items):
            peak = _peak_after_warmup(r, _db_read_rate)
            top = max(top, *(_db_read_rate(row, min(1.0, r.scenario.duration_s - row["t"])) for row in r.timeline))
            ax.step(*_steps(r, _db_read_rate), where="post", zorder=3 + i,
                    label=f"{label}: {r.db_reads:,} DB reads, busiest second {peak:,.0f}", **_style(i))
        ax.set_ylabel("DB reads / s" + (", log scale" if log else ""))
        if log:
            ax.set_yscale("symlog", linthresh=1.0, linscale=0.5)
            ax.set_ylim(0, top * 8)  # room above the lines for the labels of the shaded windows
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        else:
            _counts(ax, top)
        _time_axis(ax, runs)
        _shade([ax], runs)
        ax.set_title(title or "Database reads, second by second")
        _legend_below(fig, ax, ncols=1)
    return fig


def _db_read_rate(row: dict, width: float) -> float:
    return row["db_reads"] / width


def _peak_after_warmup(result: Result, value: Callable[[dict, float], float]) -> float:
    """The highest per-second ``value`` of the timeline's seconds that start after the warm-up (0 if none)."""
    s = result.scenario
    return max((value(row, min(1.0, s.duration_s - row["t"])) for row in result.timeline
                if row["t"] >= s.warmup_s), default=0.0)


# -- latency ----------------------------------------------------------------------------------------


def latency_figure(results: Mapping[str, Result], title: str | None = None) -> Figure:
    """Read and write latency percentiles (p50, p95, p99) in ms, as grouped bars per run.

    One panel for reads and one for writes (left out when no run wrote). The
    scale is logarithmic when the bars span more than a factor of 30.
    """
    items = _check_results(results, "latency_figure")
    panels = [("reads", "read_latency_s")]
    if any(r.write_latency_s["p50"] is not None for _, r in items):
        panels.append(("writes", "write_latency_s"))
    percentiles = ("p50", "p95", "p99")
    values = [
        [[_ms(getattr(r, attr)[p]) for p in percentiles] for _, r in items] for _, attr in panels
    ]
    known = [v for panel in values for run in panel for v in run if not math.isnan(v) and v > 0]
    log = bool(known) and max(known) / min(known) > 30
    n = len(items)
    with mpl.rc_context(STYLE):
        fig = _figure((min(14.0, max(9.0, 3.0 + 1.7 * n * len(panels))), 6.0))
        axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
        width = 0.8 / len(percentiles)
        x = np.arange(n)
        for ax, (what, _), panel in zip(axes, panels, values):
            for j, p in enumerate(percentiles):
                heights = [run[j] for run in panel]
                bars = ax.bar(x + (j - 1) * width, heights, width, label=p, color=PERCENTILE_COLORS[p],
                              edgecolor="white", zorder=3)
                if n * len(percentiles) <= 15:
                    ax.bar_label(bars, labels=[_ms_text(h) for h in heights], fontsize=11, padding=2)
            ax.set_xticks(x, [textwrap.fill(label, 14) for label, _ in items])
            ax.set_title(what)
            ax.grid(axis="x", visible=False)
        axes[0].set_ylabel("latency (ms)" + (", log scale" if log else ""))
        if log:
            axes[0].set_yscale("log")
            axes[0].set_ylim(min(known) / 2, max(known) * 4)
            axes[0].yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            axes[0].set_ylim(0, (max(known) if known else 1) * 1.15)
        fig.suptitle(title or "Latency percentiles per run")
        _legend_below(fig, axes[0], ncols=3)
    return fig


def _ms(seconds: float | None) -> float:
    return math.nan if seconds is None else 1e3 * seconds


def _ms_text(ms: float) -> str:
    if math.isnan(ms):
        return "n/a"
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 0.1 else f"{ms:.2f}"


def comparison_figure(results: Mapping[str, Result], title: str | None = None) -> Figure:
    """Patterns side by side (``wtsim compare``): database load, p99 latency, stale reads, writes lost.

    ``results`` maps a policy name to its run of the same scenario. Four
    panels of bars, one bar (or pair, for latency) per policy, each labelled
    with its value, so a projector shows the numbers and not only the shapes.
    """
    items = _check_results(results, "comparison_figure")
    names = [textwrap.fill(label, 13) for label, _ in items]
    runs = [r for _, r in items]
    x = np.arange(len(items))
    colors = [COLORS[i % len(COLORS)] for i in range(len(items))]
    with mpl.rc_context(STYLE):
        fig = _figure((13.0, 9.0))
        (load, latency), (stale, lost) = fig.subplots(2, 2)
        panels = (
            (load, [r.db_queries_per_s for r in runs], "database queries per second", "{:,.0f}"),
            (stale, [r.stale_reads for r in runs], "stale reads", "{:,.0f}"),
            (lost, [r.writes_lost for r in runs], "writes lost (acknowledged, never in the database)", "{:,.0f}"),
        )
        for ax, values, what, fmt in panels:
            bars = ax.bar(x, values, 0.6, color=colors, edgecolor="white", zorder=3)
            ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=12, padding=2)
            ax.set_title(what, fontsize=15)
            ax.set_xticks(x, names)
            ax.grid(axis="x", visible=False)
            _counts(ax, max(values) if max(values) > 0 else 1.0)
        width = 0.38
        for j, (what, attr, hatch) in enumerate((("read", "read_latency_s", None), ("write", "write_latency_s", "//"))):
            heights = [_ms(getattr(r, attr)["p99"]) for r in runs]
            bars = latency.bar(x + (j - 0.5) * width, heights, width, color=colors, hatch=hatch,
                               edgecolor="white", zorder=3, label=f"{what} p99")
            latency.bar_label(bars, labels=[_ms_text(h) for h in heights], fontsize=11, padding=2)
        latency.set_title("p99 latency (ms): reads plain, writes hatched", fontsize=15)
        latency.set_xticks(x, names)
        latency.grid(axis="x", visible=False)
        known = [h for r in runs for h in (_ms(r.read_latency_s["p99"]), _ms(r.write_latency_s["p99"]))
                 if not math.isnan(h)]
        latency.set_ylim(0, (max(known) if known else 1.0) * HEADROOM)
        lags = [r.db_lag_s["p99"] for r in runs]
        if any(lag for lag in lags):
            lost.set_xlabel("database lag p99: " + ", ".join(
                f"{label} {_ms_text(_ms(lag))} ms" for (label, _), lag in zip(items, lags) if lag))
        fig.suptitle(title or f"{_scenario_name(runs[0])}: the same workload under each pattern")
    return fig


def queue_figure(through: Result, behind: Result, title: str | None = None) -> Figure:
    """A write burst under write-through and write-behind: database write transactions/s, and the queue.

    Top: transactions per second on a log scale (write-through commits one a
    write, write-behind one a batch). Bottom: the write-behind queue, the
    longest it got in each second. Bursts are shaded orange, faults as
    everywhere, the warm-up grey.
    """
    runs = [through, behind]
    with mpl.rc_context(STYLE):
        fig = _figure((11.0, 7.5))
        top, bottom = fig.subplots(2, 1, sharex=True)
        top.step(*_steps(through, lambda row, width: row["db_writes"] / width), where="post",
                 label="write-through: one a write", **_style(0))
        top.step(*_steps(behind, lambda row, width: row["db_writes"] / width), where="post",
                 label="write-behind: one a batch", **_style(1))
        top.set_yscale("log")
        top.set_ylabel("DB write\ntransactions / s")
        top.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        bottom.step(*_steps(behind, lambda row, width: row["queue"]), where="post",
                    label=f"write-behind queue\n(longest {behind.queue_max:,})", **_style(1))
        bottom.set_ylabel("queued writes")
        _counts(bottom, max(behind.queue_max, 1))
        bottom.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        _time_axis(bottom, runs)
        _shade([top, bottom], runs)
        for ax in (top, bottom):
            for burst in behind.scenario.bursts:
                ax.axvspan(burst.start_s, burst.end_s, color=FAULT_COLOR, alpha=0.2, lw=0, zorder=0)
        if behind.scenario.bursts:
            factors = ", ".join(f"x{b.write_factor:g}" for b in behind.scenario.bursts)
            top.set_title(f"writes {factors} in the shaded window", fontsize=14)
        fig.suptitle(title or "A burst of writes: write-through passes it on, write-behind queues it")
    return fig


def _scenario_name(result: Result) -> str:
    return result.scenario.name.rsplit(" [", 1)[0]


# -- analytic companions ----------------------------------------------------------------------------


def article_load_figure(read_rate: float = 10_000, write_rate: float = 100, title: str | None = None) -> Figure:
    """DB queries/s against the hit ratio (50 % .. 100 %), from :func:`wtsim.analytic.article_db_load`.

    The article's "99 % reduction" is the right end of the line (every read
    hits). The marked points show what each lost percent of hit ratio costs:
    ``read_rate / 100`` more queries per second, a multiple of the article's load.
    """
    ratios = np.linspace(0.5, 1.0, 501)
    load = np.array([analytic.article_db_load(read_rate, write_rate, h)["with_cache"] for h in ratios])
    without = analytic.article_db_load(read_rate, write_rate, 0.0)["without_cache"]
    best = analytic.article_db_load(read_rate, write_rate, 1.0)["with_cache"]
    top = max(without, 1.0) * 1.1
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        ax.plot(100 * ratios, load, color=COLORS[0], label="with write-through: writes + missed reads")
        ax.axhline(without, color=COLORS[1], linestyle="--", label=f"without a cache: {without:,.0f} queries/s")
        # Labels up and to the left of their points, in a staircase, so no two arrows cross.
        marks = [(0.90, 73, 0.30), (0.95, 81, 0.45), (0.99, 88, 0.60), (1.00, 96, 0.75)]
        for h, label_x, label_y in marks:
            q = analytic.article_db_load(read_rate, write_rate, h)
            article = h == 1.0
            ax.plot(100 * h, q["with_cache"], "o", color=COLORS[1] if article else COLORS[0], zorder=4,
                    markersize=11, clip_on=False)
            text = f"{100 * h:.0f} % hits: {q['with_cache']:,.0f} queries/s, −{100 * q['reduction']:.1f} %"
            if article:
                text = "the article (every read hits):\n" + text
            elif best > 0:
                text += f"\n{q['with_cache'] / best:.0f}× the article's load"
            ax.annotate(text, (100 * h, q["with_cache"]), xytext=(label_x, label_y * top), ha="center",
                        va="bottom", fontsize=12, fontweight="bold" if article else "normal",
                        arrowprops={"arrowstyle": "->", "color": "0.35", "lw": 1.5, "shrinkB": 6},
                        bbox={"facecolor": "white", "edgecolor": "0.75", "boxstyle": "round,pad=0.3"})
        ax.text(0.02, 0.06,
                f"each lost percent of hit ratio:\n+{read_rate / 100:,.0f} queries/s (read_rate / 100)",
                transform=ax.transAxes, fontsize=13, va="bottom",
                bbox={"facecolor": "#f3f3f3", "edgecolor": "0.6", "boxstyle": "round,pad=0.4"})
        ax.set_xlabel("cache hit ratio (%)")
        ax.set_ylabel("DB queries / s")
        ax.set_xlim(50, 101)
        ax.set_ylim(0, top)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.set_title(title or f"The article's arithmetic: {read_rate:,.0f} reads/s, {write_rate:,.0f} writes/s")
        _legend_below(fig, ax, ncols=2)
    return fig


def hit_ratio_sweep_figure(results: Sequence[Result] | Mapping[str, Sequence[Result]], field: str,
                           title: str | None = None, *,
                           curves: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                           logx: bool = False) -> Figure:
    """Simulated hit ratio (after the warm-up) of each run against one scenario ``field``.

    ``results`` is a sweep over ``field`` (``sweep(s, {"cache_capacity": [...]})``),
    or several sweeps by label. ``curves`` maps a model's name to ``(x, hit_ratio)``
    to draw as a line, such as Che's approximation or the TTL formula from
    :mod:`wtsim.analytic`; the i-th curve takes the colour of the i-th sweep.
    Runs where ``field`` is ``None`` (no TTL, no limit) are left out.
    """
    series = dict(results) if isinstance(results, Mapping) else {"simulated": results}
    points = {
        label: [(getattr(r.scenario, field), r.hit_ratio) for r in runs
                if getattr(r.scenario, field) is not None and r.hit_ratio is not None]
        for label, runs in series.items()
    }
    if not any(points.values()):
        raise ValueError(f"hit_ratio_sweep_figure needs results with a {field} and a hit ratio, got none")
    markers = "osD^v"
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        for j, (label, (xs, ys)) in enumerate((curves or {}).items()):
            ax.plot(xs, 100 * np.asarray(ys, dtype=float), label=label, zorder=2, lw=2.2,
                    color=COLORS[j % len(COLORS)], linestyle=DASHES[1 + j % (len(DASHES) - 1)])
        for i, (label, pts) in enumerate(points.items()):
            if pts:
                xs, hs = zip(*pts)
                ax.plot(xs, 100 * np.asarray(hs), markers[i % len(markers)], color=COLORS[i % len(COLORS)],
                        markersize=11, markeredgecolor="white", zorder=4, label=label)
        if logx:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.6g}"))
        ax.set_xlabel(FIELD_LABELS.get(field, field))
        ax.set_ylabel("hit ratio (%)")
        ax.set_ylim(0, 105)
        ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_title(title or f"Hit ratio against {FIELD_LABELS.get(field, field)}")
        _legend_below(fig, ax, ncols=2)
    return fig


def db_wait_figure(results: Sequence[Result], title: str | None = None, *, log: bool = False) -> Figure:
    """Mean wait for a DB connection against the pool's utilisation, simulated and by Erlang C.

    Each run's utilisation is its measured DB work (``db_reads`` x ``db_read_s``
    + ``db_writes`` x ``db_write_s`` per second) over its ``db_connections``. The
    Erlang C curve (:func:`wtsim.analytic.erlang_c_mean_wait`) is M/M/c: exact
    for exponential service times of one mean, so the runs should send reads
    only (or writes only), to one pool size. ``log=True`` shows small waits too.
    """
    if not results:
        raise ValueError("db_wait_figure needs at least one Result, got none")
    first = results[0].scenario
    rho, wait = [], []
    for r in results:
        s = r.scenario
        work = (r.db_reads * s.db_read_s + r.db_writes * s.db_write_s) / s.measured_s
        rho.append(work / s.db_connections)
        wait.append(_ms(r.db_wait_mean_s))
    # The curve's mean service time: the runs' queries, weighted by their number.
    queries = sum(r.db_reads + r.db_writes for r in results)
    busy = sum(r.db_reads * r.scenario.db_read_s + r.db_writes * r.scenario.db_write_s for r in results)
    service = busy / queries if queries else first.db_read_s
    c = first.db_connections
    grid = np.linspace(0.005, 0.995, 600)
    curve = np.array([1e3 * analytic.erlang_c_mean_wait(c, u * c / service, service) for u in grid])
    known = [w for w in wait if not math.isnan(w)]
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        ax.plot(100 * grid, curve, color=COLORS[1], linestyle="--",
                label=f"Erlang C: M/M/{c}, {1e3 * service:g} ms mean service")
        ax.plot(100 * np.asarray(rho), wait, "o", color=COLORS[0], markersize=10, zorder=4,
                label="simulated mean wait")
        ax.axvline(100, color="0.3", lw=2)
        ax.text(101.5, 0.5, "saturated: the queue grows without bound", transform=_top(ax), rotation=90,
                ha="left", va="center", fontsize=12, color="0.25")
        highest = max(known) if known else float(curve[-1])
        if log:
            ax.set_yscale("log")
            low = min([w for w in known if w > 0] or [highest / 100])
            ax.set_ylim(low / 3, highest * 3)
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        else:
            ax.set_ylim(0, highest * 1.3)
        ax.set_xlim(0, 106)
        ax.set_xlabel("utilisation of the DB connection pool (%)")
        ax.set_ylabel("mean wait for a connection (ms)")
        ax.set_title(title or f"Waiting for one of {c} database connections")
        _legend_below(fig, ax, ncols=2)
    return fig


def early_recompute_figure(delta_s: float, betas: Sequence[float] = (0.5, 1.0, 2.0, 4.0), *,
                           read_rate: float | None = None, title: str | None = None) -> Figure:
    """XFetch: the chance that one hit recomputes early, against the time left before the entry expires.

    A hit recomputes when ``now - delta * beta * ln(U) >= expiry``, ``U`` uniform in
    (0, 1] (:mod:`wtsim.policies.read_through`): at ``tau`` seconds before the expiry
    that happens with probability ``exp(-tau / (delta * beta))``, one curve per beta,
    a straight line on the logarithmic axis. With ``read_rate`` (reads per second of
    the key), a dot and a dotted line mark for each beta where the expected number
    of early recomputes, counted from far off, reaches one:
    ``read_rate * delta * beta * exp(-tau / (delta * beta)) = 1``, so
    ``tau = delta * beta * ln(read_rate * delta * beta)``, about when the first
    reader recomputes (no mark when ``read_rate * delta * beta <= 1``).
    """
    if isinstance(delta_s, bool) or not isinstance(delta_s, (int, float)) or not delta_s > 0:
        raise ValueError(f"early_recompute_figure needs delta_s > 0 seconds, got {delta_s!r}")
    betas = [float(b) for b in betas]
    if not betas or not all(b > 0 for b in betas):
        raise ValueError(f"early_recompute_figure needs betas > 0, got {betas!r}")
    scales = [delta_s * b for b in betas]
    first = [s * math.log(read_rate * s) if read_rate and read_rate * s > 1 else None for s in scales]
    marked = [(tau_1, 100 * math.exp(-tau_1 / s)) for tau_1, s in zip(first, scales) if tau_1 is not None]
    window = max([s * math.log(1e4) for s in scales] + [1.15 * tau_1 for tau_1, _ in marked])
    bottom = min([1e-2] + [p / 3 for _, p in marked])
    tau = np.linspace(0.0, window, 300)
    with mpl.rc_context(STYLE):
        fig = _figure(WIDE)
        ax = fig.subplots()
        for i, (beta, scale, tau_1) in enumerate(zip(betas, scales, first)):
            style = _style(i)
            label = f"β = {beta:g}"
            if tau_1 is not None:
                label += f": first early recompute ≈ {tau_1:.2f} s before expiry"
                ax.axvline(tau_1, color=style["color"], linestyle=":", lw=2, zorder=2)
                ax.plot(tau_1, 100 * math.exp(-tau_1 / scale), "o", color=style["color"], zorder=10)
            ax.plot(tau, 100 * np.exp(-tau / scale), label=label, zorder=3 + i, **style)
        ax.set_xlim(window, 0)  # time runs to the right, towards the expiry at 0
        ax.set_yscale("log")
        ax.set_ylim(bottom, 150)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g} %"))
        ax.set_xlabel("seconds before the entry expires")
        ax.set_ylabel("chance a hit recomputes, log scale")
        where = f", {read_rate:,.0f} reads/s" if read_rate else ""
        ax.set_title(title or f"XFetch: early recompute, δ = {1e3 * delta_s:g} ms{where}")
        _legend_below(fig, ax, ncols=1 if read_rate else min(len(betas), 4))
    return fig


# -- recovery after a trigger -----------------------------------------------------------------------


def _db_read_capacity(result: Result) -> float:
    """Reads per second the database can serve: ``db_connections / db_read_s`` (inf if reads take no time)."""
    s = result.scenario
    return s.db_connections / s.db_read_s if s.db_read_s > 0 else math.inf


def _failed_rate(row: dict, width: float) -> float:
    return row["errors"] / width


def recovery_figure(results: Mapping[str, Result], title: str | None = None) -> Figure:
    """Does the system come back after the trigger? Hit ratio, failed requests/s and DB queries/s, stacked.

    One line per labelled run in each panel, faults shaded. The bottom panel
    draws each distinct database capacity for reads, ``db_connections /
    db_read_s`` queries per second, as a grey line: above it the connection
    queue grows. The legend gives each run's failed requests after the
    warm-up (``Result.errors``: failures and clients that gave up, retries
    included). As in :mod:`wtsim.sim.metrics`, a read is a hit when it
    succeeded without a database query.
    """
    items = _check_results(results, "recovery_figure")
    runs = [r for _, r in items]
    with mpl.rc_context(STYLE):
        fig = _figure(TALL)
        hit_ax, fail_ax, db_ax = fig.subplots(3, 1, sharex=True)
        failed_top, db_top = 1.0, 1.0
        for i, (label, r) in enumerate(items):
            style = {**_style(i), "where": "post", "zorder": 3 + i}
            widths = [min(1.0, r.scenario.duration_s - row["t"]) for row in r.timeline]
            hit_ax.step(*_steps(r, _hit_pct), label=f"{label}: {r.errors:,} failed requests", **style)
            fail_ax.step(*_steps(r, _failed_rate), **style)
            db_ax.step(*_steps(r, _db_rate), **style)
            failed_top = max(failed_top, *(_failed_rate(row, w) for row, w in zip(r.timeline, widths)))
            db_top = max(db_top, *(_db_rate(row, w) for row, w in zip(r.timeline, widths)))
        capacities = sorted({_db_read_capacity(r) for r in runs if math.isfinite(_db_read_capacity(r))})
        for j, capacity in enumerate(capacities):
            db_ax.axhline(capacity, color="0.25", lw=2, zorder=2, linestyle=DASHES[1 + j % (len(DASHES) - 1)],
                          label=f"DB capacity: {capacity:,.0f} reads/s")
        hit_ax.set_ylabel("hit ratio (%)")
        _percent(hit_ax)
        fail_ax.set_ylabel("failed requests / s")
        _counts(fail_ax, failed_top)
        db_ax.set_ylabel("DB queries / s")
        _counts(db_ax, max([db_top, *capacities]))
        if capacities:
            db_ax.legend(loc="upper left", frameon=False, fontsize=12)
        _time_axis(db_ax, runs)
        _shade([hit_ax, fail_ax, db_ax], runs)
        fig.suptitle(title or "After the trigger: hit ratio, failed requests and database load")
        _legend_below(fig, hit_ax, ncols=1)
    return fig
