"""The wtsim command: the demo, the report, and one-line errors with exit code 2."""

from __future__ import annotations

import io
import re
import subprocess
from contextlib import redirect_stdout
from html import unescape
import sys

import pytest

from wtsim.cli import main


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One `wtsim demo` run: its exit code, what it printed, and the report folder."""
    folder = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with redirect_stdout(printed):
        code = main(["demo", "--out", str(folder)])
    return code, printed.getvalue(), folder


def test_demo_walks_through_every_scene_and_writes_the_report(demo):
    """`wtsim demo` narrates write, hit, miss, OOM, hang, outage and repair, then writes the report."""
    code, out, folder = demo
    assert code == 0
    for scene in ("A write goes to the database first", "cache hit: no database query", "is a miss",
                  "out of memory", "Redis hangs", "writes go to the database only", "Redis is back",
                  "What the cache counted"):
        assert scene in out, scene
    assert "SQL statements: 0" in out  # the hit
    assert re.search(r"breaker open", out)
    # After the repair the cache holds the value written during the outage, not the old one.
    repaired = out[out.index("Redis is back"):]
    assert "stock=7 version=2" in repaired
    html = (folder / "report.html").read_text()
    for name in ("db-load", "hit-ratio", "stale-reads", "latency", "patterns"):
        assert (folder / "figures" / f"{name}.png").stat().st_size > 10_000
        assert f'src="figures/{name}.png"' in html
    assert f"Report with figures: {folder / 'report.html'}" in out


def test_report_numbers_tell_the_story(demo):
    """The report shows about 99% less DB load, and stale reads only without outage repair."""
    html = unescape((demo[2] / "report.html").read_text())
    assert "the simulation measured 99." in html
    rows = dict(re.findall(r"<tr><td>([^<]+)</td><td>([\d,]+)</td><td>[^<]+</td></tr>", html))
    assert int(rows["article's algorithm"].replace(",", "")) > 100
    assert rows["outage repair"] == "0"
    lost = re.search(r"the crash took ([\d,]+) acknowledged writes with its queue; write-through lost ([\d,]+)", html)
    assert lost and int(lost[1].replace(",", "")) > 0 and lost[2] == "0"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bogus"], "invalid choice: 'bogus'"),
        (["demo", "--redis-url", "http://localhost"], "redis url must start with redis://"),
        (["bench", "cache", "--redis-url", "redis://127.0.0.1:1/0"], "--redis-url redis://127.0.0.1:1/0: Redis not reachable"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(argv, message):
    """Bad input prints one line, `wtsim: error: ...`, no traceback, and exits with code 2."""
    proc = subprocess.run([sys.executable, "-m", "wtsim.cli", *argv], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wtsim: error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
