"""wtsim.plots.recovery_figure: hit ratio, failed requests and DB load of several runs after a trigger."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib._pylab_helpers import Gcf
from matplotlib.figure import Figure

from wtsim import plots
from wtsim.sim import Fault, Scenario, run

# A small load-bearing cache: 300 reads/s, a database for 100 of them (1 connection, 10 ms), emptied at 1 s.
BEARING = Scenario(
    name="bearing", duration_s=3.0, warmup_s=0.5, seed=3, read_rate=300, write_rate=0, n_keys=300,
    prefill=True, policy="cache-aside", db_read_s=0.01, db_connections=1, faults=(Fault("cache-flush", 1.0),),
)


@pytest.fixture(scope="module")
def runs():
    return {
        "patient": run(BEARING),
        "impatient": run(BEARING.replace(request_timeout_s=0.2, retries=2)),
        "bigger database": run(BEARING.replace(db_connections=4, request_timeout_s=0.2, retries=2)),
    }


def steps(ax) -> list:
    """The lines of runs: drawn as steps (the capacity and the flush are plain lines)."""
    return [line for line in ax.lines if line.get_drawstyle() == "steps-post"]


def legend_labels(fig: Figure) -> list[str]:
    return [text.get_text() for legend in fig.legends for text in legend.get_texts()]


def test_recovery_figure(runs, tmp_path):
    """Three panels, one line per run in each, the capacities drawn and labelled, the flush marked."""
    patient, impatient, bigger = runs.values()
    assert patient.errors == 0 < impatient.errors  # the runs differ where the figure says they do
    fig = plots.recovery_figure(runs)
    assert isinstance(fig, Figure) and Gcf.get_num_fig_managers() == 0
    hit_ax, fail_ax, db_ax = fig.axes
    assert [ax.get_ylabel() for ax in fig.axes] == ["hit ratio (%)", "failed requests / s", "DB queries / s"]
    assert db_ax.get_xlabel() == "simulated time (s)" and db_ax.get_xlim() == (0.0, 3.0)
    assert fig._suptitle.get_text().startswith("After the trigger")
    # one step line per run in each panel; in the bottom one, a line per distinct capacity (100 and 400 reads/s)
    assert [len(steps(ax)) for ax in fig.axes] == [3, 3, 3]
    capacities = [line for line in db_ax.lines if line.get_drawstyle() == "default" and line.get_xdata()[0] == 0]
    assert [line.get_ydata()[0] for line in capacities] == [100.0, 400.0]
    assert [t.get_text() for t in db_ax.get_legend().get_texts()] == ["DB capacity: 100 reads/s",
                                                                      "DB capacity: 400 reads/s"]
    assert legend_labels(fig) == [f"{label}: {r.errors:,} failed requests" for label, r in runs.items()]
    # the lines are the timelines: failed requests per second, DB queries per second, hits over reads
    rows = impatient.timeline
    _, failed = steps(fail_ax)[1].get_data()
    assert list(failed[:-1]) == [row["errors"] for row in rows]
    _, queries = steps(db_ax)[1].get_data()
    assert list(queries[:-1]) == [row["db_reads"] + row["db_writes"] for row in rows]
    _, hits = steps(hit_ax)[0].get_data()
    assert np.allclose(hits[:-1], [100 * row["hits"] / row["reads"] for row in patient.timeline])
    # the flush is an instant: a vertical line at 1 s on each panel, named once, on top
    for ax in fig.axes:
        assert [list(line.get_xdata()) for line in ax.lines if line.get_drawstyle() == "default"
                and line.get_xdata()[0] == line.get_xdata()[1] == 1.0]
    assert [text.get_text().strip() for text in hit_ax.texts if "flush" in text.get_text()] == ["cache-flush"]
    assert not [text for ax in (fail_ax, db_ax) for text in ax.texts]
    path = tmp_path / "recovery.png"
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_recovery_figure_title_and_empty_input(runs):
    assert plots.recovery_figure({"patient": runs["patient"]}, title="mine")._suptitle.get_text() == "mine"
    with pytest.raises(ValueError, match="at least one labelled Result"):
        plots.recovery_figure({})
