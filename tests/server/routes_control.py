"""Routes the tests steer the server with, left out of the request log: the log and the pace."""

from __future__ import annotations

from aiohttp import web

from .params import float_match
from .state import state_of


def is_control(path: str) -> bool:
    """True for the paths of this module's routes, which the request log leaves out."""
    return path in ("/requests", "/file-bytes") or path.startswith(("/pace/", "/file-version/"))


async def set_pace(request: web.Request) -> web.Response:
    factor = float_match(request, "factor")
    state_of(request).pace = factor
    return web.json_response({"pace": factor})


async def get_requests(request: web.Request) -> web.Response:
    return web.json_response(state_of(request).requests())


async def delete_requests(request: web.Request) -> web.Response:
    state_of(request).clear()
    return web.json_response({"cleared": True})
