"""make_app: the route table, behind the middleware that logs requests and counts handlers."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from . import routes_content as content
from . import routes_control as control
from . import routes_faults as faults
from . import routes_files as files
from .state import STATE_KEY, ServerState, state_of

# Request headers the log records (tests/system/test_credentials.py)
CREDENTIAL_HEADERS = ("Authorization", "Cookie", "Proxy-Authorization", "X-Api-Key", "X-Trace")


@web.middleware
async def _log_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    state = state_of(request)
    if not control.is_control(request.path):
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
                "range": request.headers.get("Range"),  # a resume's or a segment's
                # what a credential test asks: which of these reached this host, and what
                "credentials": {
                    name: request.headers[name]
                    for name in CREDENTIAL_HEADERS
                    if name in request.headers
                },
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
            web.get("/ok/{name}", content.ok),
            web.get("/image/{n}", content.image),
            web.get("/as/{what}", content.served_as),
            web.get("/corpus/{name}", content.corpus),
            web.get("/large/{n}", content.large),
            web.get("/status/{code}", faults.status),
            web.get("/flaky/{key}/{fails}", faults.flaky),
            web.get("/retry-after/{key}/{seconds}", faults.retry_after),
            web.get("/slow/{seconds}", faults.slow),
            # /slow already sleeps before the headers are sent
            web.get("/slow-first-byte/{seconds}", faults.slow),
            web.get("/paced/{seconds}", faults.paced),
            web.put("/pace/{factor}", control.set_pace),
            web.get("/trickle", faults.trickle),
            web.get("/endless", faults.endless),
            web.get("/big/{n}", content.big),
            web.get("/big-nolength/{n}", content.big_nolength),
            web.get("/redirect/{n}", faults.redirect),
            web.get("/redirect-loop", faults.redirect_loop),
            web.get("/reset", faults.reset),
            web.get("/echo-headers", content.echo_headers),
            web.get("/optout/{directive:.+}", content.optout),
            web.get("/gzip-bomb/{mb}", content.gzip_bomb),
            web.get("/wrong-length/{declared}/{actual}", faults.wrong_length),
            web.get("/status-retry-after/{code}/{value:.+}", faults.status_retry_after),
            web.get("/redirect-to", faults.redirect_to),
            web.get("/robots.txt", content.robots_txt),
            web.get("/private/{name:.+}", content.private),
            web.get("/file/{n}/{name:.+}", files.serve_file),
            web.put("/file-version/{v}", files.set_version),
            web.get("/file-bytes", files.bytes_sent),
            web.get("/requests", control.get_requests),
            web.delete("/requests", control.delete_requests),
        ]
    )
    return app
