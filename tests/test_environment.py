"""environment.yml (conda) and pyproject.toml list the same packages."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# conda-forge name -> PyPI name, where they differ; extras of a PyPI requirement
# (fakeredis[lua], psycopg[binary]) are separate conda packages or built in.
CONDA_TO_PYPI = {"redis-py": "redis"}
CONDA_ONLY = {"python", "pip", "lupa"}


def _split(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*(.*)", requirement).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra, items in project["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("wtsim[")]
    return dict(_split(r) for r in reqs)


def conda_requirements() -> dict[str, str]:
    text = (ROOT / "environment.yml").read_text()
    deps = {}
    for line in text.split("\ndependencies:\n", 1)[1].splitlines():
        m = re.match(r"^  - ([A-Za-z][^#\s]*)\s*(?:#.*)?$", line)  # top-level conda entries only
        if m:
            name, spec = _split(m.group(1))
            deps[CONDA_TO_PYPI.get(name, name)] = spec
    return deps


def test_same_packages_and_versions():
    """Every package of pyproject.toml is in environment.yml with the same version range, and no other."""
    conda = {k: v for k, v in conda_requirements().items() if k not in CONDA_ONLY}
    assert conda == pyproject_requirements()


def test_same_python():
    """Both ask for the same Python."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert conda_requirements()["python"] == project["requires-python"]


def test_installs_the_package_itself():
    """The conda environment installs wtsim from the checkout, so `wtsim` runs there too."""
    assert re.search(r"^      - -e \.$", (ROOT / "environment.yml").read_text(), re.M)
