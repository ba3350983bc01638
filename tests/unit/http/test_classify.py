"""The translation of aiohttp, asyncio, ssl and OS exceptions into error kinds."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from fetchshard.errors import ErrorKind
from fetchshard.http.classify import classify, describe, status_kind
from fetchshard.http.client import BlockedAddress
from fetchshard.http.headers import opt_out, parse_ratelimit, parse_retry_after, wait_asked

URL_ = URL("http://h.test/x")
INFO = aiohttp.RequestInfo(URL_, "GET", CIMultiDictProxy(CIMultiDict()), URL_)


def connector(os_error: OSError, cls: type[aiohttp.ClientConnectorError]) -> BaseException:
    return cls(None, os_error)  # type: ignore[arg-type]


CASES: list[tuple[BaseException, ErrorKind]] = [
    (BlockedAddress("h.test resolves only to private addresses"), ErrorKind.BLOCKED),
    (connector(BlockedAddress("private"), aiohttp.ClientConnectorError), ErrorKind.BLOCKED),
    (aiohttp.TooManyRedirects(INFO, ()), ErrorKind.REDIRECT_LOOP),
    (aiohttp.InvalidUrlRedirectClientError(URL_, "no Location header"), ErrorKind.BAD_REDIRECT),
    (aiohttp.NonHttpUrlRedirectClientError(URL("ftp://h.test/")), ErrorKind.BAD_REDIRECT),
    (aiohttp.InvalidUrlClientError(URL_), ErrorKind.BAD_URL),
    (aiohttp.NonHttpUrlClientError(URL("ftp://h.test/")), ErrorKind.BAD_URL),
    (connector(OSError("no such host"), aiohttp.ClientConnectorDNSError), ErrorKind.DNS),
    (
        aiohttp.ClientConnectorCertificateError(None, ssl.SSLCertVerificationError("bad cert")),  # type: ignore[arg-type]
        ErrorKind.TLS,
    ),
    (ssl.SSLError("handshake"), ErrorKind.TLS),
    (aiohttp.ConnectionTimeoutError("connect"), ErrorKind.CONNECT),
    (aiohttp.SocketTimeoutError("read"), ErrorKind.READ_TIMEOUT),
    (asyncio.TimeoutError(), ErrorKind.TIMEOUT),
    (TimeoutError(), ErrorKind.TIMEOUT),
    (
        connector(ConnectionRefusedError(111, "refused"), aiohttp.ClientConnectorError),
        ErrorKind.CONNECT,
    ),
    (aiohttp.ClientPayloadError("short body"), ErrorKind.BAD_CONTENT),
    (aiohttp.ServerDisconnectedError(), ErrorKind.BAD_CONTENT),
    (aiohttp.ClientResponseError(INFO, ()), ErrorKind.BAD_CONTENT),
    (aiohttp.ClientOSError(104, "reset"), ErrorKind.BAD_CONTENT),
    (aiohttp.ClientError("other"), ErrorKind.CONNECT),
    (ConnectionResetError(104, "reset by peer"), ErrorKind.CONNECT),
    (OSError("network is unreachable"), ErrorKind.CONNECT),
    (ValueError("a bug"), ErrorKind.INTERNAL),
    (KeyError("a bug"), ErrorKind.INTERNAL),
]


@pytest.mark.parametrize(("exc", "kind"), CASES, ids=[type(e).__name__ for e, _ in CASES])
def test_each_exception_becomes_its_kind(exc: BaseException, kind: ErrorKind) -> None:
    assert classify(exc) is kind


def test_every_kind_a_request_can_end_with_is_reached() -> None:
    """Kinds not produced by classify come from elsewhere (status, guard, planning...)."""
    reached = {kind for _, kind in CASES}
    elsewhere = {
        ErrorKind.ROBOTS_TXT,  # robots.txt, in the job
        ErrorKind.TOO_SLOW,  # the guard
        ErrorKind.TOO_LARGE,  # the body reader
        ErrorKind.OPT_OUT,  # X-Robots-Tag
        ErrorKind.HOST_UNREACHABLE,  # host health
        ErrorKind.RATE_LIMITED,  # host health
        ErrorKind.INTERRUPTED,  # the rank stopping
        ErrorKind.HASH_MISMATCH,  # the input's expected hash (http/content.py, in the job)
        ErrorKind.CHECKSUM_MISMATCH,  # the input's expected size and checksum (likewise)
        ErrorKind.TOO_SMALL,  # fetch.min_body_bytes, in the job
        ErrorKind.DECODE,  # the images stage (images/transform.py)
        ErrorKind.FILTERED,  # the images stage's limits
        ErrorKind.EXPIRED_REDIRECT,  # request.py: 401/403 after a cross-origin redirect
        ErrorKind.BAD_PATH,  # the input's file path (output/targets.py), in the job
        *(status_kind(s) for s in (301, 404, 410, 429, 418, 503)),
    }
    assert reached | elsewhere == set(ErrorKind)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (204, None),
        (299, None),
        (301, ErrorKind.HTTP_3XX),
        (304, ErrorKind.HTTP_3XX),
        (400, ErrorKind.HTTP_4XX),
        (404, ErrorKind.HTTP_404),
        (410, ErrorKind.HTTP_410),
        (429, ErrorKind.HTTP_429),
        (451, ErrorKind.HTTP_4XX),
        (500, ErrorKind.HTTP_5XX),
        (503, ErrorKind.HTTP_5XX),
        (599, ErrorKind.HTTP_5XX),
    ],
)
def test_status_kinds(status: int, kind: ErrorKind | None) -> None:
    assert status_kind(status) is kind


def test_describe_names_the_exception_and_is_bounded() -> None:
    assert describe(ConnectionResetError(104, "reset")) == "ConnectionResetError: [Errno 104] reset"
    assert (
        describe(aiohttp.ServerDisconnectedError())
        == "ServerDisconnectedError: Server disconnected"
    )
    assert describe(asyncio.TimeoutError()) == "TimeoutError"
    assert len(describe(ValueError("x" * 2000))) == 500


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 5 ") == 5.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=1445412480.0) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None


def test_opt_out_for_everyone_or_for_us_only() -> None:
    directives = ("noai", "noimageai")
    assert opt_out(["noai"], directives) == "noai"
    assert opt_out(["fetchshard: noimageai"], directives) == "noimageai"
    assert opt_out(["otherbot: noai"], directives) is None
    assert opt_out(["noindex, nofollow"], directives) is None
    assert opt_out(["noai"], ()) is None


def test_a_ratelimit_header_with_nothing_remaining_asks_to_wait_for_its_reset() -> None:
    """draft-ietf-httpapi-ratelimit-headers, as the Hugging Face Hub sends it with a 429."""
    assert parse_ratelimit('"resolvers";r=0;t=2') == 3.0  # the reset, and a second
    assert parse_ratelimit('"api";r=12;t=40') is None  # some left: no wait
    assert parse_ratelimit('"api";r=3;t=40, "resolvers";r=0;t=172') == 173.0
    assert parse_ratelimit('"a";r=0;t=5, "b";r=0;t=9') == 10.0  # the longest
    for broken in (None, "", "garbage", '"x";r=0', '"x";t=5', '"x";r=zero;t=5', '"x";r=0;t=-1'):
        assert parse_ratelimit(broken) is None, broken
    assert wait_asked({"RateLimit": '"resolvers";r=0;t=2', "Retry-After": "1"}) == 3.0
    assert wait_asked({"Retry-After": "7", "RateLimit": '"resolvers";r=0;t=2'}) == 7.0
    assert wait_asked({}) is None
