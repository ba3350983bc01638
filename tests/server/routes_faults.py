"""Routes that misbehave on purpose: error statuses, delays, broken bodies, redirects."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from .bodies import PATTERN, jpeg_bytes, pattern_chunks
from .params import float_match, float_param, header_value, int_match, int_param, status_param
from .state import state_of
from .streaming import sleep_unless_stopping, write_unless_gone

ENDLESS_INTERVAL = 0.05
_REDIRECT_CODES = (301, 302, 303, 307, 308)

# ------------------------------------------------------------------ statuses


async def status(request: web.Request) -> web.Response:
    code = int_match(request, "code")
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"bad status code: {code}")
    if code in (204, 304):
        return web.Response(status=code)
    return web.Response(status=code, text=f"status {code}")


async def flaky(request: web.Request) -> web.Response:
    state = state_of(request)
    key = request.match_info["key"]
    fails = int_match(request, "fails")
    code = status_param(request, 503)
    count = state.flaky_counts.get(key, 0) + 1
    state.flaky_counts[key] = count
    if count <= fails:
        return web.Response(status=code, text=f"flaky {key} attempt {count}")
    if "image" in request.query:  # then the JPEG of /image/{n}, n the parameter's value
        n = int_param(request, "image", 0)
        return web.Response(body=jpeg_bytes(n, 32, 32), content_type="image/jpeg")
    return web.Response(text="ok")


async def retry_after(request: web.Request) -> web.Response:
    state = state_of(request)
    key = request.match_info["key"]
    seconds = request.match_info["seconds"]
    code = status_param(request, 429)
    if key not in state.retry_after_seen:
        state.retry_after_seen.add(key)
        return web.Response(
            status=code, text=f"retry after {seconds}", headers={"Retry-After": seconds}
        )
    return web.Response(text="ok")


async def status_retry_after(request: web.Request) -> web.Response:
    code = int_match(request, "code")
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"bad status code: {code}")
    headers = {"Retry-After": header_value(request.match_info["value"], "value")}
    if code in (204, 304):
        return web.Response(status=code, headers=headers)
    return web.Response(status=code, text=f"status {code}", headers=headers)


# -------------------------------------------------------------------- delays


async def slow(request: web.Request) -> web.Response:
    seconds = float_match(request, "seconds")
    await sleep_unless_stopping(state_of(request), seconds)
    return web.Response(text="slow")


async def paced(request: web.Request) -> web.Response:
    state = state_of(request)
    await sleep_unless_stopping(state, float_match(request, "seconds") * state.pace)
    return web.Response(text="paced")


async def trickle(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    chunks = int_param(request, "chunks", 5)
    delay = float_param(request, "delay", 0.05)
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(chunks):
        if i and not await sleep_unless_stopping(state, delay):
            break
        if not await write_unless_gone(request, resp, f"chunk {i}\n".encode()):
            return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def endless(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    state.endless_started += 1
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    i = 0
    while not state.stopping:
        if not await write_unless_gone(request, resp, f"tick {i}\n".encode()):
            state.endless_stopped += 1
            return resp
        i += 1
        await asyncio.sleep(ENDLESS_INTERVAL)
    return resp


# ------------------------------------------------------------- broken bodies


async def reset(request: web.Request) -> web.StreamResponse:
    """Announce 1000 bytes, send 100, close the connection."""
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    resp.content_length = 1000
    await resp.prepare(request)
    await write_unless_gone(request, resp, b"x" * 100)
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes the 100 bytes, then FIN: body is incomplete
    return resp


async def wrong_length(request: web.Request) -> web.StreamResponse:
    """``Content-Length: declared``; send min(actual, declared) bytes.

    actual < declared: the connection is closed after the short body (the client
    sees a payload error).  actual >= declared: a normal, complete response.
    """
    declared = int_match(request, "declared")
    actual = int_match(request, "actual")
    if declared < 0 or actual < 0:
        raise web.HTTPBadRequest(text="negative length")
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    resp.content_length = declared
    await resp.prepare(request)
    sent = min(declared, actual)
    # aiohttp holds the headers back until the first body write: force them out
    if not await write_unless_gone(request, resp, b""):
        return resp
    for size in pattern_chunks(sent):
        if not await write_unless_gone(request, resp, PATTERN[:size]):
            return resp
    if actual < declared:
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then FIN: body incomplete
        return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


# ----------------------------------------------------------------- redirects


async def redirect(request: web.Request) -> web.Response:
    n = int_match(request, "n")
    location = f"/redirect/{n - 1}" if n > 0 else "/ok/final"
    raise web.HTTPFound(location)


async def redirect_loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/redirect-loop")


async def redirect_to(request: web.Request) -> web.Response:
    url = header_value(request.query.get("url", ""), "url")
    code = int_param(request, "code", 302)
    if code not in _REDIRECT_CODES:
        raise web.HTTPBadRequest(text=f"bad redirect code: {code}")
    # not web.HTTPFound: that would normalise the URL through yarl
    return web.Response(status=code, text=f"redirect to {url}", headers={"Location": url})
