"""The fake Hub's CDN (``GET /blob/{sha256}?...&expires=E&sig=S``) and the body sender it shares.

The CDN checks the signature and expiry of the query the Hub signed (403 with an S3-like XML
body otherwise), serves the LFS file's bytes with ``Range`` (206 + ``Content-Range``; 416 past
the end) and by default sends no ``ETag`` and no ``Last-Modified``, like the Xet bridge.  The
switches of :class:`~server.hub_state.HubSwitches` make it cut, corrupt, ignore Range, send
validators or cap its bandwidth.
"""

from __future__ import annotations

import asyncio
import re
import time

from aiohttp import web

from .hub_state import BODY_KEY, hub_state_of
from .streaming import write_unless_gone

CHUNK = 64 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"
_HEX64 = re.compile(r"[0-9a-f]{64}")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end)`` (end exclusive) of a single-range header, None to answer 200.

    Raises 416 for a range that starts past the end.
    """
    if header is None:
        return None
    asked = _RANGE.fullmatch(header.strip())
    if asked is None or not (asked.group(1) or asked.group(2)):
        return None
    first, last = asked.group(1), asked.group(2)
    if not first:
        start, end = max(0, size - int(last)), size
        if int(last) == 0:
            start = size
    else:
        start = int(first)
        if last and int(last) < start:
            return None  # invalid: ignored, as RFC 9110 says
        end = int(last) + 1 if last else size
    if start >= size:
        raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    return start, min(end, size)


async def send_body(
    request: web.Request,
    data: bytes,
    headers: dict[str, str],
    *,
    ignore_range: bool = False,
    cut_after: int | None = None,
    corrupt: bool = False,
    bandwidth: float = 0.0,
) -> web.StreamResponse:
    """Send ``data`` (or the asked range of it) with these faults; sets ``request[BODY_KEY]``."""
    size = len(data)
    span = None if ignore_range else byte_range(request.headers.get("Range"), size)
    headers = dict(headers)
    if not ignore_range:
        headers["Accept-Ranges"] = "bytes"
    status = 200
    start, end = 0, size
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    body = memoryview(data)[start:end]
    if corrupt and len(body) > 0:
        flipped = bytearray(body)
        flipped[len(flipped) // 2] ^= 0xFF
        body = memoryview(bytes(flipped))
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = "application/octet-stream"
    resp.content_length = len(body)
    limit = len(body) if cut_after is None else min(cut_after, len(body))
    request[BODY_KEY] = 0 if request.method == "HEAD" else limit
    await resp.prepare(request)
    if request.method == "HEAD":
        await resp.write_eof()
        return resp
    chunk = CHUNK if bandwidth <= 0 else max(1, min(CHUNK, int(bandwidth / 50)))
    state = hub_state_of(request)
    began = time.monotonic()
    pos = 0
    while pos < limit and not state.stopping:
        piece = body[pos : min(pos + chunk, limit)]
        if not await write_unless_gone(request, resp, piece):
            return resp
        pos += len(piece)
        if bandwidth > 0:
            delay = began + pos / bandwidth - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    if pos < len(body):
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then FIN: the body is incomplete
        return resp
    await resp.write_eof()
    return resp


def _denied(message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=403, text=body, content_type="application/xml")


async def blob(request: web.Request) -> web.StreamResponse:
    """``GET|HEAD /blob/{sha256}?expires=E&sig=S``."""
    state = hub_state_of(request)
    sha256 = request.match_info["sha256"]
    expires_raw = request.query.get("expires", "")
    sig = request.query.get("sig", "")
    if not _HEX64.fullmatch(sha256) or not expires_raw.isdigit():
        return _denied("Invalid signed URL")
    expires = int(expires_raw)
    if sig != state.signature(sha256, expires):
        return _denied("Invalid signature")
    if expires < time.time():
        return _denied("Request has expired")
    data = state.blobs.get(sha256)
    if data is None:
        return web.Response(status=404, text="NoSuchKey", content_type="text/plain")
    headers: dict[str, str] = {"Cache-Control": "public, max-age=604800, immutable"}
    sw = state.switches
    if sw.cdn_validators:
        headers["ETag"] = f'"{sha256}"'
        headers["Last-Modified"] = _LAST_MODIFIED
    is_get = request.method == "GET"
    cut = is_get and state.take("cut")
    return await send_body(
        request,
        data,
        headers,
        ignore_range=sw.cdn_ignore_range,
        cut_after=sw.cut_after if cut else None,
        corrupt=is_get and state.take("corrupt"),
        bandwidth=sw.cdn_bandwidth,
    )
