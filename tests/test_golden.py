"""Golden results: every scenario in data/scenarios, run with its seed, gives the recorded Result.

A refactor of the simulator or the policies proves itself here: ``Result.to_dict()``
must not change by a single bit. A change that *means* to change results (a fixed
bug, a new field) rewrites the files, and its commit says why::

    .venv/bin/python tests/test_golden.py --write

The files are ``data/golden/<scenario>.json``, compared after a JSON round trip
(floats round-trip exactly), so the diff of a deliberate change is readable.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from wtsim.sim import load_scenario, run, scenario_names

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def result_of(name: str) -> dict:
    """The scenario's result as plain JSON data."""
    return json.loads(json.dumps(run(load_scenario(name)).to_dict()))


def test_every_scenario_has_a_golden_file():
    """No scenario goes unchecked, and no golden file outlives its scenario."""
    assert sorted(p.stem for p in GOLDEN.glob("*.json")) == scenario_names()


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_gives_its_golden_result(name):
    """The same seed gives the same Result.to_dict() as recorded."""
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    actual = result_of(name)
    changed = sorted(k for k in expected.keys() | actual.keys() if expected.get(k) != actual.get(k))
    assert not changed, f"{name}: fields that differ from data/golden/{name}.json: {changed}"


def write_all() -> None:
    """Rewrite every golden file from the current code."""
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for stale in GOLDEN.glob("*.json"):
        stale.unlink()
    for name in scenario_names():
        (GOLDEN / f"{name}.json").write_text(json.dumps(result_of(name), indent=1, sort_keys=True) + "\n")
        print(f"wrote data/golden/{name}.json")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_golden.py --write")
    write_all()
