"""robots.txt, when asked for (``fetch.robots_txt``): read once per host, then consulted."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from fetchshard.config import FetchConfig
from fetchshard.http.client import UA_TOKEN, Client
from fetchshard.http.request import fetch

MAX_ROBOTS_BYTES = 512 * 1024  # Google reads the first 500 KiB


async def read_robots(client: Client, url: str, config: FetchConfig) -> RobotFileParser:
    """The robots.txt of ``url``'s host. Missing, broken or unreachable means "allow all"."""
    parts = urlsplit(url)
    robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
    small = dataclasses.replace(
        config, max_body_bytes=MAX_ROBOTS_BYTES, opt_out_directives=(), min_speed=0
    )
    result = await fetch(client, robots_url, small)
    parser = RobotFileParser(robots_url)
    if result.ok and result.body is not None:
        parser.parse(result.body.decode("utf-8", "replace").splitlines())
    else:
        parser.parse([])
    return parser


def robots_allow(parser: RobotFileParser, url: str) -> bool:
    return parser.can_fetch(UA_TOKEN, url)


class RobotsCache:
    """One host's robots.txt: fetched once, by the first URL that asks, under the host's rate."""

    __slots__ = ("_lock", "parser")

    def __init__(self) -> None:
        self.parser: RobotFileParser | None = None
        self._lock = asyncio.Lock()

    async def allows(
        self,
        client: Client,
        url: str,
        config: FetchConfig,
        wait_turn: Callable[[], Awaitable[None]],
    ) -> bool:
        """Whether robots.txt lets us fetch ``url``; ``wait_turn`` before fetching it."""
        async with self._lock:
            if self.parser is None:
                await wait_turn()
                self.parser = await read_robots(client, url, config)
        return robots_allow(self.parser, url)
