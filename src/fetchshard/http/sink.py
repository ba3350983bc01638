"""Where a response body goes as it arrives: the seam between the socket and the row.

A sink takes the body's chunks in order (:meth:`BodySink.write`), then either
:meth:`~BodySink.finish` (the whole body arrived: what to store) or :meth:`~BodySink.abort`
(the transfer failed or was cut: drop what was kept). Today's sink keeps the body in memory
for the Parquet row; a file sink (a ``.part`` file resumed with Range) fits the same seam.
``write`` runs on the event loop: a sink must not block it (a file sink hands its writes to a
thread).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class StoredBody:
    """What a finished sink holds: the body's size and sha256, and its bytes or its file."""

    size: int
    sha256: str
    data: bytes | None = None
    path: str | None = None


class BodySink(Protocol):
    def write(self, chunk: bytes) -> None: ...

    def finish(self) -> StoredBody: ...

    def abort(self) -> None: ...


SinkFactory = Callable[[], BodySink]


class MemorySink:
    """The body as bytes, hashed once it is whole.

    Hashed here, on the loop, not in the writer thread: hashlib releases and retakes the GIL
    per call, and a thread retaking it from a busy event loop waits up to the switch interval
    (5 ms) each time; hashing 100 rows there starved the writer (measured: 0.93 cores used).
    """

    __slots__ = ("_chunks",)

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, chunk: bytes) -> None:
        self._chunks.append(chunk)

    def finish(self) -> StoredBody:
        body = b"".join(self._chunks)
        self._chunks = []
        return StoredBody(len(body), hashlib.sha256(body).hexdigest(), data=body)

    def abort(self) -> None:
        self._chunks = []
