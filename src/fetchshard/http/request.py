"""One HTTP fetch: the request, its redirects, its body into a sink, and every failure as data.

Everything past this module sees a :class:`FetchResult` whose ``error_kind`` names what went
wrong (http/classify.py translates aiohttp's exceptions).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError
from yarl import URL

from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind, StorageError
from fetchshard.http.classify import classify, describe, malformed_response, status_kind
from fetchshard.http.client import AddressPolicy, BlockedAddress, Client, client_timeout
from fetchshard.http.credentials import origin_of
from fetchshard.http.deadlines import Guard, Tripped
from fetchshard.http.headers import opt_out, wait_asked
from fetchshard.http.sink import BodySink, MemorySink, StoredBody
from fetchshard.urls import host_matches

_REDIRECTS = frozenset({301, 302, 303, 307, 308})


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
    body: bytes | None = None  # in memory (MemorySink)
    path: str | None = None  # or in a file, by a sink that writes one
    sha256: str | None = None  # of the body
    size: int | None = None
    elapsed_ms: float = 0.0
    retry_after: float | None = None
    head: bytes = b""  # the body's first bytes (http/sink.py HEAD), for the content checks
    digests: dict[str, str] | None = None  # the body's md5/sha1 when the input checks them

    @classmethod
    def whole(
        cls,
        status: int,
        final_url: str | None,
        content_type: str | None,
        stored: StoredBody,
        started: float,
    ) -> FetchResult:
        """A body that arrived whole, as its sink stored it."""
        return cls(
            None,
            None,
            status,
            final_url,
            content_type,
            body=stored.data,
            path=stored.path,
            sha256=stored.sha256,
            size=stored.size,
            elapsed_ms=elapsed_ms(started),
            head=stored.head,
            digests=stored.digests,
        )

    @property
    def ok(self) -> bool:
        return self.error_kind is None


# URLs made only of these characters (no dot segments, no percent escapes) are the same URL
# whether yarl re-quotes them or not, so the (costly, ~2 % of the loop) re-quoting is skipped;
# tests/unit/http/test_request.py checks the equivalence on random URLs of this alphabet.
_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
_PLAIN_URL = re.compile(
    rf"https?://[a-z0-9.-]+(?::{_PORT})?/[A-Za-z0-9._~/-]*(?:\?[A-Za-z0-9._~/=&-]+)?"
)


def request_url(text: str) -> URL:
    """The yarl URL for ``text``, quoted as aiohttp would quote it."""
    if _PLAIN_URL.fullmatch(text) and "/." not in text:
        return URL(text, encoded=True)
    return URL(text, encoded=False)


def check_target(url: URL, config: FetchConfig, addresses: AddressPolicy) -> None:
    """Refuse a hop (the first or one a redirect asks for) that policy forbids; a host name's
    addresses are checked again when connecting (client.Resolver)."""
    if url.scheme not in ("http", "https"):
        raise aiohttp.NonHttpUrlRedirectClientError(url)
    host = url.host_port_subcomponent
    if host is None:
        raise aiohttp.InvalidUrlRedirectClientError(url, "no host")
    if config.block_hosts and host_matches(host, config.block_hosts):
        raise BlockedAddress(f"{host} is in fetch.block_hosts")
    if url.host is not None and addresses.refuses(url.host):
        raise BlockedAddress(f"{url.host} is a private or reserved address")


async def fetch(
    client: Client,
    url: str,
    config: FetchConfig,
    *,
    timeout_factor: float = 1.0,
    sink: BodySink | None = None,
) -> FetchResult:
    """GET ``url`` once (following redirects), its body into ``sink`` (a new MemorySink by
    default); never raises for anything the network does. A :class:`StorageError` from the
    sink (the disk is full) is not the network's and propagates. Each hop carries the
    headers credentials.hop_headers gives it, plus the sink's (Range)."""
    started = time.perf_counter()
    headers: Mapping[str, str] | None = None
    if sink is None:
        sink = MemorySink()
    else:
        headers = sink.request_headers() or None
    state: dict[str, Any] = {"status": None, "final_url": None, "content_type": None}
    guard = client.watch.start(config, timeout_factor)
    try:
        return await _fetch(
            client, request_url(url), config, headers, timeout_factor, started, guard, state, sink
        )
    except StorageError:
        raise
    except asyncio.CancelledError:
        if guard.tripped is None or _still_cancelled():
            raise  # the rank is stopping, not our deadline
        return _failed(guard.tripped, guard.message(), state, started)
    except Exception as exc:  # every failure becomes data; cancellation still propagates
        if guard.tripped is not None:  # what the guard's close of the response made
            return _failed(guard.tripped, guard.message(), state, started)
        return _failed(
            classify(exc), describe(exc), state, started, answered=malformed_response(exc)
        )
    finally:
        client.watch.stop(guard)


def _still_cancelled() -> bool:
    """Take back the guard's cancel; whether someone else cancelled the task as well."""
    task = asyncio.current_task()
    uncancel = getattr(task, "uncancel", None)  # Python >= 3.11
    return uncancel is not None and uncancel() > 0


def _failed(
    kind: ErrorKind,
    message: str,
    state: dict[str, Any],
    started: float,
    *,
    answered: bool = False,
) -> FetchResult:
    if kind is ErrorKind.BAD_CONTENT and state["status"] is None and not answered:
        # Reset or dropped before any response: the host is not accepting requests. Bytes that
        # are not HTTP (a 10 MB header line) are an answer, and bad_content stays.
        kind = ErrorKind.CONNECT
    return FetchResult(
        kind,
        message,
        state["status"],
        state["final_url"],
        state["content_type"],
        elapsed_ms=elapsed_ms(started),
    )


async def _fetch(
    client: Client,
    target: URL,
    config: FetchConfig,
    headers: Mapping[str, str] | None,
    timeout_factor: float,
    started: float,
    guard: Guard,
    state: dict[str, Any],
    sink: BodySink,
) -> FetchResult:
    # The guard holds the whole chain to one total deadline; aiohttp only times connecting,
    # whose session default is left alone unless the final pass lengthens it.
    extra: dict[str, Any] = {}
    if timeout_factor != 1.0:
        extra["timeout"] = client_timeout(config, timeout_factor)
    chain = [target]
    for _hop in range(config.max_redirects + 1):
        check_target(target, config, client.addresses)
        hop_headers = client.headers(chain)
        if headers:
            hop_headers = {**hop_headers, **headers}
        if target.user is not None or target.password is not None:
            target = target.with_user(None)  # its credentials are in hop_headers
        guard.watch(None)
        async with client.session.get(
            target, allow_redirects=False, headers=hop_headers, **client.proxy(target), **extra
        ) as resp:
            guard.watch(resp)
            status = state["status"] = resp.status
            state["final_url"] = str(resp.url)
            content_type = state["content_type"] = resp.headers.get("Content-Type")
            if status in _REDIRECTS and config.max_redirects > 0:
                if _excess(resp, _parser_of(resp)):  # no await since the response came
                    return _overlong(resp, state["final_url"], content_type, started)
                location = resp.headers.get("Location")
                if not location:
                    raise aiohttp.InvalidUrlRedirectClientError(target, "no Location header")
                try:
                    target = chain[-1].join(URL(location))  # keeps userinfo on a relative one
                except ValueError as exc:
                    raise aiohttp.InvalidUrlRedirectClientError(location, str(exc)) from exc
                chain.append(target)
                continue
            parser = _parser_of(resp)  # before any await: see _excess
            problem = await sink.begin(status, resp.headers)
            if problem is not None:  # a resumed transfer the server would not continue
                return FetchResult(
                    ErrorKind.BAD_CONTENT, problem, status, state["final_url"], content_type
                )
            kind = status_kind(status)
            if kind is not None:
                message = f"HTTP {status} {resp.reason or ''}".strip()
                if status in (401, 403) and origin_of(target) != origin_of(chain[0]):
                    # A redirect's signed link refused: most likely expired; the input URL
                    # gives a fresh one (the Hub's resolve -> its CDN).
                    kind = ErrorKind.EXPIRED_REDIRECT
                    message += f" from {target.host} after a redirect (an expired link?)"
                return FetchResult(
                    kind,
                    message,
                    status,
                    state["final_url"],
                    content_type,
                    elapsed_ms=elapsed_ms(started),
                    retry_after=wait_asked(resp.headers),
                )
            directive = opt_out(resp.headers.getall("X-Robots-Tag", []), config.opt_out_directives)
            if directive is not None:
                return FetchResult(
                    ErrorKind.OPT_OUT,
                    f"X-Robots-Tag: {directive}",
                    status,
                    state["final_url"],
                    content_type,
                    elapsed_ms=elapsed_ms(started),
                )
            return await _read_body(
                resp, config, started, guard, state["final_url"], content_type, sink, parser
            )
    raise aiohttp.TooManyRedirects(
        resp.request_info, resp.history, message=f"more than {config.max_redirects} redirects"
    )


async def _read_body(
    resp: aiohttp.ClientResponse,
    config: FetchConfig,
    started: float,
    guard: Guard,
    final_url: str,
    content_type: str | None,
    sink: BodySink,
    parser: object,
) -> FetchResult:
    limit = sink.limit(config.max_body_bytes)
    declared = resp.content_length
    if declared is not None and declared > limit:
        sink.abort()
        return _too_large(f"Content-Length {declared}", limit, resp, started)
    size = 0
    try:
        # Counted after decompression, so a gzip bomb stops at the cap like any big body.
        # Chunks as they came off the socket: iter_chunked(n) re-slices them (a copy each).
        async for chunk in resp.content.iter_any():
            size += len(chunk)
            guard.bytes = size
            if size > limit:
                sink.abort()
                return _too_large("body", limit, resp, started)
            await sink.write(chunk)
        if guard.tripped is not None:
            raise Tripped()
        if _excess(resp, parser):
            sink.abort()
            return _overlong(resp, final_url, content_type, started)
        stored = await sink.finish()
    except BaseException:
        sink.abort()
        raise
    return FetchResult.whole(resp.status, final_url, content_type, stored, started)


def _parser_of(resp: aiohttp.ClientResponse) -> object:
    """The parser reading ``resp``'s connection now (aiohttp makes one per request)."""
    proto = resp._protocol
    return None if proto is None else proto._parser


def _excess(resp: aiohttp.ClientResponse, parser: object) -> bool:
    """Whether the connection had more bytes than ``resp`` (whose body is read), and if so
    close it.

    aiohttp hands a connection back to the pool when a body's last byte is parsed, before the
    rest of that read is: a whole response after it is queued on the pooled connection, and
    the next request there reads it as its own answer (seen: a body of another URL stored);
    bytes that are not HTTP fail the parser (the connection is closed, ``resp`` looks whole).
    Both show here, on the connection's queue and exception. Bytes of a later read do not: a
    whole response arriving on the idle connection is the connector's to refuse
    (client._Connector closes such a connection instead of reusing it).
    When the connection has since gone to another request (a new parser; ``None``: closed
    since), what it holds is that request's, not ours.
    On every response, a few attribute loads: 0.12 us with _parser_of, measured (through the
    public ``len(proto)`` and ``proto.exception()``, 0.4 us).
    """
    proto = resp._protocol
    if proto is None or not (proto._buffer or proto._exception is not None):
        return False
    if proto._parser is not parser and proto._parser is not None:
        return False
    if proto._buffer or isinstance(proto._exception, HttpProcessingError):
        proto.close()  # never to be read again: not by the next request to this host
        return True
    return False


def _overlong(
    resp: aiohttp.ClientResponse, final_url: str, content_type: str | None, started: float
) -> FetchResult:
    declared = resp.content_length
    said = (
        f"more than its Content-Length ({declared} bytes)"
        if declared is not None
        else "bytes after the end of its response"
    )
    return FetchResult(
        ErrorKind.BAD_CONTENT,
        f"the server sent {said}; connection closed",
        resp.status,
        final_url,
        content_type,
        elapsed_ms=elapsed_ms(started),
    )


def _too_large(said: str, limit: int, resp: aiohttp.ClientResponse, started: float) -> FetchResult:
    return FetchResult(
        ErrorKind.TOO_LARGE,
        f"{said} exceeds max_body_bytes {limit}; transfer cut",
        resp.status,
        str(resp.url),
        resp.headers.get("Content-Type"),
        elapsed_ms=elapsed_ms(started),
    )


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (time.perf_counter)."""
    return round((time.perf_counter() - started) * 1000.0, 3)
