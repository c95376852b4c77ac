"""The package as a user gets it: a wheel, installed into a fresh venv, run outside the checkout.

Inside the checkout wtsim can lean on the working tree (an editable install,
the current folder on ``sys.path``); a user who runs ``pip install wtsim`` has
neither. This test builds the wheel from a copy of the sources, installs it
into a new virtual environment (its dependencies from the package index, as
a user's would come), and runs the commands the README promises from an empty
folder: ``wtsim run article`` finds its scenario and ``wtsim demo`` its catalog
as package data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "wtsim", "data")


def _run(*cmd, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MPLBACKEND"] = "Agg"
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh venv with only the wheel of this checkout installed."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "golden"))
        else:
            shutil.copy2(ROOT / name, src / name)
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", base / "dist", src, cwd=base)
    wheels = list((base / "dist").glob("wtsim-*.whl"))
    assert len(wheels) == 1, wheels
    # A venv without pip of its own (ensurepip would take seconds), filled by this pip through
    # --python: the wheel and its declared dependencies from the index, nothing else. Not
    # byte-compiled: Python compiles what it imports.
    venv.create(base / "venv", with_pip=False)
    bin_dir = base / "venv" / "bin"
    _run(sys.executable, "-m", "pip", "--python", bin_dir / "python", "install", "-q", "--no-compile",
         "--disable-pip-version-check", wheels[0], cwd=base)
    return bin_dir


@pytest.mark.timeout(900)
def test_wheel_holds_the_package_data(installed, tmp_path):
    """The installed package, not the checkout, is imported, and it ships the scenarios and the catalog."""
    done = _run(installed / "python", "-c",
                "import wtsim, wtsim.sim as s, wtsim.models as m; "
                "print(wtsim.__file__); print(','.join(s.scenario_names())); print(len(m.read_catalog()))",
                cwd=tmp_path)
    module, names, rows = done.stdout.split()
    assert Path(module).is_relative_to(installed.parent), module
    assert {"article", "redis-outage", "cold-start"} <= set(names.split(","))
    assert int(rows) == 300


@pytest.mark.timeout(900)
def test_wheel_runs_a_scenario_outside_the_checkout(installed, tmp_path):
    """`wtsim run article --set duration_s=2` works from an empty folder."""
    done = _run(installed / "wtsim", "run", "article", "--set", "duration_s=2", cwd=tmp_path)
    assert "article: 2 s simulated" in done.stdout
    assert "hit ratio" in done.stdout


@pytest.mark.timeout(900)
def test_wheel_runs_the_demo_outside_the_checkout(installed, tmp_path):
    """`wtsim demo` runs on its embedded defaults and writes the report where it is run."""
    done = _run(installed / "wtsim", "demo", cwd=tmp_path)
    assert "300 products" in done.stdout
    assert (tmp_path / "out" / "report.html").is_file()
