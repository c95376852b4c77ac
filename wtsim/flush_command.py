"""``wtsim flush``: run a write-behind flusher as a long-lived process.

It drains the stream of :class:`wtsim.WriteBehindCache` into the database with
:meth:`wtsim.WriteBehindFlusher.run` until SIGINT or SIGTERM, then exits 0:

* the first signal lets the batch in progress finish (commit, ack, un-pin);
  when that batch is waiting to retry a database that is down, the wait ends
  at once and the batch is abandoned unacknowledged;
* a second signal abandons the batch wherever it is.

Abandoning is safe: entries that were read and never acknowledged stay pending
in the consumer group. A flusher restarted under the same ``--consumer`` reads
them first; another one takes them over after ``--claim-idle-s``. The appliers
refuse versions that are not newer, so an entry written twice changes nothing.

``--appliers MODULE:NAME`` names a mapping ``namespace -> applier`` (default
:data:`wtsim.appliers.SAMPLE_APPLIERS`, the sample ``products`` table). Tables
that appliers made by :func:`wtsim.upsert_newer` write are checked at start: a
missing one is an error (otherwise every entry would fail and, on PostgreSQL,
go to the dead-letter stream), unless ``--create-tables`` creates it.

Bad input (a URL, a number, appliers that do not import, a server that does not
answer at start) raises ``ValueError`` with one line, which :func:`wtsim.cli.main`
prints as ``wtsim: error: ...`` with exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Mapping
from typing import Any, Callable

log = logging.getLogger("wtsim.flush")

DEFAULT_APPLIERS = "wtsim.appliers:SAMPLE_APPLIERS"


class _Abandon(BaseException):
    """Raised by the second stop signal: leave the batch in progress, unacknowledged."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    """Add ``flush`` to the ``wtsim`` command's subparsers."""
    p = subparsers.add_parser(
        "flush", help="run a write-behind flusher until SIGINT/SIGTERM",
        description="Drain the write-behind stream into the database, batch by batch, until stopped.",
    )
    p.add_argument("--redis-url", required=True, help="the Redis of the write-behind cache, e.g. redis://127.0.0.1:6379/0")
    p.add_argument("--database-url", required=True, help="the SQLAlchemy URL of the database to write")
    p.add_argument("--prefix", default="wtc", help="the cache's key prefix (default: wtc)")
    p.add_argument("--stream", help="the stream to drain (default: <prefix>:queue)")
    p.add_argument("--group", default="wtsim-flushers", help="the consumer group (default: wtsim-flushers)")
    p.add_argument("--consumer", help="this flusher's name in the group (default: host-pid); "
                   "restarting under the same name re-reads what it left pending")
    p.add_argument("--batch", type=_positive_int, default=100, help="entries per batch and transaction (default: 100)")
    p.add_argument("--max-delay-s", type=_positive_seconds, default=0.1,
                   help="how long to wait for the first entry of a batch (default: 0.1)")
    p.add_argument("--claim-idle-s", type=_positive_seconds, default=30.0,
                   help="take over entries another flusher left pending this long (default: 30)")
    p.add_argument("--default-ttl", type=_positive_seconds, default=3600.0,
                   help="TTL of an entry once flushed (default: 3600)")
    p.add_argument("--appliers", default=DEFAULT_APPLIERS, metavar="MODULE:NAME",
                   help=f"an importable mapping namespace -> applier(session, id, data, version) (default: {DEFAULT_APPLIERS})")
    p.add_argument("--create-tables", action="store_true",
                   help="create the appliers' tables when missing (default: a missing table is an error)")
    p.add_argument("--summary-s", type=_positive_seconds, default=60.0,
                   help="log a summary this often, with -v (default: 60)")
    p.add_argument("-v", "--verbose", action="store_true", help="log each batch and the summaries (INFO)")
    p.set_defaults(func=flush_command)


def load_appliers(spec: str) -> dict[str, Callable]:
    """The mapping named by ``MODULE:NAME``; a one-line ``ValueError`` naming what is wrong."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"--appliers must be MODULE:NAME, e.g. {DEFAULT_APPLIERS}, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the module raises while importing
        raise ValueError(f"--appliers {spec}: cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    try:
        appliers = getattr(module, name)
    except AttributeError:
        raise ValueError(f"--appliers {spec}: module {module_name} has no attribute {name!r}") from None
    if not isinstance(appliers, Mapping) or not appliers:
        raise ValueError(f"--appliers {spec}: must be a non-empty mapping namespace -> applier, "
                         f"got {type(appliers).__name__}")
    for namespace, applier in appliers.items():
        if not isinstance(namespace, str) or not callable(applier):
            raise ValueError(f"--appliers {spec}: entry {namespace!r} must map a namespace (str) to a callable")
    return dict(appliers)


def _connect(args: argparse.Namespace):
    """A Redis client that answered PING and an engine that connected once."""
    import redis
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from .connections import make_engine, redis_client
    from .demo import _driver_advice, _hide_password, _one_line

    try:
        client = redis_client(args.redis_url, socket_timeout=5, connect_timeout=5)
    except ValueError as exc:
        raise ValueError(f"--redis-url: {exc}") from None
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        raise ValueError(f"--redis-url {_hide_password(args.redis_url)}: Redis not reachable ({_one_line(exc)})") from None

    shown = _hide_password(args.database_url)
    try:
        engine = make_engine(args.database_url, pool_pre_ping=True)
    except ImportError as exc:
        raise ValueError(f"--database-url {shown}: {_driver_advice(args.database_url, exc)}") from None
    except ArgumentError as exc:
        raise ValueError(f"--database-url {shown}: not a URL SQLAlchemy can use ({_one_line(exc)}); "
                         "e.g. sqlite:///shop.db or postgresql+psycopg://user@host/db") from None
    if engine.dialect.is_async:
        engine.dispose()
        raise ValueError(f"--database-url {shown}: {engine.dialect.driver} is an asyncio driver; "
                         "use a plain one, e.g. postgresql+psycopg://")
    try:
        with engine.connect():
            pass
    except DBAPIError as exc:
        engine.dispose()
        raise ValueError(f"--database-url {shown}: cannot connect ({_one_line(exc.orig)})") from None
    return client, engine


def _check_tables(engine: Any, appliers: Mapping[str, Callable], create: bool, shown: str) -> None:
    """Create (``create``) or demand the tables of appliers that name one (``applier.table``)."""
    from sqlalchemy import inspect

    tables = {id(t): t for t in (getattr(a, "table", None) for a in appliers.values()) if t is not None}
    missing = [t for t in tables.values() if not inspect(engine).has_table(t.name, schema=t.schema)]
    if not missing:
        return
    if not create:
        names = ", ".join(t.name for t in missing)
        raise ValueError(f"--database-url {shown}: table {names} does not exist; create it, or pass --create-tables")
    for table in missing:
        table.create(engine, checkfirst=True)
        log.info("created table %s", table.name)


def flush_command(args: argparse.Namespace) -> int:
    """``wtsim flush``: check the input, connect, then flush until SIGINT or SIGTERM; exit 0."""
    from .flusher import WriteBehindFlusher

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    appliers = load_appliers(args.appliers)
    client, engine = _connect(args)
    try:
        from .demo import _hide_password

        _check_tables(engine, appliers, args.create_tables, _hide_password(args.database_url))
        flusher = WriteBehindFlusher(
            client, engine, appliers, prefix=args.prefix, stream=args.stream, group=args.group,
            consumer=args.consumer, batch=args.batch, max_delay_s=args.max_delay_s,
            claim_idle_s=args.claim_idle_s, default_ttl=args.default_ttl,
        )
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            if stop.is_set():
                raise _Abandon()
            log.info("%s: stopping after the current batch", signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        c = flusher.config
        log.info("started: stream %s, group %s, consumer %s, batch %d, namespaces %s",
                 c.stream, c.group, c.consumer, c.batch, ", ".join(sorted(appliers)))
        try:
            flusher.run(stop, summary_every_s=args.summary_s)
        except _Abandon:
            log.warning("second signal: the batch in progress is abandoned; its entries stay pending")
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        log.info("stopped: %s", " ".join(f"{k}={v}" for k, v in flusher.stats.as_dict().items()))
    finally:
        engine.dispose()
        client.close()
    return 0
