"""The ``wtsim`` command.

``wtsim demo``            narrated walk-through on the real cache (fakeredis + SQLite by
                          default), then out/report.html from three simulated scenarios
``wtsim run SCENARIO``    simulate a scenario from data/scenarios/ (or a TOML file)
``wtsim sweep SCENARIO``  simulate a grid of variations, in parallel
``wtsim compare SCENARIO``  the same seeded scenario under every pattern, side by side
``wtsim bench [cache|sim|load]``  measure the overhead ratios, the write-behind flusher's drain rate,
                          and the cache-hit reads/s the load runner drives
``wtsim flush``           run a write-behind flusher (Redis stream -> database) until SIGINT/SIGTERM;
                          its code is :mod:`wtsim.flush_command`
``wtsim load SCENARIO``   the scenario in real time on real Redis and SQL, beside the simulator's
                          prediction; its code is :mod:`wtsim.load.command`
``wtsim proxy``           a TCP proxy whose mode is a fault (down, unreachable, hang, slow), switchable
                          through a control port; its code is :mod:`wtsim.proxy_command`

Bad input ends with one line on stderr, ``wtsim: error: ...``, and exit code 2:
no traceback for a typo.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

from . import __version__

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line, not the usage text plus the error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"wtsim: error: {message} (see: {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``wtsim`` command and its subcommands."""
    parser = _Parser(prog="wtsim", description="Learn the write-through caching pattern.")
    parser.add_argument("--version", action="version", version=f"wtsim {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    demo = sub.add_parser("demo", help="narrated walk-through of the real cache")
    demo.add_argument("--redis-url", help="a real Redis, e.g. redis://127.0.0.1:6379/0 (default: embedded fakeredis)")
    demo.add_argument("--database-url", help="any SQLAlchemy URL (default: SQLite in a temporary file)")
    demo.add_argument("--out", default="out", help="folder for the simulated report (default: out)")
    demo.add_argument("--no-report", action="store_true", help="skip the simulated report")
    demo.set_defaults(func=_demo)

    bench = sub.add_parser("bench", help="measure overhead ratios (cache vs raw calls, simulator vs bare SimPy)")
    bench.add_argument("what", nargs="?", choices=("cache", "sim", "load", "all"), default="all")
    bench.add_argument("--redis-url", default="redis://127.0.0.1:6379/0", help="Redis for the cache bench")
    bench.add_argument("--database-url", default=None,
                       help="database for the flusher's drain rate (default: $WTSIM_DATABASE_URL, else SQLite "
                            "in a temporary file)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")
    bench.set_defaults(func=_bench)

    from .flush_command import register as register_flush

    register_flush(sub)

    from .proxy_command import register as register_proxy

    register_proxy(sub)

    try:
        from .sim.commands import register
    except ImportError:
        pass
    else:
        register(sub)
        from .load.command import register as register_load

        register_load(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"wtsim: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `wtsim run ... | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("wtsim: interrupted", file=sys.stderr)
        return 130


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(redis_url=args.redis_url, database_url=args.database_url)
    if not args.no_report:
        from .report import write_report

        print("\nThe simulator's view: the article's example and a Redis outage")
        path = write_report(args.out, progress=lambda step: print(f"   {step} ..."))
        print(f"\nReport with figures: {path}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    figures: dict = {}
    if args.what in ("cache", "all"):
        import redis

        from .bench import bench_cache, format_cache_bench

        database_url = args.database_url or os.environ.get("WTSIM_DATABASE_URL") or None
        try:
            rows = bench_cache(args.redis_url, database_url=database_url,
                               progress=lambda s: print(f"  measuring {s} ...", file=sys.stderr))
        except redis.RedisError as exc:
            raise ValueError(f"--redis-url {args.redis_url}: Redis not reachable ({exc})") from None
        figures["cache"] = rows
        if not args.json:
            print("wtsim bench cache: policy layer vs the same calls by hand (writes on SQLite), "
                  "and the flusher's drain rate")
            print(format_cache_bench(rows, args.redis_url))
    if args.what in ("sim", "all"):
        from .sim.bench import bench_sim, format_sim_bench

        result = bench_sim()
        figures["sim"] = result
        if not args.json:
            print("\nwtsim bench sim: the article's scenario vs a bare SimPy loop")
            print(format_sim_bench(result))
    if args.what in ("load", "all"):
        from .load.bench import bench_load, format_load_bench
        from .load.command import _quiet_policies

        _quiet_policies(verbose=False)
        result = bench_load(args.redis_url)
        figures["load"] = result
        if not args.json:
            print("\nwtsim bench load: cache-hit reads one load-runner process drives, every request recorded")
            print(format_load_bench(result))
    if args.json:
        print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
