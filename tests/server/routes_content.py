"""Routes that answer with well-formed content: ok, image, big, gzip-bomb, headers, robots;
``/as/{what}?ct=TYPE``: a body of one kind under any Content-Type (content checks); the
image corpus (``/corpus/{name}``) and large photos (``/large/{n}``) for the images stage."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from . import images
from .bodies import CHUNK, PATTERN, cached_gzip_zeros, gzip_zeros, jpeg_bytes, pattern_chunks
from .params import header_value, int_match, int_param
from .state import state_of
from .streaming import write_unless_gone

GZIP_BOMB_MAX_MB = 4096


async def ok(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    size = int_param(request, "size", 0)
    body = f"ok {name}".encode()
    if size > len(body):
        body += b"." * (size - len(body))
    return web.Response(body=body, content_type="text/plain")


_BODIES = {
    "html": b"<!DOCTYPE html><html><head><title>Not Found</title></head><body>gone</body></html>",
    "pdf": b"%PDF-1.4\n%fake\n",
    "empty": b"",
    "text": b"Access denied\n",
}


async def served_as(request: web.Request) -> web.Response:
    """``/as/html|pdf|empty|text|jpeg?ct=image/jpeg``: that body, declared as ``ct``."""
    what = request.match_info["what"]
    body = jpeg_bytes(1, 16, 16) if what == "jpeg" else _BODIES.get(what)
    if body is None:
        raise web.HTTPNotFound(text=f"no body {what!r}")
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = request.query.get("ct", "image/jpeg")
    return resp


async def corpus(request: web.Request) -> web.Response:
    """``/corpus/{name}``: a file of the image corpus (images.py), typed by its extension."""
    name = request.match_info["name"]
    try:
        body = images.corpus_bytes(name)
    except KeyError:
        raise web.HTTPNotFound(text=f"no corpus file {name!r}") from None
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = images.content_type(name)
    return resp


async def large(request: web.Request) -> web.Response:
    """``/large/{n}?px=N``: a large noisy JPEG (N x N, default 3000; n only varies the URL)."""
    px = int_param(request, "px", 3000, lo=64)
    if px > 8000:
        raise web.HTTPBadRequest(text="image too large")
    body = await asyncio.get_running_loop().run_in_executor(None, images.large_jpeg, px)
    return web.Response(body=body, content_type="image/jpeg")


async def image(request: web.Request) -> web.Response:
    n = int_match(request, "n")
    width = int_param(request, "w", 32, lo=1)
    height = int_param(request, "h", 32, lo=1)
    if width > 4096 or height > 4096:
        raise web.HTTPBadRequest(text="image too large")
    return web.Response(body=jpeg_bytes(n, width, height), content_type="image/jpeg")


async def _send_pattern(request: web.Request, n: int, *, with_length: bool) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    if with_length:
        resp.content_length = n
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    for size in pattern_chunks(n):
        if not await write_unless_gone(request, resp, PATTERN[:size]):
            return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def big(request: web.Request) -> web.StreamResponse:
    n = int_match(request, "n")
    if n < 0:
        raise web.HTTPBadRequest(text="negative size")
    return await _send_pattern(request, n, with_length=True)


async def big_nolength(request: web.Request) -> web.StreamResponse:
    n = int_match(request, "n")
    if n < 0:
        raise web.HTTPBadRequest(text="negative size")
    return await _send_pattern(request, n, with_length=False)


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    mb = int_match(request, "mb")
    if not 0 <= mb <= GZIP_BOMB_MAX_MB:
        raise web.HTTPBadRequest(text=f"mb must be in 0..{GZIP_BOMB_MAX_MB}")
    body = cached_gzip_zeros(mb)
    if body is None:
        body = await asyncio.get_running_loop().run_in_executor(None, gzip_zeros, mb)
    resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})
    resp.content_type = "application/octet-stream"
    resp.content_length = len(body)
    await resp.prepare(request)
    view = memoryview(body)
    for offset in range(0, len(body), CHUNK):
        if not await write_unless_gone(request, resp, view[offset : offset + CHUNK]):
            return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def echo_headers(request: web.Request) -> web.Response:
    return web.json_response(dict(request.headers))


async def optout(request: web.Request) -> web.Response:
    directive = header_value(request.match_info["directive"], "directive")
    return web.Response(
        text=f"opt-out {directive}\n",
        content_type="text/plain",
        headers={"X-Robots-Tag": directive},
    )


async def robots_txt(request: web.Request) -> web.Response:
    text = state_of(request).robots_txt
    if text is None:
        raise web.HTTPNotFound(text="no robots.txt")
    return web.Response(text=text, content_type="text/plain")


async def private(request: web.Request) -> web.Response:
    return web.Response(text="secret", content_type="text/plain")
