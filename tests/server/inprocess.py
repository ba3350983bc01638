"""Serving the app in the current event loop: serve, running_server and RunningServer."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from .app import make_app
from .loopback import LOOPBACK, AddressMode
from .state import ServerState


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
