"""Host patterns of the configuration (fetch.hosts, fetch.block_hosts) and what they match."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def host_matches(host: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """``example.org`` matches itself (any port); ``*.example.org`` its subdomains;
    ``example.org:8443`` that port only. ``host`` is "name" or "name:port"."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return any(fnmatch.fnmatchcase(host, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def find_override(host: str, overrides: Mapping[str, T]) -> T | None:
    """The first entry of ``overrides`` whose pattern matches ``host``."""
    for pattern, override in overrides.items():
        if host_matches(host, (pattern.lower(),)):
            return override
    return None
