"""Fallback static-file server (aiohttp) for machines without nginx.

    python benchmarks/static_server.py --root DIR --port P --addresses 127.0.0.2,127.0.0.3,...

Serves DIR on every address at one port, in one process. It is slower than nginx and uses a
core of its own, so figures measured against it are lower bounds on the clients' speed.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web


async def serve(root: str, port: int, addresses: list[str]) -> None:
    app = web.Application()
    app.router.add_static("/", root, follow_symlinks=False)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for address in addresses:
        await web.TCPSite(runner, address, port, backlog=1024).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--addresses", required=True, help="comma-separated IPv4 addresses")
    args = parser.parse_args()
    coro = serve(args.root, args.port, args.addresses.split(","))
    try:
        import uvloop
    except ImportError:  # the server works without it, only slower
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
