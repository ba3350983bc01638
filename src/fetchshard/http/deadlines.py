"""The limits of every transfer in flight, checked together on one shared tick."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import aiohttp

from fetchshard.clock import DEADLINE_TICK
from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind


class Tripped(Exception):
    """A guard ended the transfer; its ``tripped`` says which limit (fetch() reads it there)."""


class Guard:
    """The limits of one request: total deadline, silence, minimum speed.

    The transfer reports its bytes (``bytes``) and its response (:meth:`watch`); the watch's
    tick calls :meth:`check`. Silence is seen at tick resolution: a tick that finds the same
    bytes and response as the last one with progress counts the time since then. Until the
    first response the allowance is connect_timeout + read_timeout (aiohttp's own read
    timeout started once the request was sent, which a caller cannot see), and the minimum
    speed is measured from the first response on: before it there are no bytes to measure.
    """

    __slots__ = (
        "_deadline",
        "_first_quiet",
        "_last",
        "_min_speed",
        "_need",
        "_next",
        "_quiet",
        "_quiet_since",
        "_resp",
        "_seen",
        "_seen_resp",
        "_task",
        "_total",
        "_window",
        "bytes",
        "tripped",
    )

    def __init__(
        self,
        config: FetchConfig,
        factor: float,
        now: float,
        task: asyncio.Task[Any] | None,
    ) -> None:
        self.bytes = 0
        self.tripped: ErrorKind | None = None
        self._task = task
        self._resp: aiohttp.ClientResponse | None = None
        self._total = config.total_timeout * factor
        self._deadline = now + self._total
        self._quiet = config.read_timeout * factor
        self._first_quiet = (config.connect_timeout + config.read_timeout) * factor
        self._quiet_since = now
        self._seen = 0
        self._seen_resp: aiohttp.ClientResponse | None = None
        self._window = config.min_speed_window * factor
        self._min_speed = config.min_speed
        self._need = config.min_speed * self._window
        self._last = 0
        self._next = math.inf  # the speed window opens with the first response

    def watch(self, resp: aiohttp.ClientResponse | None) -> None:
        """The response being read now (None while the next hop is requested)."""
        self._resp = resp

    def check(self, now: float) -> None:
        if now >= self._deadline:
            self._trip(ErrorKind.TIMEOUT)
            return
        if self.bytes != self._seen or self._resp is not self._seen_resp:
            self._seen, self._seen_resp, self._quiet_since = self.bytes, self._resp, now
            if self._next == math.inf and self._resp is not None:
                self._last, self._next = self.bytes, now + self._window
        elif now - self._quiet_since >= (
            self._quiet if self._resp is not None else self._first_quiet
        ):
            self._trip(ErrorKind.READ_TIMEOUT)
            return
        if self._need <= 0 or now < self._next:
            return
        if self.bytes - self._last < self._need:
            self._trip(ErrorKind.TOO_SLOW)
            return
        self._last = self.bytes
        self._next = now + self._window

    def message(self) -> str:
        if self.tripped is ErrorKind.TIMEOUT:
            return f"not done within total_timeout ({self._total:g}s)"
        if self.tripped is ErrorKind.READ_TIMEOUT:
            quiet = self._quiet if self._seen_resp is not None else self._first_quiet
            return f"no data for {quiet:g}s (read_timeout)"
        return f"under {self._min_speed} bytes/s for {self._window:g}s (min_speed)"

    def _trip(self, kind: ErrorKind) -> None:
        self.tripped = kind
        if self._resp is not None:
            self._resp.close()  # the body's read raises at once
        elif self._task is not None:
            self._task.cancel()  # connecting or waiting for headers: fetch() takes it back


class Watch:
    """Checks every transfer's guard on one shared tick.

    One timer per request (armed and cancelled thousands of times a second, and re-armed at
    every chunk for the read timeout) costs more than scanning the transfers in flight four
    times a second; a limit is caught at most one tick after it is crossed.
    """

    TICK = DEADLINE_TICK

    def __init__(self) -> None:
        self._guards: set[Guard] = set()
        self._finished_bytes = 0  # body bytes of the transfers that ended
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, config: FetchConfig, factor: float) -> Guard:
        # The client lives in one loop; asking for it per request showed in profiles.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        guard = Guard(config, factor, loop.time(), asyncio.current_task())
        self._guards.add(guard)
        if self._handle is None:
            self._handle = loop.call_later(self.TICK, self._tick)
        return guard

    def stop(self, guard: Guard) -> None:
        if guard in self._guards:
            self._guards.discard(guard)
            self._finished_bytes += guard.bytes

    @property
    def received(self) -> int:
        """Body bytes received so far, those of the transfers in flight included."""
        return self._finished_bytes + sum(g.bytes for g in self._guards)

    def _tick(self) -> None:
        loop = self._loop
        if not self._guards or loop is None:
            self._handle = None
            return
        now = loop.time()
        for guard in list(self._guards):
            if guard.tripped is None:
                guard.check(now)
        self._handle = loop.call_later(self.TICK, self._tick)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
