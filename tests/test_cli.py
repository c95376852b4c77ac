"""The wtsim command: the demo, the report, and one-line errors with exit code 2."""

from __future__ import annotations

import io
import re
import signal
import subprocess
import sys
import time
from contextlib import redirect_stdout
from html import unescape

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


# -- wtsim flush ---------------------------------------------------------------------------

def run_main(argv: list[str]) -> int:
    """``main(argv)``'s exit code, whether it returns it or argparse exits with it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--batch", "0"], "argument --batch: must be an integer >= 1, got '0'"),
        (["--batch", "ten"], "argument --batch: must be an integer >= 1, got 'ten'"),
        (["--max-delay-s", "-1"], "argument --max-delay-s: must be a number of seconds > 0"),
        (["--claim-idle-s", "nan"], "argument --claim-idle-s: must be a number of seconds > 0"),
        (["--appliers", "wtsim.appliers"], "--appliers must be MODULE:NAME"),
        (["--appliers", "no_such_module_here:X"], "cannot import no_such_module_here (ModuleNotFoundError"),
        (["--appliers", "wtsim.appliers:NOPE"], "module wtsim.appliers has no attribute 'NOPE'"),
        (["--appliers", "wtsim.appliers:upsert_newer"], "must be a non-empty mapping namespace -> applier"),
        (["--redis-url", "http://localhost"], "--redis-url: redis url must start with redis://"),
        (["--redis-url", "redis://127.0.0.1:1/0"], "--redis-url redis://127.0.0.1:1/0: Redis not reachable"),
    ],
)
def test_flush_bad_input_is_one_line_and_exit_code_2(extra, message, capsys, tmp_path):
    argv = ["flush", "--redis-url", "redis://127.0.0.1:1/0", "--database-url", f"sqlite:///{tmp_path / 'x.db'}", *extra]
    assert run_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wtsim: error:") and message in lines[0], lines


@pytest.mark.redis_server
@pytest.mark.parametrize(
    "database, message",
    [
        ("nonsense", "--database-url nonsense: not a URL SQLAlchemy can use"),
        ("postgresql+psycopg://postgres@127.0.0.1:1/test", "--database-url postgresql+psycopg://postgres@127.0.0.1:1/test: cannot connect"),
        (None, "table products does not exist; create it, or pass --create-tables"),
    ],
    ids=["unparsable", "refused", "no-table"],
)
def test_flush_bad_database_is_one_line_and_exit_code_2(database, message, server, tmp_path):
    """Checked at start, in a real process: no traceback, and nothing flushed into a table that is not there."""
    database = database or f"sqlite:///{tmp_path / 'empty.db'}"
    proc = subprocess.run([sys.executable, "-m", "wtsim", "flush", "--redis-url", server.url, "--database-url", database],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wtsim: error:") and message in lines[0], proc.stderr


@pytest.mark.redis_server
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_flush_drains_the_cache_queue_into_sqlite_and_stops_cleanly(sig, server, tmp_path):
    """A real `wtsim flush` process writes what WriteBehindCache queued, then exits 0 on the signal."""
    from flush_process import FlushProcess
    from sqlalchemy.orm import Session

    from wtsim import WriteBehindCache, make_engine
    from wtsim.models import Product

    url = f"sqlite:///{tmp_path / 'shop.db'}"
    cache = WriteBehindCache(server.client(), prefix="shop")
    acked = {}
    for i in range(120):  # 40 keys, 3 writes each
        acked[f"p-{i % 40}"] = cache.write("products", f"p-{i % 40}", {"name": "n", "price_cents": 1, "stock": i},
                                           version_reader=lambda db: None)
    with FlushProcess(server.url, url, tmp_path / "flush.log", "--prefix", "shop", "--create-tables",
                      "--summary-s", "0.2", "--batch", "50") as flusher:
        flusher.start()
        deadline = time.monotonic() + 20
        while cache.pending() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cache.pending() == 0, flusher.log()
        flusher.wait_for("summary: ")
        assert flusher.stop(sig) == 0, flusher.log()
    engine = make_engine(url)
    with Session(engine) as db:
        assert {p.id: p.version for p in db.query(Product)} == acked
    engine.dispose()
    log = flusher.log()
    assert re.search(r"batch: read 50 \(claimed 0\), applied \d+, coalesced \d+", log), log
    assert f"{signal.Signals(sig).name}: stopping after the current batch" in log
    assert re.search(r"stopped: batches=\d+ read=120 claimed=0 applied=\d+ coalesced=\d+ acked=120 dead=0", log), log
    assert "Traceback" not in log
