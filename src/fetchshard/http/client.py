"""A rank's aiohttp session, and the one place FetchConfig becomes aiohttp objects."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.request import proxy_bypass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.connector import Connection
from aiohttp.helpers import ProxyInfo, basicauth_from_netrc, netrc_from_env, proxies_from_env
from aiohttp.tracing import Trace
from yarl import URL

from fetchshard import __version__
from fetchshard.config import FetchConfig
from fetchshard.http.credentials import HeaderRules, hop_headers
from fetchshard.http.deadlines import Watch

UA_TOKEN = "fetchshard"


class BlockedAddress(OSError):
    """The host resolves only to addresses that the configuration refuses to contact."""


def is_private_address(host: str) -> bool:
    """Loopback, private, link-local (cloud metadata), multicast, reserved or unspecified."""
    ip = _ip(host)
    return ip is not None and _private(ip)


_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _ip(host: str) -> _Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _private(ip: _Address) -> bool:
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """``fetch.block_private_addresses`` with its exceptions (``fetch.allow_addresses``),
    checked on every hop's host and again on every address a connection is made to."""

    block_private: bool = False
    allowed: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_config(cls, config: FetchConfig) -> AddressPolicy:
        allowed = tuple(ipaddress.ip_network(n, strict=False) for n in config.allow_addresses)
        return cls(config.block_private_addresses, allowed)

    def refuses(self, host: str) -> bool:
        """Whether ``host``, an IP address, may not be contacted (a name: not known yet)."""
        if not self.block_private:
            return False
        ip = _ip(host)
        return ip is not None and _private(ip) and not any(ip in n for n in self.allowed)


class Resolver(AbstractResolver):
    """Static entries (like curl's --resolve), then the real resolver, then the address policy."""

    def __init__(
        self, inner: AbstractResolver, static: Mapping[str, str], policy: AddressPolicy
    ) -> None:
        self._inner = inner
        self._static = {k.lower(): v for k, v in static.items()}
        self._policy = policy

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        fixed = self._static.get(host.lower())
        if fixed is not None:
            ip = ipaddress.ip_address(fixed)
            infos: list[ResolveResult] = [
                {
                    "hostname": host,
                    "host": fixed,
                    "port": port,
                    "family": socket.AF_INET6 if ip.version == 6 else socket.AF_INET,
                    "proto": 0,
                    "flags": socket.AI_NUMERICHOST,
                }
            ]
        else:
            infos = await self._inner.resolve(host, port, family)
        if self._policy.block_private:
            infos = [i for i in infos if not self._policy.refuses(i["host"])]
            if not infos:
                raise BlockedAddress(f"{host} resolves only to private or reserved addresses")
        return infos

    async def close(self) -> None:
        await self._inner.close()


def user_agent(contact: str | None) -> str:
    """An honest User-Agent: who we are and how to reach whoever runs the crawl."""
    base = f"{UA_TOKEN}/{__version__} (+https://github.com/fetchshard/fetchshard"
    return f"{base}; {contact})" if contact else f"{base})"


def client_timeout(config: FetchConfig, factor: float = 1.0) -> aiohttp.ClientTimeout:
    """What aiohttp itself times: only connecting (once per new connection).

    The total deadline and the read timeout are checked by :class:`Watch` on one shared tick:
    aiohttp's own arm a timer per request and re-arm one at every chunk received, which cost
    7.6 % of a rank's CPU (A/B over 3 runs of 50,000 URLs, benchmarks/results/HISTORY.md).
    """
    return aiohttp.ClientTimeout(
        total=None, sock_connect=config.connect_timeout * factor, sock_read=None
    )


class Client:
    """A rank's aiohttp session, the proxy and netrc routes taken from the environment, and
    the configured headers (http/credentials.py) of each hop.

    aiohttp's own ``trust_env`` re-reads the netrc file and the proxy variables on every
    request, each in a thread: two thread hops per URL. Here both are read once, and the
    answers for each host, and the headers of a first hop to each origin, are cached.
    """

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig) -> None:
        self.session = session
        self.rules = HeaderRules.from_config(config)
        self.addresses = AddressPolicy.from_config(config)
        self._trust_env = config.trust_env
        self._proxies: dict[str, ProxyInfo] = proxies_from_env() if config.trust_env else {}
        self._netrc = netrc_from_env() if config.trust_env else None
        self._proxy_routes: dict[tuple[str, str], dict[str, Any]] = {}
        self._netrc_auth: dict[str, str | None] = {}
        self._first_hops: dict[tuple[str, str], dict[str, str]] = {}
        self.watch = Watch()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.watch.close()
        await self.session.close()

    def proxy(self, url: URL) -> dict[str, Any]:
        """Proxy arguments for a request to ``url`` (from the environment, once per host)."""
        if not self._trust_env or url.host is None:
            return {}
        key = (url.scheme, url.host)
        found = self._proxy_routes.get(key)
        if found is None:
            found = {}
            info = self._proxies.get(url.scheme)
            if info is not None and not proxy_bypass(url.host):
                found = {"proxy": info.proxy, "proxy_auth": info.proxy_auth}
            self._proxy_routes[key] = found
        return found

    def _netrc_for(self, host: str) -> str | None:
        if host not in self._netrc_auth:
            auth = None
            if self._netrc is not None:
                with contextlib.suppress(LookupError):  # no entry for this host
                    auth = basicauth_from_netrc(self._netrc, host).encode()
            self._netrc_auth[host] = auth
        return self._netrc_auth[host]

    def headers(self, chain: Sequence[URL]) -> dict[str, str]:
        """The configured headers of the request to ``chain[-1]`` (credentials.hop_headers)."""
        netrc = self._netrc_for if self._netrc is not None else None
        hop = chain[-1]
        if len(chain) > 1 or hop.user is not None:
            return hop_headers(self.rules, chain, netrc)
        key = (hop.scheme, hop.host_port_subcomponent or "")
        found = self._first_hops.get(key)
        if found is None:
            found = self._first_hops[key] = hop_headers(self.rules, chain, netrc)
        return found


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, but a pooled connection holding an answer nobody asked for (a
    server's response sent after the one we read, on the idle connection) is closed, never
    reused: the next request there would read it as its own (tests/unit/http/test_excess.py).
    request._excess catches what comes with the response itself."""

    async def _get(self, key: ConnectionKey, traces: list[Trace]) -> Connection | None:
        while True:
            conn = await super()._get(key, traces)
            proto = conn.protocol if conn is not None else None
            # _tail: what arrived while no request was reading (parsed by the next one)
            if conn is None or proto is None or not (proto._tail or len(proto)):
                return conn
            conn.close()


def make_client(config: FetchConfig) -> Client:
    """The one place where :class:`FetchConfig` becomes aiohttp objects.

    Must be called inside the running event loop that will use the client.
    """
    ssl_setting: ssl.SSLContext | bool
    if not config.verify_tls:
        ssl_setting = False
    elif config.ca_bundle:
        ssl_setting = ssl.create_default_context(cafile=config.ca_bundle)
    else:
        ssl_setting = True
    try:  # the c-ares resolver of aiohttp's speedups, when installed
        inner: AbstractResolver = aiohttp.AsyncResolver()
    except (ImportError, RuntimeError):
        inner = aiohttp.ThreadedResolver()
    connector = _Connector(
        limit=config.max_in_flight,
        limit_per_host=0,  # per-host concurrency is the scheduler's job (with overrides)
        ttl_dns_cache=300,
        ssl=ssl_setting,
        resolver=Resolver(inner, config.resolve, AddressPolicy.from_config(config)),
    )
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=client_timeout(config),
        headers={"User-Agent": user_agent(config.contact)},  # the rest per hop (Client.headers)
        trust_env=False,  # Client.route does it, once per host instead of per request
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    return Client(session, config)
