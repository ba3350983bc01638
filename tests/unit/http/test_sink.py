"""The body sink: where a response's bytes go between the socket and the row."""

from __future__ import annotations

import hashlib
from typing import ClassVar

from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind
from fetchshard.http.client import make_client
from fetchshard.http.request import fetch
from fetchshard.http.sink import MemorySink, StoredBody
from server import RunningServer


class Recording:
    """A sink that keeps nothing but what it was told (as a file sink would)."""

    made: ClassVar[list[Recording]] = []

    def __init__(self) -> None:
        self.chunks = 0
        self.size = 0
        self.digest = hashlib.sha256()
        self.finished = self.aborted = False
        Recording.made.append(self)

    def write(self, chunk: bytes) -> None:
        self.chunks += 1
        self.size += len(chunk)
        self.digest.update(chunk)

    def finish(self) -> StoredBody:
        self.finished = True
        return StoredBody(self.size, self.digest.hexdigest(), path="/where/it/went")

    def abort(self) -> None:
        self.aborted = True


def test_the_memory_sink_joins_and_hashes() -> None:
    sink = MemorySink()
    for part in (b"ab", b"", b"cd"):
        sink.write(part)
    stored = sink.finish()
    assert stored == StoredBody(4, hashlib.sha256(b"abcd").hexdigest(), data=b"abcd")


async def test_a_body_streams_into_the_sink_the_fetch_names(server: RunningServer) -> None:
    Recording.made.clear()
    async with make_client(FetchConfig()) as client:
        result = await fetch(client, server.url("/big/3000000"), FetchConfig(), sink=Recording)
    (sink,) = Recording.made
    assert result.ok and sink.finished and not sink.aborted and sink.chunks > 1
    assert result.body is None and result.path == "/where/it/went"
    assert result.size == sink.size == 3_000_000 and result.sha256 == sink.digest.hexdigest()


async def test_a_cut_transfer_aborts_its_sink(server: RunningServer) -> None:
    Recording.made.clear()
    config = FetchConfig(max_body_bytes=100_000)
    async with make_client(config) as client:
        declared = await fetch(client, server.url("/big/3000000"), config, sink=Recording)
        streamed = await fetch(client, server.url("/big-nolength/3000000"), config, sink=Recording)
        broken = await fetch(client, server.url("/wrong-length/5000/100"), config, sink=Recording)
    assert declared.error_kind is streamed.error_kind is ErrorKind.TOO_LARGE
    assert broken.error_kind is ErrorKind.BAD_CONTENT
    assert [(s.aborted, s.finished) for s in Recording.made] == [(True, False)] * 3
