"""Where a response body goes as it arrives: the seam between the socket and the row.

A sink says what to add to the request (:meth:`BodySink.request_headers`: a file sink
resuming a ``.part`` asks for the rest with ``Range``), hears the final response's status and
headers (:meth:`~BodySink.begin`), takes the body's chunks in order (:meth:`~BodySink.write`),
then either :meth:`~BodySink.finish` (the whole body arrived: what to store) or
:meth:`~BodySink.abort` (the transfer failed or was cut). ``MemorySink`` keeps the body for the
Parquet row; ``output/files.py``'s ``FileSink`` streams it to a ``.part`` file through a thread.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from fetchshard.http.content import hexdigest

HEAD = 512  # leading bytes a file sink keeps for the content checks (http/content.py)


@dataclass(slots=True)
class StoredBody:
    """What a finished sink holds: the body's size and sha256, and its bytes or its file."""

    size: int
    sha256: str
    data: bytes | None = None
    path: str | None = None  # a file sink's: where the file will be placed
    head: bytes = b""  # the first bytes (all of them, in memory)
    digests: dict[str, str] = field(default_factory=dict)  # other algorithms asked for


class BodySink(Protocol):
    def request_headers(self) -> Mapping[str, str]: ...

    async def begin(self, status: int, headers: Mapping[str, str]) -> str | None:
        """Ready for the body of this response; or why it cannot be used (a bad_content
        message)."""
        ...

    def limit(self, default: int) -> int:
        """The most bytes this response's body may have (``default``: max_body_bytes)."""
        ...

    async def write(self, chunk: bytes) -> None: ...

    async def finish(self) -> StoredBody: ...

    def abort(self) -> None: ...


SinkFactory = Callable[[], BodySink]
_NO_HEADERS: Mapping[str, str] = {}


class MemorySink:
    """The body as bytes, hashed once it is whole.

    Hashed here, on the loop, not in the writer thread: hashlib releases and retakes the GIL
    per call, and a thread retaking it from a busy event loop waits up to the switch interval
    (5 ms) each time; hashing 100 rows there starved the writer (measured: 0.93 cores used).
    """

    __slots__ = ("_algorithms", "_chunks")

    def __init__(self, algorithms: tuple[str, ...] = ()) -> None:
        self._chunks: list[bytes] = []
        self._algorithms = algorithms  # besides sha256: md5, sha1 for the input's checks

    def request_headers(self) -> Mapping[str, str]:
        return _NO_HEADERS

    async def begin(self, status: int, headers: Mapping[str, str]) -> str | None:
        return None

    def limit(self, default: int) -> int:
        return default

    async def write(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    async def finish(self) -> StoredBody:
        body = b"".join(self._chunks)
        self._chunks = []
        digests = {a: hexdigest(a, body) for a in self._algorithms}
        sha = hashlib.sha256(body).hexdigest()
        return StoredBody(len(body), sha, data=body, head=body[:HEAD], digests=digests)

    def abort(self) -> None:
        self._chunks = []
