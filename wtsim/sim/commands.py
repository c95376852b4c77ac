"""The ``wtsim run``, ``wtsim sweep`` and ``wtsim compare`` subcommands.

:func:`register` adds them to the ``wtsim`` parser. Each sets ``func``, which
takes the parsed arguments and returns an exit code. Bad input (an unknown
scenario, a bad ``--set``, a value out of range) raises ``ValueError`` or
``FileNotFoundError`` with a one-line message; ``wtsim.cli.main`` turns it into
``wtsim: error: ...`` and exit code 2. This module is the only one of
:mod:`wtsim.sim` that prints.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from tqdm import tqdm

from .. import oracle
from .compare import compare, format_comparison, parse_policies
from .metrics import Result
from .run import run
from .scenario import FIELD_NAMES, FIELD_SPECS, Scenario, convert, load_scenario, scenario_names
from .sweep import sweep
from .trace import scan

COMPARED_DEFAULT = ("none", "cache-aside", "write-through", "write-behind")


def register(subparsers: Any) -> None:
    """Add ``run`` and ``sweep`` to the ``wtsim`` command's subparsers."""
    known = ", ".join(scenario_names())
    scenario_help = f"a .toml file, or the name of one in data/scenarios ({known})"

    run_parser = subparsers.add_parser(
        "run", help="simulate a scenario and print what it measured",
        description="Simulate one scenario; print a summary (or --json), optionally plot its timeline.",
    )
    run_parser.add_argument("scenario", metavar="SCENARIO", help=scenario_help)
    _add_set(run_parser)
    run_parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    run_parser.add_argument("--plot", metavar="FILE.png", help="also draw the timeline into this image")
    run_parser.set_defaults(func=run_command)

    sweep_parser = subparsers.add_parser(
        "sweep", help="simulate a scenario over a grid of values, in parallel",
        description="Run a scenario at every combination of the --vary values; one row per run.",
    )
    sweep_parser.add_argument("scenario", metavar="SCENARIO", help=scenario_help)
    sweep_parser.add_argument(
        "--vary", action="append", required=True, metavar="FIELD=V1,V2,...",
        help="values to try for one field; repeat for a grid",
    )
    _add_set(sweep_parser)
    sweep_parser.add_argument(
        "--jobs", type=int, default=None, metavar="N",
        help="runs in parallel (default: the number of CPUs; 1 runs them here; with --dask local: workers, default 2)",
    )
    _add_dask(sweep_parser)
    sweep_parser.add_argument("--json", action="store_true", help="print the results as a JSON list")
    sweep_parser.set_defaults(func=sweep_command)

    compare_parser = subparsers.add_parser(
        "compare", help="the same scenario under every pattern, side by side",
        description="Run one seeded scenario (workload and faults) under each policy; one table, one figure.",
    )
    compare_parser.add_argument("scenario", metavar="SCENARIO", help=scenario_help)
    compare_parser.add_argument("--policies", default=",".join(COMPARED_DEFAULT), metavar="P1,P2,...",
                                help=f"patterns to compare (default: {','.join(COMPARED_DEFAULT)})")
    _add_set(compare_parser)
    compare_parser.add_argument("--plot", metavar="FILE.png", help="also draw the comparison into this image")
    compare_parser.add_argument("--json", action="store_true", help="print the results as JSON, by policy")
    compare_parser.add_argument("--jobs", type=int, default=None, metavar="N",
                                help="runs in parallel (default: the number of CPUs; with --dask local: workers, default 2)")
    _add_dask(compare_parser)
    compare_parser.set_defaults(func=compare_command)


def _check_plot(path: str | None) -> None:
    if path and not path.lower().endswith((".png", ".svg", ".pdf")):
        raise ValueError(f"--plot needs a .png, .svg or .pdf file name, got {path!r}")
    if path and not Path(path).resolve().parent.is_dir():
        raise ValueError(f"--plot {path}: folder {Path(path).parent} does not exist")


def _add_dask(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dask", metavar="ADDRESS",
        help='run on Dask: "local" (a LocalCluster of --jobs worker processes, default 2) or a scheduler\'s '
             'address, e.g. tcp://HOST:8786 (needs pip install "wtsim[dask]")',
    )


def _jobs(args: argparse.Namespace) -> int:
    """``--jobs``, checked; its default: 2 Dask workers with ``--dask local``, else the number of CPUs."""
    if args.jobs is None:
        return 2 if args.dask else os.cpu_count() or 1
    if args.jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {args.jobs}")
    return args.jobs


@contextmanager
def _executor(args: argparse.Namespace, jobs: int) -> Iterator[concurrent.futures.Executor | None]:
    """The executor ``--dask`` asks for (Dask imported only then), or None: sweep's own process pool."""
    if not args.dask:
        yield None
        return
    from .cluster import dask_executor

    with dask_executor(args.dask, workers=jobs) as executor:
        yield executor


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set", action="append", default=[], dest="overrides", metavar="FIELD=VALUE",
        help="change one field of the scenario, e.g. --set ttl_s=30 --set versioned=true",
    )
    parser.add_argument(
        "--trace", metavar="FILE.csv",
        help="replay this CSV (time_s,key,op) instead of the Poisson workload, up to duration_s "
             "(the same as --set trace=FILE.csv)",
    )


def _scenario(args: argparse.Namespace) -> Scenario:
    """The scenario named on the command line, with its ``--set`` and ``--trace``."""
    scenario = load_scenario(args.scenario).with_overrides(args.overrides)
    return scenario if args.trace is None else scenario.replace(trace=args.trace)


def run_command(args: argparse.Namespace) -> int:
    """``wtsim run``: one scenario, a summary table or JSON, and optionally a plot."""
    scenario = _scenario(args)
    _check_plot(args.plot)
    result = _run_with_progress(scenario, show=not args.json)
    if args.plot:
        from ..plots import timeline_figure  # matplotlib only when a plot is asked for

        timeline_figure(result).savefig(args.plot, dpi=120)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_summary(result))
        if args.plot:
            print(f"\ntimeline plotted to {args.plot}")
    return 0


def _run_with_progress(scenario: Scenario, show: bool) -> Result:
    """Run ``scenario``; on a terminal, a progress bar in simulated seconds appears if it takes over 2 s."""
    if not (show and sys.stderr.isatty()):
        return run(scenario)
    with tqdm(total=scenario.duration_s, desc=scenario.name, unit="sim s", delay=2.0, file=sys.stderr,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} simulated s [{elapsed}<{remaining}]") as bar:
        return run(scenario, progress=lambda now: bar.update(now - bar.n))


def sweep_command(args: argparse.Namespace) -> int:
    """``wtsim sweep``: a grid of runs, one row each."""
    scenario = _scenario(args)
    vary = dict(parse_vary(text) for text in args.vary)
    jobs = _jobs(args)
    with _executor(args, jobs) as executor:
        results = sweep(scenario, vary, executor=executor, jobs=jobs, progress=not args.json)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        print(format_sweep(results, list(vary)))
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """``wtsim compare``: one scenario under each policy, a table (or JSON) and optionally a figure."""
    policies = parse_policies(args.policies)
    scenario = _scenario(args)
    _check_plot(args.plot)
    jobs = _jobs(args)
    with _executor(args, jobs) as executor:
        results = compare(scenario, policies, jobs=jobs, executor=executor, progress=not args.json)
    if args.plot:
        from ..plots import comparison_figure

        comparison_figure(results).savefig(args.plot, dpi=120)
    if args.json:
        print(json.dumps({name: r.to_dict() for name, r in results.items()}, indent=2))
    else:
        print(format_comparison(results))
        if args.plot:
            print(f"\ncomparison plotted to {args.plot}")
    return 0


def parse_vary(text: str) -> tuple[str, list[Any]]:
    """``"ttl_s=1,10,none"`` -> ``("ttl_s", [1.0, 10.0, None])``."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not name or not raw.strip():
        raise ValueError(f"--vary expects field=v1,v2,..., got {text!r}")
    if name not in FIELD_NAMES:
        raise ValueError(f"unknown field {name!r} in --vary; allowed fields: {', '.join(FIELD_NAMES)}")
    if not FIELD_SPECS[name].varies:
        raise ValueError(f"--vary cannot vary {name}; make one scenario file per variant")
    return name, [convert(name, value.strip()) for value in raw.split(",")]


# -- tables ---------------------------------------------------------------------------------------


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f} ms"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.2f} %"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def format_summary(result: Result) -> str:
    """A readable two-column summary of one run."""
    s: Scenario = result.scenario
    r = result
    rl, wl = r.read_latency_s, r.write_latency_s
    source = f"({s.read_rate:g} + {s.write_rate:g} per s)" if s.trace is None else "(replayed from the trace)"
    rows = [
        ("requests", f"{r.reads:,} reads, {r.writes:,} writes  {source}"),
        ("hit ratio", f"{_pct(r.hit_ratio)}  ({r.hits:,} hits, {r.misses:,} misses)"),
        ("DB queries/s", f"{r.db_queries_per_s:,.1f}  ({r.db_reads:,} reads, {r.db_writes:,} writes)"),
        ("DB wait (mean)", _ms(r.db_wait_mean_s)),
        ("read latency", f"mean {_ms(rl['mean'])}   p50 {_ms(rl['p50'])}   p99 {_ms(rl['p99'])}"),
        ("write latency", f"mean {_ms(wl['mean'])}   p50 {_ms(wl['p50'])}   p99 {_ms(wl['p99'])}"),
        ("stale reads", f"{r.stale_reads:,}  ({_pct(r.stale_read_ratio)} of reads)"),
        ("max staleness", f"{r.max_staleness_s:.3f} s  (mean {_ms(r.mean_staleness_s)})"),
        ("consistency", f"{oracle.describe(r.consistency)}; {r.keys_stale_at_rest:,} keys stale at rest at the end"),
        ("failed requests", f"{r.errors:,}"),
        ("cache errors", f"{r.cache_errors:,}  (handled by the policy)"),
    ]
    if s.leases:
        rows.append(("lease waits", f"{r.lease_waits:,}  (readers waiting for another's recompute)"))
    if s.early_recompute_beta is not None:
        rows.append(("early recomputes", f"{r.early_recomputes:,}  (XFetch, beta {s.early_recompute_beta:g})"))
    if s.request_timeout_s is not None or s.retries:
        rows.append(("timeouts, retries", f"{r.timeouts:,} requests given up, {r.retries:,} retries"))
    if s.policy == "write-behind":
        lag = r.db_lag_s
        rows += [
            ("writes lost", f"{r.writes_lost:,}  ({r.writes_unflushed:,} still queued at the end)"),
            ("DB lag", f"mean {_ms(lag['mean'])}   p50 {_ms(lag['p50'])}   p99 {_ms(lag['p99'])}"
                       f"   max {_ms(lag['max'])}"),
            ("queue (max)", f"{r.queue_max:,} entries  ({s.flushers} flusher(s), batches of {s.flush_batch})"),
        ]
    width = max(len(name) for name, _ in rows)
    head = [
        f"{s.name}: {s.duration_s:g} s simulated, the first {s.warmup_s:g} s left out, seed {s.seed}",
        f"policy {s.policy}   versioned: {_yes(s.versioned)}   outage repair: {_yes(s.outage_repair)}"
        f"   leases: {_yes(s.leases)}   breaker: {_yes(s.breaker)}",
    ]
    if s.faults:
        head.append("faults: " + "; ".join(
            f"{f.kind} {f.start_s:g}-{'end' if f.end_s is None else format(f.end_s, 'g')} s" for f in s.faults
        ))
    if s.trace is not None:
        info = scan(s.trace, s.duration_s)
        head.append(f"trace {s.trace}: {info.requests:,} requests on {info.n_keys:,} keys replayed"
                    + (f"; {info.skipped:,} lines at time_s >= {s.duration_s:g} s not replayed" if info.skipped else ""))
    return "\n".join(head + [""] + [f"  {name:<{width}}  {value}" for name, value in rows])


def format_sweep(results: Sequence[Result], varied: Sequence[str]) -> str:
    """One aligned row per run: the varied fields, then the headline figures."""
    header = [*varied, "hit ratio", "DB q/s", "read p99", "write p99", "stale reads", "max stale", "errors"]
    rows = [header]
    for r in results:
        rows.append([
            *(str(getattr(r.scenario, name)) for name in varied),
            _pct(r.hit_ratio),
            f"{r.db_queries_per_s:,.1f}",
            _ms(r.read_latency_s["p99"]),
            _ms(r.write_latency_s["p99"]),
            f"{r.stale_reads:,}",
            f"{r.max_staleness_s:.3f} s",
            f"{r.errors:,}",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
