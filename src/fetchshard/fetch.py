"""One HTTP fetch: the aiohttp session, the request, and the translation of every failure.

This is the only module that knows aiohttp's exceptions; everything past it sees a
:class:`FetchResult` whose ``error_kind`` names what went wrong.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import ssl
import time
from dataclasses import dataclass

import aiohttp

from fetchshard import __version__
from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind

_CHUNK = 1 << 16
_MAX_MESSAGE = 500


@dataclass(frozen=True, slots=True)
class FetchResult:
    """What one attempt produced. ``error_kind`` is None on success."""

    error_kind: ErrorKind | None
    error_message: str | None
    http_status: int | None = None
    final_url: str | None = None
    content_type: str | None = None
    body: bytes | None = None
    size: int | None = None
    sha256: str | None = None
    elapsed_ms: float = 0.0
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error_kind is None


def user_agent(contact: str | None) -> str:
    """An honest User-Agent: who we are and how to reach whoever runs the crawl."""
    base = f"fetchshard/{__version__} (+https://github.com/fetchshard/fetchshard"
    return f"{base}; {contact})" if contact else f"{base})"


def make_session(config: FetchConfig) -> aiohttp.ClientSession:
    """The one place where :class:`FetchConfig` becomes aiohttp objects.

    Must be called inside the running event loop that will use the session.
    """
    timeout = aiohttp.ClientTimeout(
        total=config.total_timeout,
        sock_connect=config.connect_timeout,
        sock_read=config.read_timeout,
    )
    ssl_context: ssl.SSLContext | bool = config.verify_tls
    connector = aiohttp.TCPConnector(
        limit=config.max_in_flight,
        limit_per_host=config.per_host_concurrency,
        ttl_dns_cache=300,
        ssl=ssl_context,
    )
    headers = {"User-Agent": user_agent(config.contact), **config.headers}
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=headers,
        trust_env=config.trust_env,
        raise_for_status=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


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
    if isinstance(exc, aiohttp.TooManyRedirects | aiohttp.RedirectClientError):
        return ErrorKind.REDIRECT
    if isinstance(exc, aiohttp.InvalidUrlClientError | aiohttp.NonHttpUrlClientError):
        return ErrorKind.BAD_URL
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
        return ErrorKind.BAD_RESPONSE
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


async def fetch(
    session: aiohttp.ClientSession, url: str, config: FetchConfig, *, keep_body: bool = True
) -> FetchResult:
    """GET ``url`` once; never raises for anything the network or server does."""
    started = time.perf_counter()
    status: int | None = None
    final_url: str | None = None
    content_type: str | None = None
    retry_after: float | None = None
    try:
        async with session.get(
            url,
            allow_redirects=config.max_redirects > 0,
            max_redirects=max(config.max_redirects, 1),
        ) as resp:
            status = resp.status
            final_url = str(resp.url)
            content_type = resp.headers.get("Content-Type")
            kind = status_kind(status)
            if kind is not None:
                retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                return FetchResult(
                    kind,
                    f"HTTP {status} {resp.reason or ''}".strip(),
                    status,
                    final_url,
                    content_type,
                    elapsed_ms=_ms(started),
                    retry_after=retry_after,
                )
            declared = resp.content_length
            limit = config.max_body_bytes
            if declared is not None and declared > limit:
                return _too_large(declared, limit, status, final_url, content_type, started)
            digest = hashlib.sha256()
            chunks: list[bytes] = []
            size = 0
            async for chunk in resp.content.iter_chunked(_CHUNK):
                size += len(chunk)
                if size > limit:
                    return _too_large(None, limit, status, final_url, content_type, started)
                digest.update(chunk)
                if keep_body:
                    chunks.append(chunk)
            body = b"".join(chunks) if keep_body else None
            return FetchResult(
                None,
                None,
                status,
                final_url,
                content_type,
                body=body,
                size=size,
                sha256=digest.hexdigest(),
                elapsed_ms=_ms(started),
            )
    except Exception as exc:  # every failure becomes data; cancellation still propagates
        return FetchResult(
            classify(exc), describe(exc), status, final_url, content_type, elapsed_ms=_ms(started)
        )


def _too_large(
    declared: int | None,
    limit: int,
    status: int,
    final_url: str | None,
    content_type: str | None,
    started: float,
) -> FetchResult:
    said = f"Content-Length {declared}" if declared is not None else "body"
    return FetchResult(
        ErrorKind.TOO_LARGE,
        f"{said} exceeds max_body_bytes {limit}; transfer cut",
        status,
        final_url,
        content_type,
        elapsed_ms=_ms(started),
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000.0, 3)
