"""What went wrong, as an ErrorKind: the only place that knows aiohttp's exceptions."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError, LineTooLong

from fetchshard.errors import ErrorKind
from fetchshard.http.client import BlockedAddress
from fetchshard.redact import mask_userinfo

_MAX_MESSAGE = 500
_MAX_PARSER_MESSAGE = 120  # aiohttp's parser quotes the line it refused: up to 10 MB of it


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


def _parser_error(exc: BaseException) -> HttpProcessingError | None:
    """The HTTP parser's own error behind ``exc``: aiohttp raises a ClientResponseError from
    a copy of it, itself from the parser's (LineTooLong, BadStatusLine, ...)."""
    if not isinstance(exc, aiohttp.ClientResponseError):
        return None
    found = None
    cause = exc.__cause__
    for _ in range(3):
        if not isinstance(cause, HttpProcessingError):
            break
        found, cause = cause, cause.__cause__
    return found


def malformed_response(exc: BaseException) -> bool:
    """Whether ``exc`` says the server answered with bytes that are not HTTP (a header line
    over aiohttp's 8190 bytes, garbage, bytes after the response), not that it went away."""
    return _parser_error(exc) is not None


def describe(exc: BaseException) -> str:
    """The row's error message for ``exc`` (a URL's userinfo hidden)."""
    parser_error = _parser_error(exc)
    if parser_error is not None:
        said = " ".join(parser_error.message.split())
        if len(said) > _MAX_PARSER_MESSAGE:
            said = said[:_MAX_PARSER_MESSAGE] + "..."
        name = type(parser_error).__name__
        if isinstance(parser_error, LineTooLong):
            name = f"a status or header line too long ({name})"
        return mask_userinfo(f"malformed response: {name}: {said}")
    if isinstance(exc, aiohttp.ClientConnectorError) and isinstance(exc.os_error, BlockedAddress):
        exc = exc.os_error  # aiohttp's own text: "Cannot connect to host h:80 ssl:default [None]"
    text = str(exc) or type(exc).__name__
    if type(exc).__name__ not in text:
        text = f"{type(exc).__name__}: {text}"
    return mask_userinfo(text)[:_MAX_MESSAGE]
