"""A fake Hugging Face Hub and its CDN on loopback: two origins (two ports on 127.0.0.1).

Define repos, then run it in the test's event loop or in a subprocess::

    repo = HubRepo("ns/name", {"main": {"a.txt": b"small", "data/x.parquet": Generated(5000)}})
    async with running_hub([repo]) as hub:          # FakeHub
        os.environ["HF_ENDPOINT"] = hub.endpoint    # in a subprocess that imports huggingface_hub
        hub.rate_limit(2, reset=1)                   # switches, see HubControls
        hub.requests("cdn")                          # the log, see hub_state

    with HubProcess([repo]) as hub:                  # `python -m server --hub spec.json`
        ...same methods; the switches go through POST /_fake/switches...

Routes: hub_routes (the Hub), hub_cdn (the CDN).  Control routes, on both origins and left
out of the log: ``GET|DELETE /_fake/requests`` (``?origin=hub|cdn``), ``GET /_fake/switches``
and ``POST /_fake/switches`` (a JSON object of :class:`~server.hub_state.HubSwitches` fields).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import IO, Any
from urllib.parse import quote

from aiohttp import web

from . import hub_cdn, hub_routes
from .hub_repos import HubRepo
from .hub_state import (
    ARRIVAL_KEY,
    BODY_KEY,
    HUB_STATE_KEY,
    HubState,
    hub_state_of,
    mask_authorization,
)
from .inprocess import _site_port
from .loopback import LOOPBACK
from .process import SERVER_PACKAGE, ServerProcess

CONTROL_PREFIX = "/_fake/"


def _error_middleware(origin: str) -> Any:
    """Note when a request arrived; keep the handlers' unexpected exceptions in ``errors``."""

    @web.middleware
    async def note_requests(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        request[ARRIVAL_KEY] = (time.monotonic(), time.time())
        try:
            return await handler(request)
        except web.HTTPException:
            raise
        except Exception as exc:
            hub_state_of(request).errors.append(f"{origin} {request.raw_path}: {exc!r}")
            raise

    return note_requests


def _logger(origin: str) -> Any:
    """Log each answer as its headers go out, so a client never sees an answer not logged."""

    async def log_answer(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith(CONTROL_PREFIX):
            return
        t, wall = request.get(ARRIVAL_KEY) or (time.monotonic(), time.time())
        auth = request.headers.get("Authorization")
        hub_state_of(request).record(
            {
                "t": t,
                "wall": wall,
                "origin": origin,
                "method": request.method,
                "path": request.raw_path,
                "status": response.status,
                "auth": None if auth is None else mask_authorization(auth),
                "range": request.headers.get("Range"),
                "ua": request.headers.get("User-Agent"),
                "body": request.get(BODY_KEY),
            }
        )

    return log_answer


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response(hub_state_of(request).requests(request.query.get("origin")))


async def _delete_requests(request: web.Request) -> web.Response:
    hub_state_of(request).clear()
    return web.json_response({"cleared": True})


async def _get_switches(request: web.Request) -> web.Response:
    return web.json_response(hub_state_of(request).switches.as_dict())


async def _post_switches(request: web.Request) -> web.Response:
    state = hub_state_of(request)
    try:
        values = await request.json()
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        state.switches.update(values)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    return web.json_response(state.switches.as_dict())


def make_hub_apps(state: HubState) -> tuple[web.Application, web.Application]:
    """The hub's and the CDN's applications, sharing ``state``."""
    apps = []
    for origin in ("hub", "cdn"):
        app = web.Application(middlewares=[_error_middleware(origin)])
        app[HUB_STATE_KEY] = state
        app.on_response_prepare.append(_logger(origin))
        app.router.add_get(CONTROL_PREFIX + "requests", _get_requests)
        app.router.add_delete(CONTROL_PREFIX + "requests", _delete_requests)
        app.router.add_get(CONTROL_PREFIX + "switches", _get_switches)
        app.router.add_post(CONTROL_PREFIX + "switches", _post_switches)
        if origin == "hub":
            app.router.add_route("*", "/{tail:.*}", hub_routes.dispatch)
        else:
            app.router.add_get("/blob/{sha256}", hub_cdn.blob)
        apps.append(app)
    return apps[0], apps[1]


class HubControls:
    """What a test does with a fake Hub, in-process (:class:`FakeHub`) or not (:class:`HubProcess`).

    Subclasses provide ``hub_url``, ``cdn_url``, ``repos``, ``set_switches``, ``switches``,
    ``requests`` and ``clear_requests``.
    """

    hub_url: str
    cdn_url: str
    repos: dict[tuple[str, str], HubRepo]

    def set_switches(self, **values: Any) -> dict[str, Any]:
        raise NotImplementedError

    # -- switches ----------------------------------------------------------------------
    def rate_limit(self, count: int = 1, reset: int = 2) -> None:
        """The next ``count`` resolves answer 429, ``RateLimit: "resolvers";r=0;t=<reset>``."""
        self.set_switches(rate_limited=count, rate_limit_reset=reset)

    def expire_next(self, count: int = 1) -> None:
        """The next ``count`` LFS redirects point at an expired signed URL (CDN: 403)."""
        self.set_switches(expired=count)

    def cut_next(self, count: int = 1, after: int = 0) -> None:
        """The next ``count`` CDN GETs send ``after`` body bytes, then close the connection."""
        self.set_switches(cut=count, cut_after=after)

    def corrupt_next(self, count: int = 1) -> None:
        """The next ``count`` CDN GETs flip the middle byte of the body they send."""
        self.set_switches(corrupt=count)

    def ignore_range(self, on: bool = True) -> None:
        """The CDN answers Range requests with 200 and the whole body."""
        self.set_switches(cdn_ignore_range=on)

    def set_bandwidth(self, bytes_per_second: float) -> None:
        """Cap each CDN response at this rate (0: no cap)."""
        self.set_switches(cdn_bandwidth=float(bytes_per_second))

    def send_validators(self, on: bool = True) -> None:
        """The CDN sends ``ETag`` and ``Last-Modified`` (by default it sends neither)."""
        self.set_switches(cdn_validators=on)

    # -- repos and URLs ------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """What ``HF_ENDPOINT`` is set to."""
        return self.hub_url

    def repo(self, repo_id: str, repo_type: str = "dataset") -> HubRepo:
        return self.repos[(repo_type, repo_id)]

    def resolve_url(
        self, repo_id: str, path: str, rev: str = "main", repo_type: str = "dataset"
    ) -> str:
        """The resolve URL as huggingface_hub builds it (pass ``repo.sha()`` to pin a commit)."""
        prefix = self.repo(repo_id, repo_type).prefix
        return f"{self.hub_url}/{prefix}{repo_id}/resolve/{quote(rev, safe='')}/{quote(path)}"


class FakeHub(HubControls):
    """Handle to a fake Hub running in the current event loop (see :func:`serve_hub`)."""

    def __init__(
        self, state: HubState, runners: list[web.AppRunner], ports: tuple[int, int]
    ) -> None:
        self.state = state
        self.runners = runners
        self.ports = list(ports)
        self.hub_url, self.cdn_url = (f"http://{LOOPBACK}:{p}" for p in ports)
        self.base_urls = [self.hub_url, self.cdn_url]
        self.repos = state.repos

    def set_switches(self, **values: Any) -> dict[str, Any]:
        self.state.switches.update(values)
        return self.state.switches.as_dict()

    def switches(self) -> dict[str, Any]:
        return self.state.switches.as_dict()

    def requests(self, origin: str | None = None) -> list[dict[str, Any]]:
        return self.state.requests(origin)

    def clear_requests(self) -> None:
        self.state.clear()

    async def close(self) -> None:
        self.state.stopping = True
        for runner in self.runners:
            await runner.cleanup()


async def serve_hub(
    repos: Iterable[HubRepo],
    *,
    page_size: int = 3,
    url_ttl: float = 3600.0,
    users: Iterable[str] | None = None,
    hub_port: int = 0,
    cdn_port: int = 0,
    log_file: IO[str] | None = None,
    keep_log: bool = True,
) -> FakeHub:
    """Start the hub and the CDN listeners in the running loop; ``.close()`` after.

    ``users``: the tokens the Hub knows (others answer 401 "Invalid credentials"); None: any
    token is a user's, let in or not repo by repo.
    """
    if page_size < 1:
        raise ValueError("page_size must be >= 1")
    state = HubState(
        page_size=page_size,
        url_ttl=url_ttl,
        users=None if users is None else frozenset(users),
        log_file=log_file,
        keep_log=keep_log,
    )
    state.add_repos(repos)
    runners: list[web.AppRunner] = []
    ports: list[int] = []
    try:
        for app, port in zip(make_hub_apps(state), (hub_port, cdn_port), strict=True):
            runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
            await runner.setup()
            runners.append(runner)
            site = web.TCPSite(runner, LOOPBACK, port)
            await site.start()
            ports.append(_site_port(site))
    except BaseException:
        for runner in runners:
            with contextlib.suppress(Exception):
                await runner.cleanup()
        raise
    hub = FakeHub(state, runners, (ports[0], ports[1]))
    state.hub_url, state.cdn_url = hub.hub_url, hub.cdn_url
    return hub


@contextlib.asynccontextmanager
async def running_hub(repos: Iterable[HubRepo], **options: Any) -> AsyncIterator[FakeHub]:
    """``async with running_hub([repo]) as hub:`` -- options as :func:`serve_hub`'s."""
    hub = await serve_hub(repos, **options)
    try:
        yield hub
    finally:
        await hub.close()


# ---------------------------------------------------------------------- subprocess


def hub_spec(
    repos: Iterable[HubRepo],
    *,
    page_size: int = 3,
    url_ttl: float = 3600.0,
    users: Iterable[str] | None = None,
    hub_port: int = 0,
    cdn_port: int = 0,
    switches: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON spec ``python -m server --hub SPEC`` reads."""
    return {
        "repos": [repo.to_spec() for repo in repos],
        "page_size": page_size,
        "url_ttl": url_ttl,
        "users": None if users is None else sorted(users),
        "hub_port": hub_port,
        "cdn_port": cdn_port,
        "switches": dict(switches or {}),
    }


async def serve_hub_from_spec(
    spec: Mapping[str, Any], *, log_file: IO[str] | None = None, keep_log: bool = True
) -> FakeHub:
    hub = await serve_hub(
        [HubRepo.from_spec(r) for r in spec["repos"]],
        page_size=int(spec.get("page_size", 3)),
        url_ttl=float(spec.get("url_ttl", 3600.0)),
        users=spec.get("users"),
        hub_port=int(spec.get("hub_port", 0)),
        cdn_port=int(spec.get("cdn_port", 0)),
        log_file=log_file,
        keep_log=keep_log,
    )
    hub.set_switches(**spec.get("switches", {}))
    return hub


class HubProcess(HubControls, ServerProcess):
    """The fake Hub in a subprocess (``python -m server --hub SPEC``), like ServerProcess.

    The repos go to the subprocess as a JSON spec beside the log file; ``requests()`` reads
    the JSON-lines log; the switches go through ``POST /_fake/switches``.
    """

    def __init__(
        self,
        repos: Iterable[HubRepo],
        log_path: str | os.PathLike[str] | None = None,
        *,
        page_size: int = 3,
        url_ttl: float = 3600.0,
        users: Iterable[str] | None = None,
        hub_port: int = 0,
        cdn_port: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(hosts=2, log_path=log_path, startup_timeout=startup_timeout)
        repos = list(repos)
        self.repos = {repo.key: repo for repo in repos}
        self.spec = hub_spec(
            repos,
            page_size=page_size,
            url_ttl=url_ttl,
            users=users,
            hub_port=hub_port,
            cdn_port=cdn_port,
        )
        self.spec_path = self.log_path.with_name(self.log_path.name + ".hub.json")
        self.hub_url = ""
        self.cdn_url = ""

    def _command(self) -> list[str]:
        self.spec_path.write_text(json.dumps(self.spec), encoding="utf-8")
        return [
            sys.executable,
            "-m",
            SERVER_PACKAGE,
            "--hub",
            str(self.spec_path.absolute()),
            "--log",
            str(self.log_path.absolute()),
            "--exit-on-stdin-eof",
        ]

    def _started(self, info: dict[str, Any]) -> None:
        self.hub_url, self.cdn_url = str(info["hub"]), str(info["cdn"])

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.hub_url + CONTROL_PREFIX + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=10) as resp:
            return json.loads(resp.read())

    def set_switches(self, **values: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._control("POST", "switches", values)
        return result

    def switches(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control("GET", "switches")
        return result

    def requests(self, origin: str | None = None) -> list[dict[str, Any]]:
        return [e for e in super().requests() if origin is None or e["origin"] == origin]

    def clear_requests(self) -> None:
        self._control("DELETE", "requests")
