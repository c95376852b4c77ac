"""wtsim.plots: every figure has a title, labelled axes and the lines or bars it promises, and saves as PNG."""

from __future__ import annotations

import math

import matplotlib as mpl
import pytest
from matplotlib._pylab_helpers import Gcf
from matplotlib.figure import Figure

from wtsim import plots
from wtsim.sim import Fault, Scenario, run, sweep

TINY = Scenario(
    name="tiny", duration_s=2.0, warmup_s=0.5, seed=11, read_rate=400, write_rate=40, n_keys=50,
    prefill=True, cache_timeout_s=0.05, breaker_cooldown_s=0.2, versioned=False, outage_repair=False,
    faults=(Fault("cache-down", 0.8, 1.3),),
)


@pytest.fixture(scope="module")
def runs():
    """Three tiny seeded runs: naive, versioned and outage repair through a short outage."""
    return {
        "naive": run(TINY),
        "versioned": run(TINY.replace(versioned=True)),
        "outage repair": run(TINY.replace(outage_repair=True)),
    }


@pytest.fixture(scope="module")
def no_cache():
    return run(TINY.replace(policy="none", faults=()))


def title_of(fig: Figure) -> str:
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    return suptitle or fig.axes[0].get_title()


def legend_labels(fig: Figure) -> list[str]:
    legends = fig.legends + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def check_common(fig: Figure, tmp_path) -> None:
    """A Figure outside pyplot, with a title, every axes labelled, and a PNG that saves."""
    assert isinstance(fig, Figure)
    assert Gcf.get_num_fig_managers() == 0  # nothing left open in pyplot's registry
    assert title_of(fig).strip()
    for ax in fig.axes:
        assert ax.get_ylabel() or ax.get_shared_y_axes().get_siblings(ax) != [ax]
    assert fig.axes[-1].get_xlabel() or fig.axes[0].get_xticklabels()
    path = tmp_path / "figure.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def fault_labels(ax) -> list[str]:
    return [text.get_text().strip() for text in ax.texts if "cache-down" in text.get_text()]


def test_timeline_figure(runs, tmp_path):
    """Three panels: DB reads/writes/total, the hit ratio, stale reads; the fault shaded and named."""
    fig = plots.timeline_figure(runs["naive"])
    check_common(fig, tmp_path)
    db_ax, hit_ax, stale_ax = fig.axes
    assert [len(ax.lines) for ax in (db_ax, hit_ax, stale_ax)] == [3, 1, 1]
    assert db_ax.get_ylabel() == "DB queries / s" and stale_ax.get_xlabel() == "simulated time (s)"
    assert fault_labels(db_ax) == ["cache-down"]
    assert plots.timeline_figure(runs["naive"], title="mine")._suptitle.get_text() == "mine"


def test_timeline_figure_adds_failed_requests_when_the_database_is_down(tmp_path):
    """A run with failed requests gets a second line in the bottom panel."""
    result = run(TINY.replace(faults=(Fault("db-down", 1.0, 1.2),)))
    assert result.errors > 0
    fig = plots.timeline_figure(result)
    assert len(fig.axes[2].lines) == 2


def test_db_load_figure(runs, no_cache, tmp_path):
    """Two lines, each run's mean in the legend, and the reduction written on the plot."""
    fig = plots.db_load_figure(runs["naive"], no_cache, title="DB load")
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert len(ax.lines) == 2 and ax.get_title() == "DB load"
    labels = legend_labels(fig)
    assert labels[0].startswith("write-through: mean ") and labels[1].startswith("no cache: mean ")
    assert f"{no_cache.db_queries_per_s:,.0f} queries/s" in labels[1]
    assert any("less DB load" in text.get_text() for text in ax.texts)


def test_hit_ratio_figure(runs, tmp_path):
    """One line per run, plus one per reference value; percent on the y axis; the fault shaded."""
    fig = plots.hit_ratio_figure(runs, reference={"model": 0.9})
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert len(ax.lines) == len(runs) + 1
    assert ax.get_ylabel() == "hit ratio (%)" and ax.get_xlabel() == "simulated time (s)"
    assert fault_labels(ax) == ["cache-down"]
    assert len(legend_labels(fig)) == len(runs) + 1


def test_stale_reads_figure(runs, tmp_path):
    """One line per run; each run's total of stale reads in the legend."""
    fig = plots.stale_reads_figure(runs)
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert len(ax.lines) == len(runs)
    for label, (name, result) in zip(legend_labels(fig), runs.items()):
        assert label.startswith(f"{name}: {result.stale_reads:,} stale")


def test_timelines_figure(runs, tmp_path):
    """Three stacked panels with one line per run in each."""
    fig = plots.timelines_figure(runs)
    check_common(fig, tmp_path)
    assert [len(ax.lines) for ax in fig.axes] == [len(runs)] * 3


def test_latency_figure(runs, no_cache, tmp_path):
    """p50, p95 and p99 bars for each run, in a read panel and a write panel."""
    fig = plots.latency_figure(runs)
    check_common(fig, tmp_path)
    reads, writes = fig.axes
    assert len(reads.patches) == len(writes.patches) == 3 * len(runs)
    assert reads.get_ylabel().startswith("latency (ms)")
    assert [t.get_text() for t in reads.get_xticklabels()] == list(runs)
    assert legend_labels(fig) == ["p50", "p95", "p99"]


def test_latency_figure_goes_logarithmic_when_the_spread_is_wide(runs, no_cache):
    """The outage's timeouts next to sub-millisecond hits need a log scale; similar runs do not."""
    assert plots.latency_figure(runs).axes[0].get_yscale() == "log"
    calm = {"no cache": no_cache, "again": no_cache}
    assert plots.latency_figure(calm).axes[0].get_yscale() == "linear"


def test_article_load_figure(tmp_path):
    """The load line, the no-cache line, and the article's point marked with its reduction."""
    fig = plots.article_load_figure(read_rate=10_000, write_rate=100)
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "cache hit ratio (%)" and ax.get_ylabel() == "DB queries / s"
    assert legend_labels(fig) == ["with write-through: writes + missed reads", "without a cache: 10,100 queries/s"]
    notes = " ".join(text.get_text() for text in ax.texts)
    assert "100 queries/s, −99.0 %" in notes and "+100 queries/s" in notes and "2× the article's load" in notes


def test_hit_ratio_sweep_figure(tmp_path):
    """Simulated points against the swept field, with analytic curves overlaid."""
    base = TINY.replace(faults=(), prefill=False, write_rate=0)
    results = sweep(base, {"cache_capacity": [5, 20]}, progress=False)
    fig = plots.hit_ratio_sweep_figure(results, "cache_capacity", curves={"Che": ([5, 20], [0.3, 0.7])}, logx=True)
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "cache capacity (keys)" and ax.get_xscale() == "log"
    assert len(ax.lines) == 2 and len(ax.lines[-1].get_xdata()) == 2


def test_db_wait_figure(tmp_path):
    """Simulated mean waits at two loads, under the Erlang C curve of the same pool."""
    base = Scenario(policy="none", duration_s=1.5, warmup_s=0.5, read_rate=500, write_rate=0, db_connections=2)
    results = sweep(base, {"read_rate": [300, 800]}, progress=False)
    fig = plots.db_wait_figure(results)
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "utilisation of the DB connection pool (%)"
    assert ax.get_ylabel() == "mean wait for a connection (ms)"
    assert len(ax.lines[1].get_xdata()) == 2  # the simulated points
    assert "Erlang C" in legend_labels(fig)[0]


HOT_KEY = Scenario(
    name="hot key", duration_s=3.0, warmup_s=0.5, seed=5, read_rate=500, write_rate=0, n_keys=1,
    ttl_s=1.0, db_read_s=0.02, service="deterministic", db_connections=50,
)


def test_db_reads_figure(tmp_path):
    """One line per run, each run's DB reads and busiest second in the legend; log=True is a symlog axis."""
    hot = {"no leases": run(HOT_KEY), "leases": run(HOT_KEY.replace(leases=True))}
    assert hot["no leases"].db_reads > hot["leases"].db_reads > 0
    fig = plots.db_reads_figure(hot)
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert len(ax.lines) == len(hot)
    assert ax.get_ylabel() == "DB reads / s" and ax.get_xlabel() == "simulated time (s)"
    assert ax.get_yscale() == "linear"
    for label, (name, result) in zip(legend_labels(fig), hot.items()):
        peak = max(row["db_reads"] for row in result.timeline if row["t"] >= HOT_KEY.warmup_s)
        assert label == f"{name}: {result.db_reads:,} DB reads, busiest second {peak:,}"
    logged = plots.db_reads_figure(hot, title="mine", log=True)
    assert logged.axes[0].get_yscale() == "symlog" and logged.axes[0].get_title() == "mine"
    assert logged.axes[0].get_ylabel() == "DB reads / s, log scale"


def test_early_recompute_figure(tmp_path):
    """One curve exp(-tau / (delta beta)) per beta, time running towards the expiry; marks with a read rate."""
    fig = plots.early_recompute_figure(0.05, betas=(1, 4), read_rate=5000)
    check_common(fig, tmp_path)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "seconds before the entry expires" and ax.get_yscale() == "log"
    left, right = ax.get_xlim()
    assert left > right == 0  # the expiry at the right
    assert len(ax.lines) == 2 * 3  # per beta: the dotted mark, its dot, the curve
    firsts = [0.05 * b * math.log(5000 * 0.05 * b) for b in (1, 4)]
    assert legend_labels(fig) == [f"β = {b}: first early recompute ≈ {t:.2f} s before expiry"
                                  for b, t in zip((1, 4), firsts)]
    curve = ax.lines[2]
    x, y = curve.get_xdata(), curve.get_ydata()
    assert y[0] == pytest.approx(100) and y[-1] == pytest.approx(100 * math.exp(-x[-1] / 0.05))
    plain = plots.early_recompute_figure(0.05)
    assert legend_labels(plain) == ["β = 0.5", "β = 1", "β = 2", "β = 4"] and len(plain.axes[0].lines) == 4
    with pytest.raises(ValueError, match="delta_s > 0"):
        plots.early_recompute_figure(0)


def test_style_is_per_figure(runs):
    """Building a figure leaves the caller's matplotlib settings alone."""
    before = dict(mpl.rcParams)
    plots.hit_ratio_figure(runs)
    assert dict(mpl.rcParams) == before


def test_empty_input_is_a_clear_error():
    """A figure of no runs says what it needs."""
    with pytest.raises(ValueError, match="at least one labelled Result"):
        plots.hit_ratio_figure({})


def test_compact_png_is_a_palette_png_smaller_than_matplotlibs():
    """The notebooks' figures: a third of the bytes, the same size in pixels, 256 colours at most."""
    import io

    from PIL import Image

    from wtsim.sim import load_scenario, run

    fig = plots.timeline_figure(run(load_scenario("redis-outage").replace(duration_s=8)))
    small = plots.compact_png(fig, dpi=100)
    full = io.BytesIO()
    fig.savefig(full, format="png", dpi=100, bbox_inches="tight")
    image, reference = Image.open(io.BytesIO(small)), Image.open(io.BytesIO(full.getvalue()))
    assert image.format == "PNG" and image.mode == "P" and image.size == reference.size
    assert len(small) < len(full.getvalue()) / 2


def test_show_compact_png_needs_ipython():
    with pytest.raises(RuntimeError, match="inside Jupyter or IPython"):
        plots.show_compact_png()


def test_queue_figure_draws_transactions_and_the_queue():
    """Two panels: write transactions/s of both patterns (log scale), and the write-behind queue."""
    from wtsim.sim import Burst

    scenario = Scenario(duration_s=4, warmup_s=0.5, read_rate=100, write_rate=200, n_keys=100, prefill=True,
                        bursts=(Burst(1.0, 2.0, write_factor=5),))
    through, behind = (run(scenario.replace(policy=p)) for p in ("write-through", "write-behind"))
    fig = plots.queue_figure(through, behind)
    top, bottom = fig.axes[:2]
    assert top.get_yscale() == "log"
    assert [line.get_label() for line in top.get_lines()] == ["write-through: one a write", "write-behind: one a batch"]
    queue = bottom.get_lines()[0].get_ydata()
    assert list(queue[:-1]) == [row["queue"] for row in behind.timeline]
    assert max(queue) == behind.queue_max > 0
