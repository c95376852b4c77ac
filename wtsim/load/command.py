"""The ``wtsim load`` command: a scenario on real servers, printed beside the simulator's prediction.

Bad input (an unknown scenario, a bad ``--set``, a fault that cannot be
injected here, a rate this machine cannot drive) is one line and exit code 2,
as for every ``wtsim`` command. A run whose client fell more than 10% behind
the scenario's rate is reported in one line with exit code 2 too: what it
measured is not that scenario (its ``--history`` is still written).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from .. import oracle
from ..sim.metrics import Result

WHAT = "run a scenario in real time on real Redis and SQL; print the prediction beside the measurement"


def register(subparsers: Any) -> None:
    """Add ``wtsim load`` to the ``wtsim`` parser."""
    parser = subparsers.add_parser("load", help=WHAT, description=WHAT)
    parser.add_argument("scenario", metavar="SCENARIO", help="a name from data/scenarios/, or a TOML file")
    parser.add_argument("--redis-url", help="Redis to run against (default: a private redis-server on a free "
                                            "port when it is installed, else redis://127.0.0.1:6379/0)")
    parser.add_argument("--database-url", help="any SQLAlchemy URL (default: SQLite in a temporary file); "
                                               "only the table wtsim_load_items is touched")
    parser.add_argument("--allow-admin-faults", action="store_true",
                        help="on a Redis this run did not start, allow cache-flush/cache-crash (deletes this run's "
                             "keys only) and cache-set-fail (CONFIG SET maxmemory: the whole server)")
    parser.add_argument("--history", metavar="FILE", help="write every request to FILE (.csv, else JSON lines)")
    parser.add_argument("--json", action="store_true",
                        help='print {"predicted": ..., "measured": ...} (each a Result) and the run\'s facts')
    parser.add_argument("--plot", metavar="FILE.png", help="draw predicted and measured timelines into this image")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="print the policies' log (every cache failure, every repair) on stderr")
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="FIELD=VALUE",
                        help="change one field of the scenario, e.g. --set read_rate=500 --set outage_repair=true")
    parser.set_defaults(func=load_command, trace=None)


def load_command(args: argparse.Namespace) -> int:
    """``wtsim load``: run, then print the table (or JSON); exit 2 if the client did not keep up."""
    from ..sim.commands import _check_plot, _scenario
    from .history import write_history
    from .run import LATE_S, run_load

    scenario = _scenario(args)
    if scenario.trace is not None:
        raise ValueError("--trace: wtsim load replays Poisson arrivals and scripted requests only")
    _check_plot(args.plot)
    if args.history and not Path(args.history).resolve().parent.is_dir():
        raise ValueError(f"--history {args.history}: folder {Path(args.history).parent} does not exist")
    quiet = args.json
    _quiet_policies(args.verbose)
    say = (lambda line: None) if quiet else (lambda line: print(f"  {line} ...", file=sys.stderr))
    run = _with_progress(lambda tick: run_load(scenario, args.redis_url, args.database_url,
                                               allow_admin_faults=args.allow_admin_faults, progress=say, tick=tick),
                         scenario.duration_s, show=not quiet and sys.stderr.isatty())
    if args.history:
        write_history(run.records, args.history)
    if not run.rate["kept_up"]:
        rate = run.rate
        worst = rate["worst_second"]
        print(f"wtsim: error: the client did not keep up: in second {worst['t']} only {worst['on_time']:.0%} of the "
              f"requests started within {LATE_S * 1e3:.0f} ms of their time ({rate['achieved_per_s']:,.0f} of "
              f"{rate['intended_per_s']:,.0f} requests/s on time); the measurement is not of this scenario: "
              "lower read_rate or write_rate", file=sys.stderr)
        return 2
    if args.plot:
        from ..plots import timelines_figure

        timelines_figure({"predicted": run.predicted, "measured": run.measured},
                         title=f"{scenario.name}: the simulator's prediction and the real run").savefig(args.plot,
                                                                                                       dpi=120)
    if args.json:
        print(json.dumps(run.to_dict(), indent=2))
        return 0
    print(format_load(run))
    if args.history:
        print(f"\nhistory: {len(run.records):,} requests written to {args.history}")
    if args.plot:
        print(f"timelines plotted to {args.plot}")
    return 0


def _quiet_policies(verbose: bool) -> None:
    """The policies log each cache failure: thousands of lines in an outage. Shown with --verbose only."""
    logger = logging.getLogger("wtsim")
    if verbose:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(relativeCreated)8.0f ms %(name)s: %(message)s")
    elif not logger.handlers:
        logger.addHandler(logging.NullHandler())
        logger.propagate = False


def _with_progress(job: Any, duration_s: float, show: bool) -> Any:
    if not show:
        return job(None)
    from tqdm import tqdm

    with tqdm(total=duration_s, desc="load", unit="s", file=sys.stderr,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]") as bar:
        return job(lambda now: bar.update(now - bar.n))


def comparison_rows(predicted: Result, measured: Result) -> list[tuple[str, str, str, str]]:
    """``(what, predicted, measured, difference)`` for each figure the two runs are compared on."""
    p, m = predicted, measured

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.2f}%"

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1e3:.2f} ms"

    def diff_pp(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None else f"{(b - a) * 100:+.2f} pp"

    def diff_ms(a: float | None, b: float | None) -> str:
        return "-" if a is None or b is None else f"{(b - a) * 1e3:+.2f} ms"

    def diff_n(a: float, b: float, digits: int = 0) -> str:
        rel = f" ({(b - a) / a:+.0%})" if a else ""
        return f"{b - a:+,.{digits}f}{rel}"

    rows = [
        ("hit ratio", pct(p.hit_ratio), pct(m.hit_ratio), diff_pp(p.hit_ratio, m.hit_ratio)),
        ("database queries/s", f"{p.db_queries_per_s:,.1f}", f"{m.db_queries_per_s:,.1f}",
         diff_n(p.db_queries_per_s, m.db_queries_per_s, 1)),
    ]
    for label, pl, ml in (("read", p.read_latency_s, m.read_latency_s), ("write", p.write_latency_s, m.write_latency_s)):
        for q in ("p50", "p99"):
            rows.append((f"{label} {q}", ms(pl[q]), ms(ml[q]), diff_ms(pl[q], ml[q])))
    rows += [
        ("stale reads", f"{p.stale_reads:,}", f"{m.stale_reads:,}", diff_n(p.stale_reads, m.stale_reads)),
        ("max staleness", f"{p.max_staleness_s:.3f} s", f"{m.max_staleness_s:.3f} s",
         f"{m.max_staleness_s - p.max_staleness_s:+.3f} s"),
        ("keys stale at rest", f"{p.keys_stale_at_rest:,}", f"{m.keys_stale_at_rest:,}",
         diff_n(p.keys_stale_at_rest, m.keys_stale_at_rest)),
        ("failed requests", f"{p.errors:,}", f"{m.errors:,}", diff_n(p.errors, m.errors)),
        ("cache errors", f"{p.cache_errors:,}", f"{m.cache_errors:,}", diff_n(p.cache_errors, m.cache_errors)),
    ]
    if p.scenario.request_timeout_s is not None or p.scenario.retries:
        rows.append(("timeouts", f"{p.timeouts:,}", f"{m.timeouts:,}", diff_n(p.timeouts, m.timeouts)))
    return rows


def format_load(run: Any) -> str:
    """The run as text: what ran where, the calibration, the rate, the table, the faults."""
    s, c, rate = run.scenario, run.calibration, run.rate
    lines = [
        f"{s.name}: {s.duration_s:g} s in real time, the first {s.warmup_s:g} s left out, seed {s.seed}, "
        f"policy {s.policy}",
        f"  Redis: {run.redis}    database: {run.database}",
        f"  measured before the run: cache round trip {c.cache_rtt_s * 1e3:.3f} ms, database read "
        f"{c.db_read_s * 1e3:.2f} ms, write {c.db_write_s * 1e3:.2f} ms, {c.db_connections} connections",
        f"  client CPU: {c.cpu_hit_s * 1e6:.0f} µs a hit, {c.cpu_miss_s * 1e6:.0f} µs a miss, "
        f"{c.cpu_write_s * 1e6:.0f} µs a write",
        f"  rate: {rate['intended_per_s']:,.0f} requests/s asked, {rate['achieved_per_s']:,.0f}/s started on time; "
        f"worst second {rate['worst_second']['t']}: {rate['worst_second']['on_time']:.0%} on time; "
        f"started late by p50 {rate['lag_s']['p50'] * 1e3:.1f} ms, p99 {rate['lag_s']['p99'] * 1e3:.1f} ms",
        "",
    ]
    rows = [("", "predicted", "measured", "difference")] + comparison_rows(run.predicted, run.measured)
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                      for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    lines += ["", f"  consistency, predicted: {oracle.describe(run.predicted.consistency)}",
              f"               measured:  {oracle.describe(run.measured.consistency)}"]
    if run.faults:
        lines += ["", "  faults injected:"] + [f"    t={t:7.3f} s  {what}" for t, what in run.faults]
    return "\n".join(lines)
