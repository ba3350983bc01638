"""The body sink: where a response's bytes go between the socket and the row."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
        self.kept: list[bytes] = []
        Recording.made.append(self)

    def request_headers(self) -> Mapping[str, str]:
        return {"X-Sink": "recording"}

    async def begin(self, status: int, headers: Mapping[str, str]) -> str | None:
        self.status = status
        return None

    def limit(self, default: int) -> int:
        return default

    async def write(self, chunk: bytes) -> None:
        self.chunks += 1
        self.size += len(chunk)
        self.digest.update(chunk)
        self.kept.append(chunk)

    async def finish(self) -> StoredBody:
        self.finished = True
        return StoredBody(self.size, self.digest.hexdigest(), path="/where/it/went")

    def abort(self) -> None:
        self.aborted = True


async def test_the_memory_sink_joins_and_hashes() -> None:
    sink = MemorySink(("md5",))
    assert await sink.begin(200, {}) is None and sink.request_headers() == {}
    for part in (b"ab", b"", b"cd"):
        await sink.write(part)
    stored = await sink.finish()
    digests = {"md5": hashlib.md5(b"abcd").hexdigest()}
    sha = hashlib.sha256(b"abcd").hexdigest()
    assert stored == StoredBody(4, sha, data=b"abcd", head=b"abcd", digests=digests)


async def test_a_body_streams_into_the_sink_the_fetch_names(server: RunningServer) -> None:
    Recording.made.clear()
    async with make_client(FetchConfig()) as client:
        result = await fetch(client, server.url("/big/3000000"), FetchConfig(), sink=Recording())
    (sink,) = Recording.made
    assert sink.status == 200
    assert result.ok and sink.finished and not sink.aborted and sink.chunks > 1
    assert result.body is None and result.path == "/where/it/went"
    assert result.size == sink.size == 3_000_000 and result.sha256 == sink.digest.hexdigest()


async def test_a_cut_transfer_aborts_its_sink(server: RunningServer) -> None:
    Recording.made.clear()
    config = FetchConfig(max_body_bytes=100_000)
    async with make_client(config) as client:
        declared = await fetch(client, server.url("/big/3000000"), config, sink=Recording())
        streamed = await fetch(
            client, server.url("/big-nolength/3000000"), config, sink=Recording()
        )
        broken = await fetch(client, server.url("/wrong-length/5000/100"), config, sink=Recording())
    assert declared.error_kind is streamed.error_kind is ErrorKind.TOO_LARGE
    assert broken.error_kind is ErrorKind.BAD_CONTENT
    assert [(s.aborted, s.finished) for s in Recording.made] == [(True, False)] * 3


async def test_the_sink_adds_its_headers_to_the_request(server: RunningServer) -> None:
    async with make_client(FetchConfig()) as client:
        result = await fetch(client, server.url("/echo-headers"), FetchConfig(), sink=Recording())
    assert result.ok
    echoed = json.loads(b"".join(Recording.made[-1].kept))
    assert echoed["X-Sink"] == "recording"
