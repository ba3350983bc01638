"""The command line (``python -m server``): the first stdout line, then serve until stopped.

The first stdout line is ``{"ports": [...], "base_urls": [...]}`` (with ``--hub SPEC``, the
fake Hugging Face Hub of ``hub.py``, also ``"hub"`` and ``"cdn"`` URLs); every request is appended
as one JSON line to the ``--log`` file (flushed per line).  SIGTERM, SIGINT and (with
``--exit-on-stdin-eof``) the end of stdin stop the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import IO

from .hub import FakeHub, serve_hub_from_spec
from .inprocess import RunningServer, serve
from .state import DEFAULT_ROBOTS_TXT, ServerState


async def _amain(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    log_file: IO[str] | None = None
    if args.log:
        log_file = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    srv: RunningServer | FakeHub
    if args.hub:
        spec = json.loads(Path(args.hub).read_text(encoding="utf-8"))
        srv = await serve_hub_from_spec(spec, log_file=log_file, keep_log=not args.no_memory_log)
        info = {"ports": srv.ports, "base_urls": srv.base_urls}
        info.update(hub=srv.hub_url, cdn=srv.cdn_url)
    else:
        state = ServerState(
            log_file=log_file,
            keep_log=not args.no_memory_log,
            robots_txt=None if args.no_robots_txt else args.robots_txt,
        )
        srv = await serve(args.hosts, args.address_mode, state=state, port_base=args.port_base)
        info = {"ports": srv.ports, "base_urls": srv.base_urls}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, stop.set)
            except (NotImplementedError, RuntimeError):  # pragma: no cover - Windows
                signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))
        if args.exit_on_stdin_eof:
            stdin_fd = sys.stdin.fileno()

            def _watch_stdin() -> None:
                # raw os.read: a daemon thread blocked in a *buffered* stdin read
                # aborts the interpreter at shutdown
                with contextlib.suppress(Exception):
                    while os.read(stdin_fd, 65536):
                        pass
                with contextlib.suppress(RuntimeError):  # loop already closed
                    loop.call_soon_threadsafe(stop.set)

            threading.Thread(target=_watch_stdin, daemon=True).start()
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await srv.close()
        if log_file is not None:
            log_file.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server", description="fetchshard loopback test HTTP server"
    )
    parser.add_argument("--hosts", type=int, default=1, help="number of listeners")
    parser.add_argument("--port-base", type=int, default=0, help="first port (0 = ephemeral ports)")
    parser.add_argument("--address-mode", choices=["ports", "addresses"], default="ports")
    parser.add_argument("--log", help="append each request as a JSON line to this file")
    parser.add_argument(
        "--no-memory-log", action="store_true", help="do not keep the request log in memory"
    )
    parser.add_argument(
        "--robots-txt", default=DEFAULT_ROBOTS_TXT, help="body served at /robots.txt"
    )
    parser.add_argument("--no-robots-txt", action="store_true", help="/robots.txt answers 404")
    parser.add_argument(
        "--hub",
        metavar="SPEC",
        help="serve the fake Hugging Face Hub and its CDN (two ports) from this JSON spec "
        "(server.hub.hub_spec); the startup line adds 'hub' and 'cdn' URLs",
    )
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin is closed (used by ServerProcess so orphans do not linger)",
    )
    args = parser.parse_args(argv)
    if args.hosts < 1:
        parser.error("--hosts must be >= 1")
    asyncio.run(_amain(args))
    return 0
