"""ServerState, shared by all listeners of one server, and the app key that holds it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import IO, Any

from aiohttp import web

DEFAULT_ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n"


@dataclass
class ServerState:
    """Mutable state shared by all listeners of one server.

    ``log`` holds one dict per request (except ``/requests``) with keys ``t``
    (``time.monotonic()``), ``wall`` (``time.time()``), ``method``, ``host`` (Host
    header), ``addr``/``port`` (local socket the request arrived on), ``host_index``
    (index of that listener in ``base_urls``), ``path`` (path + query), ``ua`` and
    ``range`` (the Range header, or None).
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
    #: the version of every /file/ (routes_files.py): a new one is a changed file
    file_version: int = 0
    #: body bytes /file/ sent, by path
    file_bytes: dict[str, int] = field(default_factory=dict)
    #: responses /file/ began, by path (its cut and corrupt faults count them)
    file_gets: dict[str, int] = field(default_factory=dict)

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
        self.file_bytes.clear()
        self.file_gets.clear()
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


def state_of(request: web.Request) -> ServerState:
    """The state of the server that ``request`` arrived at."""
    return request.app[STATE_KEY]
