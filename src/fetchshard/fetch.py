"""One HTTP fetch: the aiohttp session, the request, and the translation of every failure.

This is the only module that knows aiohttp's exceptions; everything past it sees a
:class:`FetchResult` whose ``error_kind`` names what went wrong.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import ipaddress
import math
import re
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.request import proxy_bypass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.helpers import ProxyInfo, basicauth_from_netrc, netrc_from_env, proxies_from_env
from yarl import URL

from fetchshard import __version__
from fetchshard.config import DEADLINE_TICK, FetchConfig
from fetchshard.errors import ErrorKind

_MAX_MESSAGE = 500
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
UA_TOKEN = "fetchshard"


# Not frozen: a frozen dataclass sets each field through object.__setattr__, several times
# the cost of a plain one, once per request on the event loop. Nothing changes a result once made.
@dataclass(slots=True)
class FetchResult:
    """What one attempt produced. ``error_kind`` is None on success."""

    error_kind: ErrorKind | None
    error_message: str | None
    http_status: int | None = None
    final_url: str | None = None
    content_type: str | None = None
    body: bytes | None = None
    sha256: str | None = None  # of ``body``
    size: int | None = None
    elapsed_ms: float = 0.0
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None


class BlockedAddress(OSError):
    """The host resolves only to addresses that the configuration refuses to contact."""


def is_private_address(host: str) -> bool:
    """Loopback, private, link-local (cloud metadata), multicast, reserved or unspecified."""
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


class Resolver(AbstractResolver):
    """Static entries (like curl's --resolve), then the real resolver, then the address policy."""

    def __init__(
        self, inner: AbstractResolver, static: Mapping[str, str], block_private: bool
    ) -> None:
        self._inner = inner
        self._static = {k.lower(): v for k, v in static.items()}
        self._block_private = block_private

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
        if self._block_private:
            infos = [i for i in infos if not is_private_address(i["host"])]
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

    The total deadline and the read timeout are checked by :class:`_Watch` on one shared tick:
    aiohttp's own arm a timer per request and re-arm one at every chunk received, which cost
    7.6 % of a rank's CPU (A/B over 3 runs of 50,000 URLs, benchmarks/README.md).
    """
    return aiohttp.ClientTimeout(
        total=None, sock_connect=config.connect_timeout * factor, sock_read=None
    )


class Client:
    """A rank's aiohttp session plus the proxy and netrc routes taken from the environment.

    aiohttp's own ``trust_env`` re-reads the netrc file and the proxy variables on every
    request, each in a thread: two thread hops per URL. Here both are read once, and the
    answer for each (scheme, host) is cached.
    """

    def __init__(self, session: aiohttp.ClientSession, config: FetchConfig) -> None:
        self.session = session
        self._trust_env = config.trust_env
        self._proxies: dict[str, ProxyInfo] = proxies_from_env() if config.trust_env else {}
        self._netrc = netrc_from_env() if config.trust_env else None
        # An explicit Authorization header wins over netrc (aiohttp refuses both at once).
        self._explicit_auth = any(k.lower() == "authorization" for k in config.headers)
        self._routes: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {}
        self.watch = _Watch()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.watch.close()
        await self.session.close()

    def route(
        self, url: URL, headers: Mapping[str, str] | None
    ) -> tuple[dict[str, Any], Mapping[str, str] | None]:
        """Proxy arguments for a request to ``url``, and its headers with netrc credentials."""
        if not self._trust_env or url.host is None:
            return {}, headers
        key = (url.scheme, url.host)
        found = self._routes.get(key)
        if found is None:
            proxy: dict[str, Any] = {}
            info = self._proxies.get(url.scheme)
            if info is not None and not proxy_bypass(url.host):
                proxy = {"proxy": info.proxy, "proxy_auth": info.proxy_auth}
            auth = None
            if self._netrc is not None and not self._explicit_auth:
                with contextlib.suppress(LookupError):  # no entry for this host
                    auth = basicauth_from_netrc(self._netrc, url.host).encode()
            found = self._routes[key] = (proxy, auth)
        proxy, auth = found
        # Credentials in the URL or an Authorization header of the request win over netrc.
        if (
            auth is None
            or url.user is not None
            or (headers is not None and any(k.lower() == "authorization" for k in headers))
        ):
            return proxy, headers
        return proxy, {**(headers or {}), "Authorization": auth}


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
    connector = aiohttp.TCPConnector(
        limit=config.max_in_flight,
        limit_per_host=0,  # per-host concurrency is the scheduler's job (with overrides)
        ttl_dns_cache=300,
        ssl=ssl_setting,
        resolver=Resolver(inner, config.resolve, config.block_private_addresses),
    )
    headers = {"User-Agent": user_agent(config.contact), **config.headers}
    session = aiohttp.ClientSession(
        connector=connector,
        timeout=client_timeout(config),
        headers=headers,
        trust_env=False,  # Client.route does it, once per host instead of per request
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )
    return Client(session, config)


def status_kind(status: int) -> ErrorKind | None:
    """The error kind of an HTTP status, or None for success."""
    if 200 <= status < 300:
        return None
    if status == 404:
        return ErrorKind.HTTP_404
    if status == 410:
        return ErrorKind.HTTP_410
    if status == 429:
        return ErrorKind.HTTP_429
    if 300 <= status < 400:
        return ErrorKind.HTTP_3XX
    if 400 <= status < 500:
        return ErrorKind.HTTP_4XX
    return ErrorKind.HTTP_5XX


def classify(exc: BaseException) -> ErrorKind:
    """Translate an exception raised while fetching into an error kind (the only such place)."""
    # Order matters: the more specific aiohttp classes derive from the general ones.
    if isinstance(exc, BlockedAddress):
        return ErrorKind.BLOCKED
    if isinstance(exc, aiohttp.TooManyRedirects):
        return ErrorKind.REDIRECT_LOOP
    if isinstance(exc, aiohttp.RedirectClientError):
        return ErrorKind.BAD_REDIRECT
    if isinstance(exc, aiohttp.InvalidUrlClientError | aiohttp.NonHttpUrlClientError):
        return ErrorKind.BAD_URL
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, BlockedAddress):
        return ErrorKind.BLOCKED
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return ErrorKind.DNS
    if isinstance(
        exc,
        aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError | ssl.SSLError,
    ):
        return ErrorKind.TLS
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return ErrorKind.CONNECT
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return ErrorKind.READ_TIMEOUT
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return ErrorKind.TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ErrorKind.CONNECT
    if isinstance(
        exc,
        aiohttp.ClientPayloadError
        | aiohttp.ServerDisconnectedError
        | aiohttp.ClientResponseError
        | aiohttp.ClientOSError,
    ):
        return ErrorKind.BAD_CONTENT
    if isinstance(exc, aiohttp.ClientError | OSError):
        return ErrorKind.CONNECT
    return ErrorKind.INTERNAL


def describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return text[:_MAX_MESSAGE]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def opt_out(values: list[str], directives: tuple[str, ...]) -> str | None:
    """The X-Robots-Tag directive that opts this response out for us, if any.

    ``noai`` applies to every crawler; ``otherbot: noai`` only to ``otherbot``.
    """
    if not directives:
        return None
    wanted = {d.lower() for d in directives}
    for value in values:
        agent: str | None = None
        for token in value.split(","):
            token = token.strip().lower()
            if ":" in token:
                head, _, rest = token.partition(":")
                if head.strip() not in wanted and " " not in head.strip():
                    agent, token = head.strip(), rest.strip()
            if token in wanted and agent in (None, "*", UA_TOKEN):
                return token
    return None


class _Tripped(Exception):
    """A guard ended the transfer; its ``tripped`` says which limit (fetch() reads it there)."""


class _Guard:
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


class _Watch:
    """Checks every transfer's guard on one shared tick.

    One timer per request (armed and cancelled thousands of times a second, and re-armed at
    every chunk for the read timeout) costs more than scanning the transfers in flight four
    times a second; a limit is caught at most one tick after it is crossed.
    """

    TICK = DEADLINE_TICK

    def __init__(self) -> None:
        self._guards: set[_Guard] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, config: FetchConfig, factor: float) -> _Guard:
        # The client lives in one loop; asking for it per request showed in profiles.
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        guard = _Guard(config, factor, loop.time(), asyncio.current_task())
        self._guards.add(guard)
        if self._handle is None:
            self._handle = loop.call_later(self.TICK, self._tick)
        return guard

    def stop(self, guard: _Guard) -> None:
        self._guards.discard(guard)

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


# URLs made only of these characters (no dot segments, no percent escapes) are the same URL
# whether yarl re-quotes them or not, so the (costly, ~2 % of the loop) re-quoting is skipped;
# tests/test_fetch.py checks the equivalence on random URLs of this alphabet.
_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PLAIN_URL = re.compile(
    rf"https?://[a-z0-9.-]+(?::{_PORT})?/[A-Za-z0-9._~/-]*(?:\?[A-Za-z0-9._~/=&-]+)?"
)


def request_url(text: str) -> URL:
    """The yarl URL for ``text``, quoted as aiohttp would quote it."""
    if _PLAIN_URL.fullmatch(text) and "/." not in text:
        return URL(text, encoded=True)
    return URL(text, encoded=False)


def check_target(url: URL, block_private: bool) -> None:
    """Refuse a URL (first or after a redirect) that policy forbids."""
    if url.scheme not in ("http", "https"):
        raise aiohttp.NonHttpUrlRedirectClientError(url)
    if block_private and url.host is not None and is_private_address(url.host):
        raise BlockedAddress(f"{url.host} is a private or reserved address")


async def fetch(
    client: Client,
    url: str,
    config: FetchConfig,
    *,
    headers: Mapping[str, str] | None = None,
    timeout_factor: float = 1.0,
) -> FetchResult:
    """GET ``url`` once (following redirects); never raises for anything the network does."""
    started = time.perf_counter()
    state: dict[str, Any] = {"status": None, "final_url": None, "content_type": None}
    guard = client.watch.start(config, timeout_factor)
    try:
        return await _fetch(
            client, request_url(url), config, headers, timeout_factor, started, guard, state
        )
    except asyncio.CancelledError:
        if guard.tripped is None or _still_cancelled():
            raise  # the rank is stopping, not our deadline
        return _failed(guard.tripped, guard.message(), state, started)
    except Exception as exc:  # every failure becomes data; cancellation still propagates
        if guard.tripped is not None:  # what the guard's close of the response made
            return _failed(guard.tripped, guard.message(), state, started)
        return _failed(classify(exc), describe(exc), state, started)
    finally:
        client.watch.stop(guard)


def _still_cancelled() -> bool:
    """Take back the guard's cancel; whether someone else cancelled the task as well."""
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)  # Python >= 3.11
    return uncancel is not None and uncancel() > 0


def _failed(kind: ErrorKind, message: str, state: dict[str, Any], started: float) -> FetchResult:
    if kind is ErrorKind.BAD_CONTENT and state["status"] is None:
        # Reset or dropped before any response: the host is not accepting requests.
        kind = ErrorKind.CONNECT
    return FetchResult(
        kind,
        message,
        state["status"],
        state["final_url"],
        state["content_type"],
        elapsed_ms=_ms(started),
    )


async def _fetch(
    client: Client,
    target: URL,
    config: FetchConfig,
    headers: Mapping[str, str] | None,
    timeout_factor: float,
    started: float,
    guard: _Guard,
    state: dict[str, Any],
) -> FetchResult:
    # The guard holds the whole chain to one total deadline; aiohttp only times connecting,
    # whose session default is left alone unless the final pass lengthens it.
    extra: dict[str, Any] = {}
    if timeout_factor != 1.0:
        extra["timeout"] = client_timeout(config, timeout_factor)
    for _hop in range(config.max_redirects + 1):
        check_target(target, config.block_private_addresses)
        proxy, hop_headers = client.route(target, headers)
        guard.watch(None)
        async with client.session.get(
            target, allow_redirects=False, headers=hop_headers, **proxy, **extra
        ) as resp:
            guard.watch(resp)
            status = state["status"] = resp.status
            state["final_url"] = str(resp.url)
            content_type = state["content_type"] = resp.headers.get("Content-Type")
            if status in _REDIRECTS and config.max_redirects > 0:
                location = resp.headers.get("Location")
                if not location:
                    raise aiohttp.InvalidUrlRedirectClientError(target, "no Location header")
                try:
                    target = resp.url.join(URL(location))
                except ValueError as exc:
                    raise aiohttp.InvalidUrlRedirectClientError(location, str(exc)) from exc
                continue
            kind = status_kind(status)
            if kind is not None:
                return FetchResult(
                    kind,
                    f"HTTP {status} {resp.reason or ''}".strip(),
                    status,
                    state["final_url"],
                    content_type,
                    elapsed_ms=_ms(started),
                    retry_after=parse_retry_after(resp.headers.get("Retry-After")),
                )
            directive = opt_out(resp.headers.getall("X-Robots-Tag", []), config.opt_out_directives)
            if directive is not None:
                return FetchResult(
                    ErrorKind.OPT_OUT,
                    f"X-Robots-Tag: {directive}",
                    status,
                    state["final_url"],
                    content_type,
                    elapsed_ms=_ms(started),
                )
            return await _read_body(resp, config, started, guard, state["final_url"], content_type)
    raise aiohttp.TooManyRedirects(
        resp.request_info, resp.history, message=f"more than {config.max_redirects} redirects"
    )


async def _read_body(
    resp: aiohttp.ClientResponse,
    config: FetchConfig,
    started: float,
    guard: _Guard,
    final_url: str,
    content_type: str | None,
) -> FetchResult:
    limit = config.max_body_bytes
    declared = resp.content_length
    if declared is not None and declared > limit:
        return _too_large(f"Content-Length {declared}", limit, resp, started)
    chunks: list[bytes] = []
    size = 0
    # Counted after decompression, so a gzip bomb stops at the cap like any big body. Chunks
    # as they came off the socket: iter_chunked(n) re-slices them (a copy each) to n bytes.
    async for chunk in resp.content.iter_any():
        size += len(chunk)
        guard.bytes = size
        if size > limit:
            return _too_large("body", limit, resp, started)
        chunks.append(chunk)
    if guard.tripped is not None:
        raise _Tripped()
    body = b"".join(chunks)
    return FetchResult(
        None,
        None,
        resp.status,
        final_url,
        content_type,
        body=body,
        # Here, not in the writer thread: hashlib releases and retakes the GIL per call, and
        # a thread retaking it from a busy event loop waits up to the switch interval (5 ms)
        # each time; hashing 100 rows there starved the writer (measured: 0.93 cores used).
        sha256=hashlib.sha256(body).hexdigest(),
        size=size,
        elapsed_ms=_ms(started),
    )


def _too_large(said: str, limit: int, resp: aiohttp.ClientResponse, started: float) -> FetchResult:
    return FetchResult(
        ErrorKind.TOO_LARGE,
        f"{said} exceeds max_body_bytes {limit}; transfer cut",
        resp.status,
        str(resp.url),
        resp.headers.get("Content-Type"),
        elapsed_ms=_ms(started),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
