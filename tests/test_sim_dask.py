"""Sweeps on Dask (``wtsim[dask]``): a LocalCluster's results equal a serial sweep's; one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from wtsim.cli import main
from wtsim.sim import Scenario, sweep
from wtsim.sim.cluster import dask_executor

SMALL = Scenario(name="small", duration_s=1.0, warmup_s=0.2, read_rate=2000, write_rate=50, n_keys=500)
VARY = {"cache_capacity": [20, 200], "seed": [1, 2]}


@pytest.mark.timeout(60)
def test_a_local_cluster_of_two_worker_processes_gives_the_serial_results():
    """Four runs on a LocalCluster of two worker processes: the same to_dict() as one after another, in order."""
    distributed = pytest.importorskip("distributed")
    serial = sweep(SMALL, VARY, progress=False)
    with dask_executor("local", workers=2) as executor:
        info = distributed.get_client().scheduler_info()
        assert len(info["workers"]) == 2
        assert all(w["nthreads"] == 1 for w in info["workers"].values())
        on_dask = sweep(SMALL, VARY, executor=executor, progress=False)
    assert [r.to_dict() for r in on_dask] == [r.to_dict() for r in serial]
    assert [r.scenario.name for r in on_dask] == [r.scenario.name for r in serial]


def test_an_unreachable_scheduler_is_one_line():
    """No scheduler at the address: a ValueError naming it, after the connect timeout."""
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match=r"^--dask: could not connect to a Dask scheduler at tcp://127\.0\.0\.1:9 "):
        with dask_executor("tcp://127.0.0.1:9", timeout_s=1.0):
            pass


def test_a_bad_address_is_one_line(capsys):
    pytest.importorskip("distributed")
    assert main(["sweep", "article", "--vary", "ttl_s=1,2", "--dask", "foo://bar"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wtsim: error: --dask foo://bar: unknown address scheme") and err.count("\n") == 1


def _wtsim_without_dask(*argv: str) -> subprocess.CompletedProcess:
    script = ("import sys\n"
              "sys.modules['distributed'] = None  # import raises ModuleNotFoundError, as if not installed\n"
              "from wtsim.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["sweep", "article", "--vary", "ttl_s=1,2"], ["compare", "article"]])
def test_without_dask_the_error_says_what_to_install(command):
    done = _wtsim_without_dask(*command, "--dask", "local")
    assert done.returncode == 2
    assert done.stderr == 'wtsim: error: Dask is not installed: pip install "wtsim[dask]"\n'


def test_importing_wtsim_does_not_import_dask():
    """Dask is imported by --dask alone: not by wtsim, its simulator or its command line."""
    script = ("import sys, wtsim, wtsim.sim, wtsim.cli, wtsim.sim.commands\n"
              "wtsim.cli.build_parser()\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout == "[]\n"
