"""Which headers one hop of a request carries: a credential goes only to the origin it is for.

:func:`hop_headers` is the one decision, pure and unit-tested over a table of cases; request.py
asks it on every hop of a redirect chain (client.py caches the answer for first hops). The rule:

- headers that are not secrets go on every hop: ``fetch.headers``, and the ``fetch.hosts``
  headers of the host being asked;
- a secret (:func:`is_secret`) goes only where it was configured for: ``fetch.headers`` and the
  input URL's userinfo to the input URL's origin (scheme, host, port), a ``fetch.hosts`` entry's
  and netrc's to the host they name, at the port the entry names, else the scheme's default
  port or the one the input URL names; a redirect to another origin drops them, the target
  host's own entry applies to it. ``http://host`` to ``https://host`` on the default ports
  keeps them (as requests does); no hop over http after one over https to the same host gets
  any secret.
- When several give an ``Authorization``, the most specific wins: URL userinfo, then the
  host's entry, then ``fetch.headers``, then netrc.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from yarl import URL

from fetchshard.config import FetchConfig
from fetchshard.urls import host_matches

# Always credentials (the ones aiohttp, requests and curl drop on a cross-origin redirect).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# A header whose name holds one of these is a secret too (X-Api-Key, X-Auth-Token, ...);
# fetch.secret_headers names any other.
_SECRET_WORDS = ("auth", "token", "key", "secret", "session", "cookie", "password", "signature")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Origin = tuple[str, str, int]  # scheme, host (lower case, IPv6 in brackets), port
NetrcLookup = Callable[[str], str | None]  # host name -> an Authorization value


def is_secret(name: str, marked: frozenset[str] = frozenset()) -> bool:
    """Whether a header is a credential: by its name, or marked by the user (lower case)."""
    low = name.lower()
    return low in CREDENTIAL_HEADERS or low in marked or any(w in low for w in _SECRET_WORDS)


def origin_of(url: URL) -> Origin:
    return (url.scheme, (url.host_subcomponent or "").lower(), url.port or 0)


def _may_follow(bound: Origin, hop: Origin) -> bool:
    """Whether a secret bound to ``bound`` may go to ``hop``: the same origin, or its upgrade
    from http to https on the default ports."""
    return hop == bound or (
        bound[0] == "http" and bound[2] == 80 and hop == ("https", bound[1], 443)
    )


@dataclass(frozen=True, slots=True)
class HostHeaders:
    """One ``fetch.hosts`` entry's headers, split into those that are secrets and the rest."""

    pattern: str  # "example.org", "*.example.org" or "example.org:8443"
    public: tuple[tuple[str, str], ...]
    secret: tuple[tuple[str, str], ...]

    @property
    def names_port(self) -> bool:
        return not self.pattern.endswith("]") and ":" in self.pattern


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """The configured headers, sorted by where they may go (built once per rank)."""

    public: tuple[tuple[str, str], ...] = ()  # fetch.headers that are not secrets: every hop
    first_origin: tuple[tuple[str, str], ...] = ()  # fetch.headers secrets: the input's origin
    hosts: tuple[HostHeaders, ...] = ()  # in the order of fetch.hosts (the first match wins)

    @classmethod
    def from_config(cls, config: FetchConfig) -> HeaderRules:
        marked = frozenset(h.lower() for h in config.secret_headers)

        def split(headers: Mapping[str, str]) -> tuple[tuple[tuple[str, str], ...], ...]:
            items = list(headers.items())
            return (
                tuple((k, v) for k, v in items if not is_secret(k, marked)),
                tuple((k, v) for k, v in items if is_secret(k, marked)),
            )

        public, first = split(config.headers)
        hosts = tuple(
            HostHeaders(pattern.lower(), *split(override.headers))
            for pattern, override in config.hosts.items()
        )
        return cls(public, first, hosts)

    def entry(self, host: str) -> HostHeaders | None:
        """The ``fetch.hosts`` entry of ``host`` ("name" or "name:port"), as the scheduler
        finds it (urls.py)."""
        for entry in self.hosts:
            if host_matches(host, (entry.pattern,)):
                return entry
        return None


def _covers(entry_names_port: bool, hop: URL, first: URL) -> bool:
    """Whether a host's secrets (its entry's, netrc's) may go to ``hop`` at its port: the port
    the entry names (matched already), else the default port or the input URL's own."""
    if entry_names_port or hop.explicit_port in (None, _DEFAULT_PORTS.get(hop.scheme)):
        return True
    return (hop.host_subcomponent, hop.port) == (first.host_subcomponent, first.port)


def _downgraded(chain: Sequence[URL]) -> bool:
    """The hop is over http after an earlier hop over https to the same host."""
    hop = chain[-1]
    return hop.scheme == "http" and any(
        u.scheme == "https" and u.host_subcomponent == hop.host_subcomponent for u in chain[:-1]
    )


def _basic(url: URL) -> str | None:
    if url.user is None:
        return None
    token = f"{url.user}:{url.password or ''}".encode()
    return "Basic " + base64.b64encode(token).decode("ascii")


def hop_headers(
    rules: HeaderRules, chain: Sequence[URL], netrc: NetrcLookup | None = None
) -> dict[str, str]:
    """The configured headers of the request to ``chain[-1]``, reached from the input URL
    ``chain[0]`` through ``chain[1:-1]`` (see the module's docstring for the rule)."""
    hop, first = chain[-1], chain[0]
    out: dict[str, tuple[str, str]] = {}  # lower-case name -> (name, value)

    def put(headers: Sequence[tuple[str, str]]) -> None:
        for name, value in headers:
            out[name.lower()] = (name, value)

    put(rules.public)
    entry = rules.entry(hop.host_port_subcomponent or "")
    if entry is not None:
        put(entry.public)
    if not _downgraded(chain):
        if netrc is not None and hop.host and _covers(False, hop, first):
            auth = netrc(hop.host)
            if auth is not None:
                put((("Authorization", auth),))
        if _may_follow(origin_of(first), origin_of(hop)):
            put(rules.first_origin)
        if entry is not None and _covers(entry.names_port, hop, first):
            put(entry.secret)
        userinfo = _basic(hop) if hop.user is not None else None
        if userinfo is None and _may_follow(origin_of(first), origin_of(hop)):
            userinfo = _basic(first)
        if userinfo is not None:
            put((("Authorization", userinfo),))
    return dict(out.values())
