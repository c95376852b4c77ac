"""``wtsim proxy``: a fault proxy (:class:`wtsim.proxy.FaultProxy`) as a long-running command.

``wtsim proxy --listen HOST:PORT --to HOST:PORT [--mode M] [--delay-ms N] [--control PORT]``
forwards until SIGINT or SIGTERM, then exits 0. Its first line on stdout says
where it listens (useful with port 0)::

    wtsim proxy: 127.0.0.1:7000 -> 127.0.0.1:6379, mode ok; control on 127.0.0.1:7001

With ``--control PORT`` it also listens on 127.0.0.1:PORT for one-line commands,
each answered with one line (``ok ...`` or ``error ...``):

``mode ok|down|unreachable|hang``   switch the mode
``mode slow MS``                     add MS milliseconds to every round trip
``status``                           ``ok mode=... delay_ms=... connections=N accepted=N``

``wtsim proxy --control-to [HOST:]PORT mode hang`` sends one such line and
prints the answer (exit 0 on ``ok``, 2 on ``error``), so a workshop can script
a fault: ``nc`` works too (``echo 'mode down' | nc 127.0.0.1 7001``).

Bad input, a port in use, a control port that does not answer: one line on
stderr, ``wtsim: error: ...``, exit code 2 (:func:`wtsim.cli.main`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import socketserver
import sys
import threading
from typing import Any

log = logging.getLogger("wtsim.proxy")


def _host_port(text: str, *, default_host: str | None = None) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host or ""
    if not host:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, e.g. 127.0.0.1:6379, got {text!r}")
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT with a port number, got {text!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535, got {text!r}")
    return host, number


def _target(text: str) -> tuple[str, int]:
    host, port = _host_port(text)
    if port == 0:
        raise argparse.ArgumentTypeError(f"the target needs a real port, not 0, got {text!r}")
    return host, port


def _control_to(text: str) -> tuple[str, int]:
    return _host_port(text, default_host="127.0.0.1")


def _delay_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of milliseconds >= 0, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of milliseconds >= 0, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    """Add ``proxy`` to the ``wtsim`` command's subparsers."""
    from .proxy import MODES

    p = subparsers.add_parser(
        "proxy", help="a TCP proxy that injects faults (down, unreachable, hang, slow) until SIGINT/SIGTERM",
        description="Forward --listen to --to; the mode is a fault, switchable through --control.",
    )
    p.add_argument("--listen", type=_host_port, metavar="HOST:PORT", help="where to listen (port 0: any free port)")
    p.add_argument("--to", type=_target, metavar="HOST:PORT", help="the server behind the proxy, e.g. 127.0.0.1:6379")
    p.add_argument("--mode", choices=MODES, default="ok", help="the mode at start (default: ok)")
    p.add_argument("--delay-ms", type=_delay_ms, default=None,
                   help="mode slow: milliseconds added to each round trip (half each way)")
    p.add_argument("--control", type=int, metavar="PORT",
                   help="listen on 127.0.0.1:PORT for lines 'mode M [MS]' and 'status' (0: any free port)")
    p.add_argument("--control-to", type=_control_to, metavar="[HOST:]PORT",
                   help="send COMMAND to a running proxy's control port, print the answer")
    p.add_argument("command", nargs="*", metavar="COMMAND",
                   help="with --control-to: e.g. mode hang | mode slow 200 | status")
    p.add_argument("-v", "--verbose", action="store_true", help="log each mode change (INFO)")
    p.set_defaults(func=proxy_command)


def handle_line(proxy: Any, line: str) -> str:
    """One control line -> one answer line; never raises."""
    words = line.split()
    try:
        if words == ["status"]:
            pass
        elif len(words) in (2, 3) and words[0] == "mode":
            delay = None
            if len(words) == 3:
                delay = _delay_ms(words[2]) / 1000
            elif words[1] == "slow":
                raise ValueError("mode slow needs the milliseconds to add, e.g. 'mode slow 200'")
            proxy.set_mode(words[1], delay)
            log.info("mode %s%s", words[1], f" +{delay * 1000:g} ms" if delay is not None else "")
        else:
            raise ValueError(f"unknown command {line.strip()!r}; expected 'mode M [MS]' or 'status'")
    except (ValueError, argparse.ArgumentTypeError, OSError) as exc:
        return f"error {exc}"
    return (f"ok mode={proxy.mode} delay_ms={proxy.delay_s * 1000:g} connections={proxy.connections} "
            f"accepted={proxy.accepted}")


def send_control(host: str, port: int, command: str, timeout_s: float = 5.0) -> str:
    """Send one control line to a running ``wtsim proxy``; answer its line."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.sendall(command.encode() + b"\n")
            with s.makefile("r", encoding="utf-8", errors="replace") as f:
                answer = f.readline().strip()
    except OSError as exc:
        raise ValueError(f"--control-to {host}:{port}: no proxy answers ({exc})") from None
    if not answer:
        raise ValueError(f"--control-to {host}:{port}: closed without an answer")
    return answer


class _ControlServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _control_server(proxy: Any, port: int) -> _ControlServer:
    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            for raw in self.rfile:
                line = raw.decode("utf-8", "replace").strip()
                if line:
                    self.wfile.write((handle_line(proxy, line) + "\n").encode())

    try:
        server = _ControlServer(("127.0.0.1", port), Handler)
    except OSError as exc:
        raise ValueError(f"--control {port}: cannot listen ({exc.strerror or exc})") from None
    threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True, name="wtsim-proxy-control").start()
    return server


def proxy_command(args: argparse.Namespace) -> int:
    """``wtsim proxy``: send a control line, or run a proxy until SIGINT/SIGTERM; exit 0."""
    if args.control_to is not None:
        if args.listen or args.to or args.control is not None:
            raise ValueError("--control-to talks to a running proxy: it takes no --listen, --to or --control")
        if not args.command:
            raise ValueError("--control-to needs a command, e.g. 'mode hang', 'mode slow 200' or 'status'")
        answer = send_control(*args.control_to, " ".join(args.command))
        if not answer.startswith("ok"):
            raise ValueError(f"the proxy answered: {answer}")
        print(answer)
        return 0
    if args.command:
        raise ValueError(f"unexpected argument {' '.join(args.command)!r} (commands go with --control-to)")
    if args.listen is None or args.to is None:
        raise ValueError("wtsim proxy needs --listen HOST:PORT and --to HOST:PORT (or --control-to PORT COMMAND)")
    if args.control is not None and not 0 <= args.control <= 65535:
        raise ValueError(f"--control must be a port in 0..65535, got {args.control}")
    if args.mode == "slow" and args.delay_ms is None:
        raise ValueError("--mode slow needs --delay-ms, the milliseconds added to each round trip")
    if args.mode != "slow" and args.delay_ms is not None:
        raise ValueError("--delay-ms goes with --mode slow")

    from .proxy import FaultProxy

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    proxy = FaultProxy(args.listen[0], args.listen[1], args.to[0], args.to[1], mode=args.mode,
                       delay_s=None if args.delay_ms is None else args.delay_ms / 1000)
    try:
        proxy.start()
    except OSError as exc:
        raise ValueError(f"--listen {args.listen[0]}:{args.listen[1]}: cannot listen ({exc.strerror or exc})") from None
    control = None
    try:
        if args.control is not None:
            control = _control_server(proxy, args.control)
        stop = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("%s: stopping", signal.Signals(signum).name)
            stop.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        where = f"; control on 127.0.0.1:{control.server_address[1]}" if control else ""
        print(f"wtsim proxy: {proxy.address} -> {args.to[0]}:{args.to[1]}, mode {proxy.mode}{where}", flush=True)
        try:
            while not stop.wait(0.2):
                pass
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        if control is not None:
            control.shutdown()
            control.server_close()
        proxy.stop()
    return 0
