"""Request parameters read from the query string and the path; a bad value answers 400."""

from __future__ import annotations

from aiohttp import web


def int_param(request: web.Request, name: str, default: int, lo: int = 0) -> int:
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


def float_param(request: web.Request, name: str, default: float) -> float:
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


def int_match(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    try:
        return int(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}") from None


def float_match(request: web.Request, name: str) -> float:
    raw = request.match_info[name]
    try:
        value = float(raw)
    except ValueError:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}") from None
    if value < 0:
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}")
    return value


def status_param(request: web.Request, default: int) -> int:
    code = int_param(request, "code", default)
    if not 200 <= code <= 599:
        raise web.HTTPBadRequest(text=f"bad code: {code}")
    return code


def header_value(raw: str, name: str) -> str:
    """``raw`` as a header value; 400 (not a handler error) if it cannot be one."""
    if not raw or any(c in raw for c in "\r\n\0"):
        raise web.HTTPBadRequest(text=f"bad {name}: {raw!r}")
    return raw
