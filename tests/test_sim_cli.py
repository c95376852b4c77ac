"""``wtsim run`` and ``wtsim sweep``: readable output, JSON, a plot, and one clear line for bad input."""

from __future__ import annotations

import json
import re

import pytest

from wtsim.cli import main

QUICK = ["--set", "duration_s=2", "--set", "warmup_s=0.5", "--set", "read_rate=500"]


def test_run_prints_a_summary_table(capsys):
    """wtsim run NAME prints the scenario's headline figures, one per aligned line."""
    assert main(["run", "article", *QUICK]) == 0
    out = capsys.readouterr().out
    assert out.startswith("article: 2 s simulated, the first 0.5 s left out")
    for label in ("hit ratio", "DB queries/s", "read latency", "stale reads", "max staleness", "DB wait"):
        assert f"  {label} " in out
    rows = [line for line in out.splitlines() if line.startswith("  ")]
    value_columns = {re.match(r"  \S.*?\s{2,}(\S)", line).start(1) for line in rows}
    assert len(rows) >= 8 and len(value_columns) == 1  # the values line up in one column


def test_run_json_is_the_result(capsys):
    """--json prints Result.to_dict() as JSON, with the --set values applied."""
    assert main(["run", "article", *QUICK, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["scenario"]["read_rate"] == 500.0
    assert len(data["timeline"]) == 2 and data["hit_ratio"] == 1.0


def test_run_from_a_toml_path_and_plot(tmp_path, capsys):
    """A path to a .toml file works as SCENARIO, and --plot writes a PNG."""
    path = tmp_path / "mine.toml"
    path.write_text("duration_s = 2.0\nwarmup_s = 0.5\nread_rate = 300.0\n[[faults]]\nkind = \"cache-down\"\nstart_s = 1.0\n")
    image = tmp_path / "timeline.png"
    assert main(["run", str(path), "--plot", str(image)]) == 0
    assert capsys.readouterr().out.startswith("mine: ")
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_prints_one_row_per_point(capsys):
    """wtsim sweep prints a header, a rule and one row per combination of the --vary values."""
    args = ["sweep", "article", *QUICK, "--vary", "prefill=true,false", "--vary", "ttl_s=none,1", "--jobs", "1"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["prefill", "ttl_s"] and set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + 4
    assert lines[2].split()[:2] == ["True", "None"] and lines[5].split()[:2] == ["False", "1.0"]


def test_sweep_json(capsys):
    """wtsim sweep --json prints a list of results in grid order."""
    assert main(["sweep", "read-populate-race", "--vary", "versioned=false,true", "--jobs", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["scenario"]["versioned"] for d in data] == [False, True]
    assert [d["stale_reads"] for d in data] == [1, 0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["run", "no-such-scenario"], "unknown scenario 'no-such-scenario'; known scenarios: article"),
        (["run", "missing.toml"], "scenario file not found: missing.toml"),
        (["run", "article", "--set", "read_rate=-5"], "read_rate must be a number >= 0"),
        (["run", "article", "--set", "readrate=5"], "unknown field 'readrate' in --set; allowed fields:"),
        (["run", "article", "--set", "ttl_s"], "expected field=value"),
        (["run", "article", "--set", "warmup_s=20"], "warmup_s must be < duration_s"),
        (["run", "article", "--plot", "out.txt"], "--plot needs a .png, .svg or .pdf"),
        (["run", "article", "--plot", "no-such-folder/t.png"], "folder no-such-folder does not exist"),
        (["sweep", "article", "--vary", "ttl_s"], "--vary expects field=v1,v2"),
        (["sweep", "article", "--vary", "faults=x"], "--vary cannot vary faults"),
        (["sweep", "article", "--vary", "n_keys=10,abc"], "n_keys must be an integer"),
        (["sweep", "article", "--vary", "n_keys=10", "--jobs", "0"], "--jobs must be >= 1"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, words, capsys):
    """Bad input ends with 'wtsim: error: ...' on one stderr line and exit code 2, no traceback."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("wtsim: error: ") and words in err
    assert err.count("\n") == 1


def test_sweep_needs_vary(capsys):
    """wtsim sweep without --vary is a usage error (exit code 2)."""
    with pytest.raises(SystemExit) as info:
        main(["sweep", "article"])
    assert info.value.code == 2
    assert "--vary" in capsys.readouterr().err


def test_run_any_registered_policy(capsys):
    """`--set policy=cache-aside` runs the article under cache-aside: writes delete, readers repopulate."""
    assert main(["run", "article", "--set", "policy=cache-aside", "--set", "duration_s=2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scenario"]["policy"] == "cache-aside"
    stats = result["policy_stats"]
    assert stats["cache_sets"] == stats["misses"] - stats["refused_older"] > 0  # only readers store
    assert stats["invalidations"] == result["policy_stats"]["db_writes"] > 0  # every write deletes


def test_a_bad_policy_lists_the_registry(capsys):
    """An unknown policy name is one line that lists every pattern of wtsim.policies.POLICIES."""
    assert main(["run", "article", "--set", "policy=write-around"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    for name in ("'none'", "'cache-aside'", "'write-through'"):
        assert name in err


def test_a_scenario_too_large_for_memory_is_refused_with_the_estimate(capsys):
    """n_keys=1e9 is one line giving the memory it would need, before anything is allocated."""
    assert main(["run", "article", "--set", "n_keys=1000000000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_keys=1,000,000,000 needs about" in err and "GiB" in err


def test_progress_reports_simulated_seconds_and_changes_nothing():
    """The progress callback sees each simulated second, and the result is the same as without it."""
    from wtsim.sim import load_scenario, run

    scenario = load_scenario("article").replace(duration_s=3.0)
    seen: list[float] = []
    with_progress = run(scenario, progress=seen.append)
    assert seen == [1.0, 2.0, 3.0]
    assert with_progress.to_dict() == run(scenario).to_dict()
