"""Large files as a file server serves them: Range, ETag/If-Range, a version that changes.

``/file/{n}/{name}`` is ``n`` bytes of seeded random blocks that depend on the server's file
version (``PUT /file-version/{v}``), with ``ETag: "n-v"``. It answers ``Range: bytes=S-`` (or
``S-E``) with 206, unless ``If-Range`` names another version (then 200, the whole file), and
416 past the end. ``?norange=1`` ignores Range like a server that cannot seek; ``?pace=S``
takes S seconds per 64 KiB block (slept in steps of at least 5 ms). Every body byte sent is
counted per path (``GET /file-bytes``), so a test can tell a resumed transfer from a
restarted one. Faults, counted per path since the log was last cleared: ``?cut=B`` sends only
B bytes of the path's first response, then closes the connection; ``?corrupt=N`` flips one
byte in the middle of each of its first N responses.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from functools import lru_cache

from aiohttp import web

from .params import float_param, int_match, int_param
from .state import state_of
from .streaming import write_unless_gone

BLOCK = 64 * 1024
_BLOCKS = 16
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")
_LAST_MODIFIED = "Wed, 02 Dec 2026 10:00:00 GMT"


@lru_cache(maxsize=8)
def _blocks(version: int) -> tuple[bytes, ...]:
    return tuple(random.Random(f"{version}:{k}").randbytes(BLOCK) for k in range(_BLOCKS))


def _block(version: int, index: int) -> bytes:
    return _blocks(version)[(index * 7 + index // _BLOCKS) % _BLOCKS]


def file_bytes(n: int, version: int = 0, start: int = 0, end: int | None = None) -> bytes:
    """Bytes ``start``..``end`` (exclusive) of the ``n``-byte file (tests: small files)."""
    return b"".join(_pieces(n, version, start, n if end is None else end))


def file_sha256(n: int, version: int = 0) -> str:
    digest = hashlib.sha256()
    for piece in _pieces(n, version, 0, n):
        digest.update(piece)
    return digest.hexdigest()


def _pieces(n: int, version: int, start: int, end: int) -> list[bytes]:
    out = []
    pos = start
    while pos < min(end, n):
        index, within = divmod(pos, BLOCK)
        piece = _block(version, index)[within : within + min(end, n) - pos]
        out.append(piece)
        pos += len(piece)
    return out


def etag(n: int, version: int) -> str:
    return f'"{n}-{version}"'


async def set_version(request: web.Request) -> web.Response:
    state = state_of(request)
    state.file_version = int_match(request, "v")
    return web.json_response({"version": state.file_version})


async def bytes_sent(request: web.Request) -> web.Response:
    return web.json_response(state_of(request).file_bytes)


async def serve_file(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    n = int_match(request, "n")
    version = state.file_version
    pace = float_param(request, "pace", 0.0)
    ignore_range = int_param(request, "norange", 0) == 1
    tag = etag(n, version)
    key = request.path
    hit = state.file_gets[key] = state.file_gets.get(key, 0) + 1
    cut = int_param(request, "cut", -1, lo=-1) if hit == 1 else -1
    corrupt = hit <= int_param(request, "corrupt", 0)
    headers = {"ETag": tag, "Last-Modified": _LAST_MODIFIED, "Accept-Ranges": "bytes"}
    start, end = 0, n
    status = 200
    asked = _RANGE.fullmatch(request.headers.get("Range", "").strip())
    if asked and not ignore_range:
        validator = request.headers.get("If-Range")
        if validator is None or validator == tag:
            first = int(asked.group(1))
            if first >= n:
                raise web.HTTPRequestRangeNotSatisfiable(headers={"Content-Range": f"bytes */{n}"})
            last = int(asked.group(2)) if asked.group(2) else n - 1
            start, end, status = first, min(last, n - 1) + 1, 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{n}"
    if ignore_range:
        del headers["Accept-Ranges"]
    resp = web.StreamResponse(status=status, headers=headers)
    resp.content_type = "application/octet-stream"
    resp.content_length = end - start
    await resp.prepare(request)
    pos = start
    owed = 0.0
    flip = (start + end) // 2 if corrupt else -1
    stop = end if cut < 0 else min(end, start + cut)
    while pos < stop:
        index, within = divmod(pos, BLOCK)
        piece = _block(version, index)[within : within + min(BLOCK - within, stop - pos)]
        if pos <= flip < pos + len(piece):
            changed = bytearray(piece)
            changed[flip - pos] ^= 0xFF
            piece = bytes(changed)
        if not await write_unless_gone(request, resp, piece):
            return resp
        state.file_bytes[key] = state.file_bytes.get(key, 0) + len(piece)
        pos += len(piece)
        owed += pace
        if owed >= 0.005:
            await asyncio.sleep(owed)
            owed = 0.0
    if stop < end:
        transport = request.transport
        if transport is not None:
            transport.close()  # flushes what was written, then FIN: the body is incomplete
        return resp
    await resp.write_eof()
    return resp
