"""fetch against bytes after a response (more than its Content-Length): the attempt fails as
bad_content, the connection is closed, the next request there reads its own answer; a
response and a server that merely close are not mistaken for it. Also the messages of a
response aiohttp's parser refuses."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind
from fetchshard.http.classify import classify, describe, malformed_response
from fetchshard.http.client import BlockedAddress, make_client
from fetchshard.http.request import fetch
from fetchshard.http.sink import MemorySink
from server import Canned, CannedServer

CONFIG = FetchConfig(total_timeout=5.0)
_FAKE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nEVIL!"
_CANNED = {
    "/excess-response": Canned.response(b"0123456789", extra=_FAKE),
    "/big-excess-response": Canned.response(b"b" * 300_000, extra=_FAKE),
    "/big-excess": Canned.response(b"b" * 300_000, extra=b"x" * 100_000),
    "/excess": Canned.response(b"0123456789", extra=b"x" * 100_000),
    "/close": Canned.response(b"closing", close=True),
    # no Connection: close, but the server hangs up right after the response
    "/fin": Canned(Canned.response(b"hanging up").parts, close=True),
    "/big-fin": Canned(Canned.response(b"f" * 300_000).parts, close=True),
    "/next": Canned.response(b"next"),
    "/chunked-excess": Canned(
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n" + _FAKE,)
    ),
    "/redirect-excess": Canned.response(
        b"", status="302 Found", headers={"Location": "/next"}, extra=_FAKE
    ),
    # the excess after a pause: the client has the whole response and pools its connection
    "/late-excess-response": Canned.response(b"0123456789", extra=_FAKE, pause=0.1),
}


@pytest.fixture(scope="module")
def canned() -> Iterator[CannedServer]:
    with CannedServer(_CANNED) as server:
        yield server


class _SlowSink(MemorySink):
    """Awaits on every chunk, as the files' sink does (its writes go to a thread)."""

    async def write(self, chunk: bytes) -> None:
        await asyncio.sleep(0.02)
        await super().write(chunk)


@pytest.mark.parametrize("slow", [False, True], ids=["memory", "awaiting-sink"])
@pytest.mark.parametrize(
    ("path", "declared"),
    [("/excess-response", 10), ("/big-excess-response", 300_000), ("/big-excess", 300_000)],
)
async def test_bytes_after_the_body_fail_the_attempt_and_close_the_connection(
    canned: CannedServer, path: str, declared: int, slow: bool
) -> None:
    async with make_client(CONFIG) as client:
        sink = _SlowSink() if slow else MemorySink()
        bad = await fetch(client, canned.url(path), CONFIG, sink=sink)
        after = [await fetch(client, canned.url("/next"), CONFIG) for _ in range(3)]
    assert bad.error_kind is ErrorKind.BAD_CONTENT, bad
    assert bad.error_message == (
        f"the server sent more than its Content-Length ({declared} bytes); connection closed"
    )
    assert bad.http_status == 200 and bad.body is None
    assert [r.body for r in after] == [b"next"] * 3
    requests = canned.requests()
    bad_conn = next(c for p, c in reversed(requests) if p == path)
    assert [p for p, c in requests if c == bad_conn][-1] == path  # never used again


async def test_a_response_after_a_chunked_body_fails_too(canned: CannedServer) -> None:
    async with make_client(CONFIG) as client:
        bad = await fetch(client, canned.url("/chunked-excess"), CONFIG)
        after = await fetch(client, canned.url("/next"), CONFIG)
    assert bad.error_kind is ErrorKind.BAD_CONTENT, bad
    assert bad.error_message == (
        "the server sent bytes after the end of its response; connection closed"
    )
    assert after.body == b"next"


async def test_a_redirect_with_a_response_after_it_fails_too(canned: CannedServer) -> None:
    async with make_client(CONFIG) as client:
        bad = await fetch(client, canned.url("/redirect-excess"), CONFIG)
        after = await fetch(client, canned.url("/next"), CONFIG)
    assert bad.error_kind is ErrorKind.BAD_CONTENT, bad
    assert bad.http_status == 302
    assert bad.error_message == (
        "the server sent more than its Content-Length (0 bytes); connection closed"
    )
    assert after.body == b"next"


async def test_a_whole_response_with_the_excess_in_one_read_is_refused_by_aiohttp(
    canned: CannedServer,
) -> None:
    async with make_client(CONFIG) as client:
        bad = await fetch(client, canned.url("/excess"), CONFIG)
        after = await fetch(client, canned.url("/next"), CONFIG)
    assert bad.error_kind is ErrorKind.BAD_CONTENT, bad  # not connect: the server answered
    assert bad.http_status is None
    assert bad.error_message is not None
    assert bad.error_message.startswith("malformed response: BadStatusLine: Bad status line")
    assert len(bad.error_message) < 200
    assert after.body == b"next"


@pytest.mark.parametrize("path", ["/close", "/fin", "/big-fin", "/next"])
async def test_responses_that_end_cleanly_are_not_excess(canned: CannedServer, path: str) -> None:
    expected = {
        "/close": b"closing",
        "/fin": b"hanging up",
        "/big-fin": b"f" * 300_000,
        "/next": b"next",
    }[path]
    async with make_client(CONFIG) as client:
        for sink in (MemorySink(), _SlowSink()):
            result = await fetch(client, canned.url(path), CONFIG, sink=sink)
            assert result.ok, result.error_message
            assert result.body == expected
            await asyncio.sleep(0.05)  # the server's FIN arrives on the pooled connection
            again = await fetch(client, canned.url("/next"), CONFIG)
            assert again.body == b"next", again.error_message


async def test_a_response_sent_later_on_the_idle_connection_is_not_reused(
    canned: CannedServer,
) -> None:
    async with make_client(CONFIG) as client:
        first = await fetch(client, canned.url("/late-excess-response"), CONFIG)
        await asyncio.sleep(0.4)  # the server's late response lands on the pooled connection
        after = await fetch(client, canned.url("/next"), CONFIG)
    assert first.body == b"0123456789"  # whole: what came later is not its business
    assert after.body == b"next"  # aiohttp's own connector hands it b"EVIL!"


@pytest.mark.xfail(
    strict=True,
    reason="an unsolicited response that arrives while the next request on the connection is "
    "in flight is, to HTTP/1.1, that request's answer: nothing on the client can tell them apart",
)
async def test_a_response_sent_while_the_next_request_is_in_flight_answers_it(
    canned: CannedServer,
) -> None:
    async with make_client(CONFIG) as client:
        await fetch(client, canned.url("/late-excess-response"), CONFIG)
        after = await fetch(client, canned.url("/next"), CONFIG)
    assert after.body == b"next"  # b"EVIL!": it came first


def _parser_failure(message: str) -> aiohttp.ClientResponseError:
    """What aiohttp raises when its parser refuses a response, chained as it chains it."""
    original = LineTooLong(message.encode(), "8190")
    copy = HttpProcessingError(code=original.code, message=original.message)
    copy.__cause__ = original
    info = aiohttp.RequestInfo(URL("http://h/"), "GET", CIMultiDictProxy(CIMultiDict()))
    exc = aiohttp.ClientResponseError(info, (), status=400, message=original.message)
    exc.__cause__ = copy
    return exc


def test_a_refused_header_line_is_a_short_bad_content_message() -> None:
    exc = _parser_failure("a" * 10_000_000)
    assert classify(exc) is ErrorKind.BAD_CONTENT
    assert malformed_response(exc)
    text = describe(exc)
    assert text.startswith(
        "malformed response: a status or header line too long (LineTooLong): "
        "Got more than 8190 bytes when reading: b'aaa"
    )
    assert text.endswith("...") and len(text) < 250


def test_other_failures_are_not_malformed_responses() -> None:
    assert not malformed_response(aiohttp.ServerDisconnectedError())
    assert not malformed_response(aiohttp.ClientPayloadError("cut"))
    assert not malformed_response(ConnectionResetError(104, "reset"))


def test_a_blocked_address_at_connect_says_why() -> None:
    key = ConnectionKey("h.test", 80, False, True, None, None, None)
    exc = aiohttp.ClientConnectorDNSError(
        key, BlockedAddress("h.test resolves only to private or reserved addresses")
    )
    assert classify(exc) is ErrorKind.BLOCKED
    assert describe(exc) == (
        "BlockedAddress: h.test resolves only to private or reserved addresses"
    )
