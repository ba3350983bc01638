"""Writing and sleeping in a handler without outliving the client or the server."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from .state import ServerState

SLEEP_STEP = 0.05


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


async def write_unless_gone(
    request: web.Request, resp: web.StreamResponse, data: bytes | memoryview
) -> bool:
    """Write ``data``; return False (instead of raising) if the client went away."""
    if client_gone(request):
        return False
    try:
        await resp.write(data)
    except ConnectionResetError:  # includes aiohttp.ClientConnectionResetError
        return False
    return True


async def sleep_unless_stopping(state: ServerState, seconds: float) -> bool:
    """Sleep in small steps; return False early if the server is shutting down."""
    deadline = time.monotonic() + seconds
    while not state.stopping:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(remaining, SLEEP_STEP))
    return False
