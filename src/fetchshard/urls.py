"""URLs and hosts: normalization, what identifies an item, the hashes everything is keyed
by, and what a host pattern of the configuration matches.

The ground floor: nothing here imports fetchshard. Planning (``planning/``) places items by
these hashes, the ledger keys items and hosts by their ids, merge and the schema migration
normalize with :func:`normalize_url`; the scheduler and each hop match hosts against
``fetch.hosts`` / ``block_hosts`` (:func:`host_matches`). Everything here must give the same
answer on every machine and Python version, so it uses xxHash (XXH3-64, seed 0) and never the
builtin ``hash()``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import xxhash

_h64 = xxhash.xxh3_64_intdigest
ID_MASK = (1 << 63) - 1  # item and host ids: the low 63 bits of a hash
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters that make a URL ambiguous or dangerous to put on the wire as-is.
_FORBIDDEN = frozenset(chr(c) for c in range(0x21)) | {"\x7f"}


def hash64(text: str) -> int:
    """XXH3-64 of the text's UTF-8 bytes (lone surrogates kept): the hash of a host or key."""
    return int(_h64(text.encode("utf-8", "surrogatepass")))


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    url: str  # normalized: lower-case scheme and host, no default port, no fragment
    host: str  # lower-case host[:port] as placement and the limiters see it


class BadUrl(ValueError):
    """The text is not an http(s) URL that can be fetched."""


def normalize_url(text: str) -> ParsedUrl:
    """Normalize an http(s) URL or raise :class:`BadUrl` with a short reason."""
    if any(ch in _FORBIDDEN for ch in text):
        raise BadUrl("URL contains whitespace or control characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BadUrl(f"cannot parse URL: {exc}") from exc
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise BadUrl(f"scheme {parts.scheme!r} is not http or https" if scheme else "no scheme")
    hostname = parts.hostname
    if not hostname:
        raise BadUrl("URL has no host")
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise BadUrl(f"host {hostname!r} is not a valid domain name") from exc
    if ":" in hostname:
        hostname = f"[{hostname}]"  # IPv6 literal
    host = hostname if port is None or port == _DEFAULT_PORTS[scheme] else f"{hostname}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}" if userinfo else host
    url = urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))
    return ParsedUrl(url=url, host=host)


# URLs that normalize_url() returns unchanged provided their origin (scheme://host[:port]) is
# unchanged too (see canonical_host): a lower-case http(s) scheme, a lower-case host of
# [a-z0-9._-], a port without a leading zero, no userinfo, a path, printable ASCII without
# '#' and not ending in '?' (an empty query is dropped). Planning checks the same thing
# vectorized and skips the per-row normalize_url for them; tests compare it with this regex.
CANONICAL_URL = r'^https?://[a-z0-9._-]+(?::[1-9][0-9]{0,4})?/(?:[!-"$-~]*[!-"$->@-~])?$'
_CANONICAL_NETLOC = re.compile(r"[a-z0-9._-]+(?::[1-9][0-9]{0,4})?")


def canonical_host(origin: str) -> str | None:
    """The host of an origin ``scheme://host[:port]`` of :data:`CANONICAL_URL` when
    normalize_url keeps URLs under it unchanged (no default port, a port in range); else None,
    and those URLs need normalize_url."""
    scheme, _, netloc = origin.partition("://")
    if scheme not in _DEFAULT_PORTS or not _CANONICAL_NETLOC.fullmatch(netloc):
        return None
    try:
        parsed = normalize_url(origin + "/")
    except BadUrl:
        return None
    return parsed.host if parsed.url == origin + "/" else None


def item_id(key: str) -> int:
    """A stable non-negative 63-bit id (fits SQLite INTEGER and Parquet int64)."""
    return hash64(key) & ID_MASK


def item_key(url: str, user_id: str | None) -> str:
    """What identifies an item: its normalized URL, plus the user's id column when given."""
    return url if user_id is None else f"{url}\x00{user_id}"


# ------------------------------------------------------------------ host patterns

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
