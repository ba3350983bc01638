"""Loopback HTTP test server for fetchshard's tests and benchmarks.

Two ways to use it:

* In-process, inside the test's own event loop::

      async with running_server(hosts=2) as srv:
          url = srv.url("/ok/a", host=1)
          ...
          assert srv.requests()[0]["path"] == "/ok/a"

* As a separate process (so that the code under test can own its event loop, or run
  as CLI subprocesses)::

      with ServerProcess(hosts=4) as srv:
          subprocess.run(["fetchshard", ..., srv.url("/ok/x", host=3)])
          print(srv.requests())

  or from a shell: ``python tests/server.py --hosts 4 --log requests.jsonl``.  The
  first stdout line is ``{"ports": [...], "base_urls": [...]}``; every request is
  appended as one JSON line to the ``--log`` file (flushed per line).

Every listener is a distinct "host" (a distinct ``ip:port`` origin), which lets tests
exercise per-host limits.  ``address_mode="ports"`` opens N listeners on 127.0.0.1
with ephemeral ports; ``address_mode="addresses"`` opens N listeners on
127.0.0.2 .. 127.0.0.(N+1) sharing one port (Linux routes all of 127/8 to loopback)
and falls back to "ports" where those addresses cannot be bound.

Routes (all GET unless noted):

=====================================  ==============================================
``/ok/{name}?size=N``                  200 ``ok {name}`` padded with ``.`` to N bytes
``/image/{n}?w=W&h=H``                 200 small deterministic JPEG, colour varies by n
``/status/{code}``                     that status, short body
``/flaky/{key}/{fails}?code=503``      ``code`` for the first ``fails`` hits per key,
                                       then 200 ``ok``
``/retry-after/{key}/{seconds}``       first hit per key: 429 + ``Retry-After``;
                                       then 200 ``ok`` (``?code=`` overrides 429)
``/slow/{seconds}``                    sleeps, then 200 ``slow``
``/paced/{seconds}``                   sleeps ``seconds`` x ``ServerState.pace``, then
                                       200 ``paced``
``/pace/{factor}`` (PUT)               sets ``ServerState.pace`` (1 at start; not logged):
                                       0 makes every later ``/paced`` answer at once
``/trickle?chunks=N&delay=S``          N chunks, S seconds apart, chunked encoding
``/endless``                           a chunk every 50 ms until the client leaves
``/big/{n}``                           n bytes with Content-Length
``/big-nolength/{n}``                  n bytes, chunked, no Content-Length
``/redirect/{n}``                      302 to /redirect/{n-1}; /redirect/0 -> /ok/final
``/redirect-loop``                     302 to itself
``/reset``                             promises more bytes than it sends, then closes
``/echo-headers``                      JSON object of the request headers
``/optout/{directive}``                200 with ``X-Robots-Tag: {directive}``
                                       (URL-decoded, e.g. ``otherbot%3A%20noai``)
``/gzip-bomb/{mb}``                    200 ``Content-Encoding: gzip``: ``mb`` MiB of
                                       zeros compressed ~1000:1 (built once, cached)
``/wrong-length/{declared}/{actual}``  ``Content-Length: declared``; sends
                                       min(actual, declared) bytes; closes early if
                                       actual < declared
``/slow-first-byte/{seconds}``         alias of ``/slow``: no headers before the sleep
``/status-retry-after/{code}/{value}`` that status + ``Retry-After: {value}`` verbatim
                                       (URL-decoded; may be an HTTP-date), every time
``/redirect-to?url=U&code=302``        ``code`` with ``Location: U`` verbatim
``/robots.txt``                        ``ServerState.robots_txt`` (None -> 404)
``/private/{name}``                    200 ``secret`` (disallowed by default robots)
``/requests`` (GET / DELETE)           JSON request log / clear it (not itself logged)
=====================================  ==============================================

Raw TCP helpers: :class:`ResetServer` (accepts and immediately resets every
connection) and :func:`closed_port` (a loopback port with nothing listening).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import io
import json
import os
import queue
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from aiohttp import web

__all__ = [
    "DEFAULT_ROBOTS_TXT",
    "SERVER_SCRIPT",
    "STATE_KEY",
    "AddressMode",
    "ResetServer",
    "RunningServer",
    "ServerProcess",
    "ServerState",
    "closed_port",
    "gzip_zeros",
    "main",
    "make_app",
    "running_server",
    "serve",
]

AddressMode = Literal["ports", "addresses"]

SERVER_SCRIPT = Path(__file__).resolve()
LOOPBACK = "127.0.0.1"
ENDLESS_INTERVAL = 0.05
CHUNK = 64 * 1024
_PATTERN = (bytes(range(256)) * (CHUNK // 256))[:CHUNK]
_SLEEP_STEP = 0.05
MIB = 1024 * 1024
GZIP_BOMB_MAX_MB = 4096
DEFAULT_ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"
_PROXY_VARS = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


# --------------------------------------------------------------------------- state


@dataclass
class ServerState:
    """Mutable state shared by all listeners of one server.

    ``log`` holds one dict per request (except ``/requests``) with keys ``t``
    (``time.monotonic()``), ``wall`` (``time.time()``), ``method``, ``host`` (Host
    header), ``addr``/``port`` (local socket the request arrived on), ``host_index``
    (index of that listener in ``base_urls``), ``path`` (path + query) and ``ua``.
    """

    log: list[dict[str, Any]] = field(default_factory=list)
    flaky_counts: dict[str, int] = field(default_factory=dict)
    retry_after_seen: set[str] = field(default_factory=set)
    #: unexpected exceptions raised by handlers (should stay empty)
    errors: list[str] = field(default_factory=list)
    #: handlers currently running (streaming handlers count until they finish)
    in_flight: int = 0
    endless_started: int = 0
    #: /endless handlers that noticed the client disconnect and returned normally
    endless_stopped: int = 0
    #: (address, port) of each listener, in host-index order
    listeners: list[tuple[str, int]] = field(default_factory=list)
    #: when set, each log entry is also written there as a JSON line (flushed)
    log_file: IO[str] | None = None
    #: keep the log in memory (disable for very long benchmarks using log_file)
    keep_log: bool = True
    #: set on shutdown so that long-running handlers return promptly
    stopping: bool = False
    #: body of ``/robots.txt``; None -> 404
    robots_txt: str | None = DEFAULT_ROBOTS_TXT
    #: multiplies the sleep of ``/paced``: a test makes a slow input fast halfway through
    pace: float = 1.0

    def record(self, entry: dict[str, Any]) -> None:
        if self.keep_log:
            self.log.append(entry)
        if self.log_file is not None:
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()

    def requests(self) -> list[dict[str, Any]]:
        return list(self.log)

    def clear(self) -> None:
        self.log.clear()
        if self.log_file is not None:
            self.log_file.seek(0)
            self.log_file.truncate(0)
            self.log_file.flush()

    def host_index(self, addr: str, port: int) -> int | None:
        try:
            return self.listeners.index((addr, port))
        except ValueError:
            return None


STATE_KEY = web.AppKey("fetchshard_test_state", ServerState)


def _state(request: web.Request) -> ServerState:
    return request.app[STATE_KEY]


# ------------------------------------------------------------------------ helpers


def _int_param(request: web.Request, name: str, default: int, lo: int = 0) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}") from None
    if value < lo:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}")
    return value


def _float_param(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}")
    return value


def _int_match(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}") from None


def _float_match(request: web.Request, name: str) -> float:
    raw = request.match_info[name]
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}")
    return value


def _status_param(request: web.Request, default: int) -> int:
    code = _int_param(request, "code", default)
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"bad code: {code}")
    return code


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _header_value(raw: str, name: str) -> str:
    """``raw`` as a header value; 400 (not a handler error) if it cannot be one."""
    if not raw or any(c in raw for c in "\r\n\0"):
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}")
    return raw


async def _write(request: web.Request, resp: web.StreamResponse, data: bytes | memoryview) -> bool:
    """Write ``data``; return False (instead of raising) if the client went away."""
    if _client_gone(request):
        return False
    try:
        await resp.write(data)
    except ConnectionResetError:  # includes aiohttp.ClientConnectionResetError
        return False
    return True


async def _sleep(state: ServerState, seconds: float) -> bool:
    """Sleep in small steps; return False early if the server is shutting down."""
    deadline = time.monotonic() + seconds
    while not state.stopping:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        await asyncio.sleep(min(remaining, _SLEEP_STEP))
    return False


def _pattern_chunks(n: int, chunk: int = CHUNK) -> list[int]:
    sizes = [chunk] * (n // chunk)
    if n % chunk:
        sizes.append(n % chunk)
    return sizes


@functools.lru_cache(maxsize=256)
def jpeg_bytes(n: int, width: int = 32, height: int = 32) -> bytes:
    """Deterministic small JPEG whose colour depends on ``n`` (cached)."""
    from PIL import Image

    colour = ((n * 67) % 256, (n * 131 + 40) % 256, (n * 199 + 80) % 256)
    img = Image.new("RGB", (width, height), colour)
    # a diagonal stripe so that the image is not a single flat block
    for i in range(min(width, height)):
        img.putpixel((i, i), (255 - colour[0], 255 - colour[1], 255 - colour[2]))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


_gzip_cache: dict[int, bytes] = {}
_gzip_lock = threading.Lock()


def gzip_zeros(mb: int) -> bytes:
    """gzip (one member) of ``mb`` MiB of zero bytes, cached per ``mb``.

    Built incrementally with ``zlib.compressobj`` (Z_RLE: ~1:1000, ~2 s per GiB), so
    memory stays at ~1 MiB of input plus the compressed output.  Thread-safe; the
    server calls it in the default executor so the event loop keeps running.
    """
    if mb < 0:
        raise ValueError("mb must be >= 0")
    with _gzip_lock:
        cached = _gzip_cache.get(mb)
        if cached is None:
            comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9, zlib.Z_RLE)
            zeros = bytes(MIB)
            parts = [comp.compress(zeros) for _ in range(mb)]
            parts.append(comp.flush())
            cached = _gzip_cache[mb] = b"".join(parts)
    return cached


# ----------------------------------------------------------------------- handlers


async def ok(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    size = _int_param(request, "size", 0)
    body = f"ok {name}".encode()
    if size > len(body):
        body += b"." * (size - len(body))
    return web.Response(body=body, content_type="text/plain")


async def image(request: web.Request) -> web.Response:
    n = _int_match(request, "n")
    width = _int_param(request, "w", 32, lo=1)
    height = _int_param(request, "h", 32, lo=1)
    if width > 4096 or height > 4096:
        raise web.HTTPBadRequest(text="image too large")
    return web.Response(body=jpeg_bytes(n, width, height), content_type="image/jpeg")


async def status(request: web.Request) -> web.Response:
    code = _int_match(request, "code")
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"bad status code: {code}")
    if code in (204, 304):
        return web.Response(status=code)
    return web.Response(status=code, text=f"status {code}")


async def flaky(request: web.Request) -> web.Response:
    state = _state(request)
    key = request.match_info["key"]
    fails = _int_match(request, "fails")
    code = _status_param(request, 503)
    count = state.flaky_counts.get(key, 0) + 1
    state.flaky_counts[key] = count
    if count <= fails:
        return web.Response(status=code, text=f"flaky {key} attempt {count}")
    return web.Response(text="ok")


async def retry_after(request: web.Request) -> web.Response:
    state = _state(request)
    key = request.match_info["key"]
    seconds = request.match_info["seconds"]
    code = _status_param(request, 429)
    if key not in state.retry_after_seen:
        state.retry_after_seen.add(key)
        return web.Response(
            status=code, text=f"retry after {seconds}", headers={"Retry-After": seconds}
        )
    return web.Response(text="ok")


async def slow(request: web.Request) -> web.Response:
    seconds = _float_match(request, "seconds")
    await _sleep(_state(request), seconds)
    return web.Response(text="slow")


async def paced(request: web.Request) -> web.Response:
    state = _state(request)
    await _sleep(state, _float_match(request, "seconds") * state.pace)
    return web.Response(text="paced")


async def set_pace(request: web.Request) -> web.Response:
    factor = _float_match(request, "factor")
    _state(request).pace = factor
    return web.json_response({"pace": factor})


async def trickle(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    chunks = _int_param(request, "chunks", 5)
    delay = _float_param(request, "delay", 0.05)
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for i in range(chunks):
        if i and not await _sleep(state, delay):
            break
        if not await _write(request, resp, f"chunk {i}\n".encode()):
            return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def endless(request: web.Request) -> web.StreamResponse:
    state = _state(request)
    state.endless_started += 1
    resp = web.StreamResponse()
    resp.content_type = "text/plain"
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    i = 0
    while not state.stopping:
        if not await _write(request, resp, f"tick {i}\n".encode()):
            state.endless_stopped += 1
            return resp
        i += 1
        await asyncio.sleep(ENDLESS_INTERVAL)
    return resp


async def _send_pattern(request: web.Request, n: int, *, with_length: bool) -> web.StreamResponse:
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    if with_length:
        resp.content_length = n
    else:
        resp.enable_chunked_encoding()
    await resp.prepare(request)
    for size in _pattern_chunks(n):
        if not await _write(request, resp, _PATTERN[:size]):
            return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def big(request: web.Request) -> web.StreamResponse:
    n = _int_match(request, "n")
    if n < 0:
        raise web.HTTPBadRequest(text="negative size")
    return await _send_pattern(request, n, with_length=True)


async def big_nolength(request: web.Request) -> web.StreamResponse:
    n = _int_match(request, "n")
    if n < 0:
        raise web.HTTPBadRequest(text="negative size")
    return await _send_pattern(request, n, with_length=False)


async def redirect(request: web.Request) -> web.Response:
    n = _int_match(request, "n")
    location = f"/redirect/{n - 1}" if n > 0 else "/ok/final"
    raise web.HTTPFound(location)


async def redirect_loop(request: web.Request) -> web.Response:
    raise web.HTTPFound("/redirect-loop")


async def reset(request: web.Request) -> web.StreamResponse:
    """Announce 1000 bytes, send 100, close the connection."""
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    resp.content_length = 1000
    await resp.prepare(request)
    await _write(request, resp, b"x" * 100)
    transport = request.transport
    if transport is not None:
        transport.close()  # flushes the 100 bytes, then FIN: body is incomplete
    return resp


async def optout(request: web.Request) -> web.Response:
    directive = _header_value(request.match_info["directive"], "directive")
    return web.Response(
        text=f"opt-out {directive}\n",
        content_type="text/plain",
        headers={"X-Robots-Tag": directive},
    )


async def gzip_bomb(request: web.Request) -> web.StreamResponse:
    mb = _int_match(request, "mb")
    if not 0 <= mb <= GZIP_BOMB_MAX_MB:
        raise web.HTTPBadRequest(text=f"mb must be in 0..{GZIP_BOMB_MAX_MB}")
    body = _gzip_cache.get(mb)
    if body is None:
        body = await asyncio.get_running_loop().run_in_executor(None, gzip_zeros, mb)
    resp = web.StreamResponse(headers={"Content-Encoding": "gzip"})
    resp.content_type = "application/octet-stream"
    resp.content_length = len(body)
    await resp.prepare(request)
    view = memoryview(body)
    for offset in range(0, len(body), CHUNK):
        if not await _write(request, resp, view[offset : offset + CHUNK]):
            return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def wrong_length(request: web.Request) -> web.StreamResponse:
    """``Content-Length: declared``; send min(actual, declared) bytes.

    actual < declared: the connection is closed after the short body (the client
    sees a payload error).  actual >= declared: a normal, complete response.
    """
    declared = _int_match(request, "declared")
    actual = _int_match(request, "actual")
    if declared < 0 or actual < 0:
        raise web.HTTPBadRequest(text="negative length")
    resp = web.StreamResponse()
    resp.content_type = "application/octet-stream"
    resp.content_length = declared
    await resp.prepare(request)
    sent = min(declared, actual)
    # aiohttp holds the headers back until the first body write: force them out
    if not await _write(request, resp, b""):
        return resp
    for size in _pattern_chunks(sent):
        if not await _write(request, resp, _PATTERN[:size]):
            return resp
    if actual < declared:
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then FIN: body incomplete
        return resp
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp


async def status_retry_after(request: web.Request) -> web.Response:
    code = _int_match(request, "code")
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"bad status code: {code}")
    headers = {"Retry-After": _header_value(request.match_info["value"], "value")}
    if code in (204, 304):
        return web.Response(status=code, headers=headers)
    return web.Response(status=code, text=f"status {code}", headers=headers)


_REDIRECT_CODES = (301, 302, 303, 307, 308)


async def redirect_to(request: web.Request) -> web.Response:
    url = _header_value(request.query.get("url", ""), "url")
    code = _int_param(request, "code", 302)
    if code not in _REDIRECT_CODES:
        raise web.HTTPBadRequest(text=f"bad redirect code: {code}")
    # not web.HTTPFound: that would normalise the URL through yarl
    return web.Response(status=code, text=f"redirect to {url}", headers={"Location": url})


async def robots_txt(request: web.Request) -> web.Response:
    text = _state(request).robots_txt
    if text is None:
        raise web.HTTPNotFound(text="no robots.txt")
    return web.Response(text=text, content_type="text/plain")


async def private(request: web.Request) -> web.Response:
    return web.Response(text="secret", content_type="text/plain")


async def echo_headers(request: web.Request) -> web.Response:
    return web.json_response(dict(request.headers))


async def get_requests(request: web.Request) -> web.Response:
    return web.json_response(_state(request).requests())


async def delete_requests(request: web.Request) -> web.Response:
    _state(request).clear()
    return web.json_response({"cleared": True})


@web.middleware
async def _log_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = _state(request)
    if request.path != "/requests" and not request.path.startswith("/pace/"):
        addr, port = "", 0
        transport = request.transport
        if transport is not None:
            sockname = transport.get_extra_info("sockname")
            if sockname:
                addr, port = sockname[0], sockname[1]
        state.record(
            {
                "t": time.monotonic(),
                "wall": time.time(),
                "method": request.method,
                "host": request.host,
                "addr": addr,
                "port": port,
                "host_index": state.host_index(addr, port),
                "path": request.path_qs,
                "ua": request.headers.get("User-Agent"),
            }
        )
    state.in_flight += 1
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        state.errors.append(f"{request.path_qs}: {exc!r}")
        raise
    finally:
        state.in_flight -= 1


def make_app(state: ServerState | None = None) -> web.Application:
    """Build the test application; all listeners of one server share ``state``."""
    app = web.Application(middlewares=[_log_middleware])
    app[STATE_KEY] = state if state is not None else ServerState()

    async def _on_shutdown(app: web.Application) -> None:
        app[STATE_KEY].stopping = True

    app.on_shutdown.append(_on_shutdown)
    app.add_routes(
        [
            web.get("/ok/{name}", ok),
            web.get("/image/{n}", image),
            web.get("/status/{code}", status),
            web.get("/flaky/{key}/{fails}", flaky),
            web.get("/retry-after/{key}/{seconds}", retry_after),
            web.get("/slow/{seconds}", slow),
            # /slow already sleeps before the headers are sent
            web.get("/slow-first-byte/{seconds}", slow),
            web.get("/paced/{seconds}", paced),
            web.put("/pace/{factor}", set_pace),
            web.get("/trickle", trickle),
            web.get("/endless", endless),
            web.get("/big/{n}", big),
            web.get("/big-nolength/{n}", big_nolength),
            web.get("/redirect/{n}", redirect),
            web.get("/redirect-loop", redirect_loop),
            web.get("/reset", reset),
            web.get("/echo-headers", echo_headers),
            web.get("/optout/{directive:.+}", optout),
            web.get("/gzip-bomb/{mb}", gzip_bomb),
            web.get("/wrong-length/{declared}/{actual}", wrong_length),
            web.get("/status-retry-after/{code}/{value:.+}", status_retry_after),
            web.get("/redirect-to", redirect_to),
            web.get("/robots.txt", robots_txt),
            web.get("/private/{name:.+}", private),
            web.get("/requests", get_requests),
            web.delete("/requests", delete_requests),
        ]
    )
    return app


# ------------------------------------------------------------------------ serving


def _site_port(site: web.TCPSite) -> int:
    server = getattr(site, "_server", None)
    sockets = getattr(server, "sockets", None)
    if not sockets:
        raise RuntimeError(f"site {site.name} has no bound socket")
    return int(sockets[0].getsockname()[1])


class RunningServer:
    """Handle to listeners started by :func:`serve` in the current event loop."""

    def __init__(
        self,
        runner: web.AppRunner,
        state: ServerState,
        listeners: list[tuple[str, int]],
        address_mode: AddressMode,
    ) -> None:
        self.runner = runner
        self.state = state
        self.listeners = listeners
        self.address_mode: AddressMode = address_mode
        self.ports = [port for _, port in listeners]
        self.base_urls = [f"http://{addr}:{port}" for addr, port in listeners]

    def url(self, path: str, host: int = 0) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_urls[host] + path

    def requests(self) -> list[dict[str, Any]]:
        return self.state.requests()

    def clear_requests(self) -> None:
        self.state.clear()

    async def close(self) -> None:
        self.state.stopping = True
        await self.runner.cleanup()


async def _start_sites(
    runner: web.AppRunner, addrs: list[str], ports: list[int]
) -> list[tuple[str, int]]:
    """Start one TCPSite per (addr, port); a port of -1 means "the first bound port"."""
    started: list[web.TCPSite] = []
    listeners: list[tuple[str, int]] = []
    try:
        for addr, want in zip(addrs, ports, strict=True):
            port = listeners[0][1] if want == -1 else want
            site = web.TCPSite(runner, addr, port)
            await site.start()
            started.append(site)
            listeners.append((addr, _site_port(site)))
    except BaseException:
        for site in started:
            with contextlib.suppress(Exception):
                await site.stop()
        raise
    return listeners


async def serve(
    hosts: int = 1,
    address_mode: AddressMode = "ports",
    *,
    state: ServerState | None = None,
    port_base: int = 0,
    shutdown_timeout: float = 1.0,
) -> RunningServer:
    """Start ``hosts`` listeners of one app in the running loop; call ``.close()`` after.

    "ports": 127.0.0.1 on ephemeral ports (or ``port_base + i``).
    "addresses": 127.0.0.2 .. 127.0.0.(hosts+1) on one shared port (ephemeral or
    ``port_base``); falls back to "ports" if those addresses cannot be bound.
    """
    if hosts < 1:
        raise ValueError("hosts must be >= 1")
    if address_mode not in ("ports", "addresses"):
        raise ValueError(f"unknown address_mode {address_mode!r}")
    state = state if state is not None else ServerState()
    app = make_app(state)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        listeners: list[tuple[str, int]] | None = None
        mode: AddressMode = address_mode
        if address_mode == "addresses" and hosts <= 253:
            addrs = [f"127.0.0.{i + 2}" for i in range(hosts)]
            ports = [port_base] + [port_base if port_base else -1] * (hosts - 1)
            for _attempt in range(1 if port_base else 5):
                try:
                    listeners = await _start_sites(runner, addrs, ports)
                    break
                except OSError:
                    continue
        if listeners is None:
            mode = "ports"
            ports = [port_base + i if port_base else 0 for i in range(hosts)]
            listeners = await _start_sites(runner, [LOOPBACK] * hosts, ports)
    except BaseException:
        await runner.cleanup()
        raise
    state.listeners = listeners
    state.stopping = False
    return RunningServer(runner, state, listeners, mode)


@contextlib.asynccontextmanager
async def running_server(
    hosts: int = 1,
    address_mode: AddressMode = "ports",
    *,
    state: ServerState | None = None,
    port_base: int = 0,
) -> AsyncIterator[RunningServer]:
    """``async with running_server(hosts=2) as srv:`` -- listeners in the current loop."""
    srv = await serve(hosts, address_mode, state=state, port_base=port_base)
    try:
        yield srv
    finally:
        await srv.close()


# ------------------------------------------------------------- subprocess mode


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerProcess:
    """Run ``tests/server.py`` in a subprocess (its own event loop and process).

    Use as a context manager.  ``requests()`` parses the JSON-lines log file, so it
    can be called while the server is running.  On exit the subprocess is
    terminated by PID (``terminate()``, wait 5 s, then ``kill()``).  ``robots_txt``
    is the body of ``/robots.txt`` in the subprocess (None -> 404).
    """

    def __init__(
        self,
        hosts: int = 1,
        log_path: str | os.PathLike[str] | None = None,
        *,
        address_mode: AddressMode = "ports",
        port_base: int = 0,
        startup_timeout: float = 10.0,
        robots_txt: str | None = DEFAULT_ROBOTS_TXT,
    ) -> None:
        self.hosts = hosts
        self.robots_txt = robots_txt
        self.address_mode = address_mode
        self.port_base = port_base
        self.startup_timeout = startup_timeout
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="fetchshard-server-")
            log_path = Path(self._tmpdir.name) / "requests.jsonl"
        self.log_path = Path(log_path)
        self.stderr_path = self.log_path.with_name(self.log_path.name + ".stderr")
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self.ports: list[int] = []
        self.base_urls: list[str] = []

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> ServerProcess:
        if self.proc is not None:
            raise RuntimeError("already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        cmd = [
            sys.executable,
            str(SERVER_SCRIPT),
            "--hosts",
            str(self.hosts),
            "--port-base",
            str(self.port_base),
            "--address-mode",
            self.address_mode,
            "--log",
            str(self.log_path),
            "--exit-on-stdin-eof",
        ]
        if self.robots_txt is None:
            cmd.append("--no-robots-txt")
        elif self.robots_txt != DEFAULT_ROBOTS_TXT:
            cmd += ["--robots-txt", self.robots_txt]
        env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
        )
        try:
            info = self._read_startup_line()
        except BaseException:
            self.stop()
            raise
        self.ports = [int(p) for p in info["ports"]]
        self.base_urls = [str(u) for u in info["base_urls"]]
        return self

    def _read_startup_line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            raise RuntimeError(
                f"test server did not start within {self.startup_timeout}s: {self.stderr_text()!r}"
            ) from None
        if not line.strip():
            raise RuntimeError(
                f"test server exited (rc={self.proc.poll()}): {self.stderr_text()!r}"
            )
        info: dict[str, Any] = json.loads(line)
        return info

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # by PID
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- queries -------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def url(self, path: str, host: int = 0) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_urls[host] + path

    def requests(self) -> list[dict[str, Any]]:
        """Parse the log file (only complete lines, so safe while it is written)."""
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for line in text.splitlines(keepends=True):
            if line.endswith("\n") and line.strip():
                out.append(json.loads(line))
        return out

    def clear_requests(self) -> None:
        """Clear the server's log (memory and file) via ``DELETE /requests``."""
        self._send("DELETE", "/requests")

    def set_pace(self, factor: float) -> None:
        """Scale the sleep of every later ``/paced`` request (``PUT /pace/{factor}``)."""
        self._send("PUT", f"/pace/{factor}")

    def _send(self, method: str, path: str) -> None:
        req = urllib.request.Request(self.url(path), method=method)
        with _no_proxy_opener().open(req, timeout=10) as resp:
            resp.read()

    def stderr_text(self) -> str:
        if self._stderr is not None:
            self._stderr.flush()
        try:
            return self.stderr_path.read_text()
        except FileNotFoundError:
            return ""


# ------------------------------------------------------------- raw TCP helpers


def closed_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` with nothing listening (connecting to it is refused).

    Binds port 0, reads the port and closes the socket; the kernel does not hand
    the same ephemeral port out again right away.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_LINGER_RESET = struct.pack("ii", 1, 0)


class ResetServer:
    """A "host" that accepts every TCP connection and resets it immediately.

    Thread-based (stdlib sockets only), so it works from sync and async tests alike::

        with ResetServer() as rs:
            ...fetch rs.url("/x")...  # ClientOSError / ServerDisconnectedError
            assert rs.connections == 1

    Each accepted connection is closed with ``SO_LINGER {1, 0}``, which sends an RST
    instead of a FIN.  ``connections`` counts accepted connections (thread-safe).
    """

    def __init__(self, host: str = LOOPBACK, *, poll_interval: float = 0.05) -> None:
        self.host = host
        self.port = 0
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._connections = 0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def running(self) -> bool:
        """True while the accept thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path

    def start(self) -> ResetServer:
        if self._sock is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, 0))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name=f"ResetServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self, sock: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not sel.select(self.poll_interval):
                    continue
                while True:  # drain the backlog
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # e.g. ECONNABORTED: the client already left
                        continue
                    with self._lock:
                        self._connections += 1
                    with contextlib.suppress(OSError):
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                    conn.close()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ResetServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ------------------------------------------------------------------------- CLI


async def _amain(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    log_file: IO[str] | None = None
    if args.log:
        log_file = open(args.log, "a", encoding="utf-8")  # noqa: SIM115 - closed below
    state = ServerState(
        log_file=log_file,
        keep_log=not args.no_memory_log,
        robots_txt=None if args.no_robots_txt else args.robots_txt,
    )
    srv = await serve(args.hosts, args.address_mode, state=state, port_base=args.port_base)
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
        sys.stdout.write(json.dumps({"ports": srv.ports, "base_urls": srv.base_urls}) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await srv.close()
        if log_file is not None:
            log_file.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="fetchshard loopback test HTTP server")
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
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin is closed (used by ServerProcess so orphans do not linger)",
    )
    args = parser.parse_args(argv)
    if args.hosts < 1:
        parser.error("--hosts must be >= 1")
    asyncio.run(_amain(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
