"""URL normalization, stable item ids and the host-aware rank partition (DESIGN.md step 3).

Everything here must give the same answer on every machine and Python version, so it uses
xxHash (XXH3-64, seed 0) and never the builtin ``hash()``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import xxhash

_h64 = xxhash.xxh3_64_intdigest
ID_MASK = (1 << 63) - 1  # item and host ids: the low 63 bits of a hash
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters that make a URL ambiguous or dangerous to put on the wire as-is.
_FORBIDDEN = frozenset(chr(c) for c in range(0x21)) | {"\x7f"}


def hash64(text: str) -> int:
    return int(_h64(text.encode("utf-8", "surrogatepass")))


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    url: str  # normalized: lower-case scheme and host, no default port, no fragment
    host: str  # lower-case host[:port] as the partition and the limiters see it


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


@dataclass(frozen=True, slots=True)
class Partitioner:
    """``rank = (h(host) + h(key) mod spread) mod world_size`` (see DESIGN.md)."""

    world_size: int
    spread: int

    def rank_of(self, host: str, key: str) -> int:
        bucket = hash64(key) % self.spread
        return (hash64(host) + bucket) % self.world_size

    def owned_buckets(self, host: str, rank: int) -> int:
        """How many of a host's ``spread`` buckets land on ``rank``."""
        if self.spread >= self.world_size:
            full, extra = divmod(self.spread, self.world_size)
            # Buckets 0..spread-1 land on ranks start, start+1, ... (wrapping), so the
            # first `extra` ranks after `start` own one more bucket than the others.
            offset = (rank - hash64(host)) % self.world_size
            return full + (1 if offset < extra else 0)
        offset = (rank - hash64(host)) % self.world_size
        return 1 if offset < self.spread else 0

    def rate_share(self, host: str, rank: int, rate: float) -> float:
        """This rank's exact share of a host's global rate."""
        return rate * self.owned_buckets(host, rank) / self.spread

    # The same rule on hashes (``hash64`` of the host and of the key), as planning uses it.

    def ranks_of(self, host_hashes: np.ndarray, key_hashes: np.ndarray) -> np.ndarray:
        """:meth:`rank_of` of many items at once (uint64 arrays of equal length)."""
        world = np.uint64(self.world_size)
        buckets = np.asarray(key_hashes, dtype=np.uint64) % np.uint64(self.spread)
        offsets = np.asarray(host_hashes, dtype=np.uint64) % world
        out: np.ndarray = ((offsets + buckets) % world).astype(np.int64)
        return out

    def reaches(self, host_hashes: np.ndarray, rank: int) -> np.ndarray:
        """Whether some bucket of each host lands on ``rank``: ranks offset .. offset+spread-1."""
        offsets = (np.asarray(host_hashes, dtype=np.uint64) % np.uint64(self.world_size)).astype(
            np.int64
        )
        out: np.ndarray = (rank - offsets) % self.world_size < self.spread
        return out

    def share_of(self, host: str, rank: int) -> Fraction:
        """The exact fraction of a host's items, and of its rate, that ``rank`` takes."""
        return Fraction(self.owned_buckets(host, rank), self.spread)
