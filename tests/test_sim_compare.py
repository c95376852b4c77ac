"""``wtsim compare``: one seeded scenario under every pattern."""

from __future__ import annotations

import json

import pytest

from wtsim.cli import main
from wtsim.plots import comparison_figure
from wtsim.sim import load_scenario
from wtsim.sim.compare import COLUMNS, compare, format_comparison

SHORT = ["--set", "duration_s=2", "--jobs", "1"]


def test_compare_article_prints_the_four_policies(capsys):
    assert main(["compare", "article", *SHORT]) == 0
    out = capsys.readouterr().out
    rows = [line.split()[0] for line in out.split("\n\n")[1].splitlines()[2:]]
    assert rows == ["none", "cache-aside", "write-through", "write-behind"]
    assert all(column.split()[0] in out for column in COLUMNS)


def test_compare_runs_the_same_workload_under_each_policy():
    results = compare(load_scenario("article").replace(duration_s=2), ["none", "write-through"])
    none, through = results["none"], results["write-through"]
    assert (none.reads, none.writes) == (through.reads, through.writes)  # same seed, same arrivals
    assert none.hit_ratio == 0 and through.hit_ratio == 1.0
    assert none.db_queries_per_s > 50 * through.db_queries_per_s


def test_compare_json_and_plot(tmp_path, capsys):
    plot = tmp_path / "cmp.png"
    assert main(["compare", "cache-crash", "--policies", "write-through,write-behind", "--json",
                 "--plot", str(plot), "--set", "duration_s=6"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert list(data) == ["write-through", "write-behind"]
    assert data["write-through"]["writes_lost"] == 0
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["--policies", "none,write-around"], "policy must be one of"),
    (["--policies", ","], "--policies expects"),
    (["--policies", "none,none"], "must not repeat"),
    (["--plot", "out.txt"], "--plot needs a .png"),
    (["--jobs", "0"], "--jobs must be >= 1"),
])
def test_bad_compare_input_is_one_line_and_exit_2(argv, message, capsys):
    assert main(["compare", "article", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_the_table_and_figure_label_every_policy():
    results = compare(load_scenario("cache-crash").replace(duration_s=6), ["write-through", "write-behind"])
    table = format_comparison(results)
    assert "cache-crash 5-5.5 s" in table
    fig = comparison_figure(results)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["write-through", "write-behind"]
    assert results["write-behind"].writes_lost > 0 and results["write-through"].writes_lost == 0
