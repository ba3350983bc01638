"""One large file over several connections (output/segments.py): how a file is cut, which
answers are its ranges, which records are resumed; then transfers against the in-process
server: a whole file, a stop midway whose record claims only written bytes, a resume, and a
server whose Content-Range lies."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from fetchshard.config import FetchConfig, MiB, OutputConfig
from fetchshard.errors import ErrorKind
from fetchshard.http.client import make_client
from fetchshard.output.files import FileSink, FileStore, FileTarget
from fetchshard.output.segments import (
    content_range_problem,
    cut_ranges,
    fetch_file,
    range_count,
    resumable_ranges,
    wants_segments,
)
from fetchshard.runfolder.documents import PartialTransfer
from fetchshard.runfolder.layout import RunPaths
from server import RunningServer
from server.routes_files import file_bytes, file_sha256

GB = 1000**3

# --- cutting a file ------------------------------------------------------------------------


def test_a_file_is_cut_into_as_many_ranges_as_segments() -> None:
    assert cut_ranges(10, 4, 50 * GB) == [(0, 3), (3, 6), (6, 8), (8, 10)]
    assert cut_ranges(8 * MiB, 4, 50 * GB) == [(i * 2 * MiB, (i + 1) * 2 * MiB) for i in range(4)]


def test_no_range_exceeds_segment_max_bytes_even_with_one_segment() -> None:
    ranges = cut_ranges(120 * GB, 1, 50 * GB)
    assert len(ranges) == 3 == range_count(120 * GB, 1, 50 * GB)
    assert all(stop - start <= 50 * GB for start, stop in ranges)
    assert range_count(120 * GB, 8, 50 * GB) == 8  # more segments than the limit needs
    assert range_count(100 * GB, 1, 50 * GB) == 2  # exactly two of the largest
    assert range_count(100 * GB + 1, 1, 50 * GB) == 3


def test_a_file_smaller_than_its_segments_gets_a_range_per_byte() -> None:
    assert cut_ranges(3, 8, 50 * GB) == [(0, 1), (1, 2), (2, 3)]
    assert cut_ranges(1, 8, 50 * GB) == [(0, 1)]


def test_ranges_cover_the_file_in_order_and_differ_by_one_byte_at_most() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        size = rng.randrange(1, 10**12)
        segments = rng.randrange(1, 65)
        most = rng.randrange(MiB, 10**11)
        ranges = cut_ranges(size, segments, most)
        assert ranges[0][0] == 0 and ranges[-1][1] == size
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        lengths = {stop - start for start, stop in ranges}
        assert max(lengths) - min(lengths) <= 1 and min(lengths) >= 1
        assert max(lengths) <= most
        assert len(ranges) == max(segments, -(-size // most)) or len(ranges) == size


@pytest.mark.parametrize(
    ("size", "segments", "threshold", "cap", "expected"),
    [
        (None, 4, 0, 0, False),  # no size known: one GET, never a probe
        (300 * MiB, 4, 0, 0, True),
        (256 * MiB, 4, 0, 0, True),  # at least segment_above
        (256 * MiB - 1, 4, 0, 0, False),
        (300 * MiB, 1, 0, 0, False),  # segments 1: off...
        (60 * GB, 1, 0, 0, True),  # ...but never one GET above segment_max_bytes
        (300 * MiB, 4, 400 * MiB, 0, False),  # Parquet mode: a body kept in memory
        (300 * MiB, 4, 0, 200 * MiB, False),  # above max_file_bytes: one GET says too_large
    ],
)
def test_which_files_go_as_ranges(
    size: int | None, segments: int, threshold: int, cap: int, expected: bool
) -> None:
    config = FetchConfig(segments=segments)
    assert wants_segments(config, size, threshold=threshold, cap=cap) is expected


# --- answers to a range --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("bytes 100-199/1000", None),
        ("bytes  100-199/1000 ", None),
        ("bytes 0-199/1000", "asked for bytes 100-199"),
        ("bytes 100-999/1000", "asked for bytes 100-199"),
        ("bytes 100-199/2000", "the file is not 1,000 bytes"),
        ("bytes 100-199/*", "the file is not 1,000 bytes"),
        ("bytes */1000", "without a usable Content-Range"),
        (None, "without a usable Content-Range (None)"),
    ],
)
def test_a_206_must_be_exactly_the_range_asked(header: str | None, problem: str | None) -> None:
    got = content_range_problem(header, 100, 199, 1000)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got


# --- which records are resumed -------------------------------------------------------------

URL = "https://a.example/big.bin"
FRESH = cut_ranges(1000, 4, 50 * GB)


def _record(**changes: object) -> PartialTransfer:
    record = PartialTransfer(
        url=URL,
        etag='"v1"',
        last_modified=None,
        size=1000,
        segments=((0, 249, 249), (250, 499, 10), (500, 749, 0), (750, 999, 250)),
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


def test_a_record_of_this_file_resumes_each_range_where_it_got_to() -> None:
    spans = resumable_ranges(_record(), 1000, URL, 1000, FRESH, checked=False)
    assert spans == [(0, 250, 249), (250, 500, 10), (500, 750, 0), (750, 1000, 250)]


@pytest.mark.parametrize(
    ("changes", "have", "checked"),
    [
        ({"url": "https://a.example/other.bin"}, 1000, True),
        ({"size": 999}, 1000, True),
        ({}, 999, True),  # the .part is not the preallocated file
        ({}, None, True),  # no .part at all
        ({"etag": None}, 1000, False),  # no validator, no checksum: a changed file unseen
        ({"etag": 'W/"weak"'}, 1000, False),
        ({"segments": ((0, 499, 0), (600, 999, 0))}, 1000, True),  # a gap
        ({"segments": ((0, 499, 501), (500, 999, 0))}, 1000, True),  # more done than asked
        ({"segments": ((0, 499, 0),)}, 1000, True),  # short of the end
    ],
)
def test_a_record_that_does_not_fit_starts_over(
    changes: dict[str, object], have: int | None, checked: bool
) -> None:
    assert resumable_ranges(_record(**changes), have, URL, 1000, FRESH, checked=checked) is None


def test_without_a_validator_a_checksum_lets_the_ranges_resume() -> None:
    spans = resumable_ranges(_record(etag=None), 1000, URL, 1000, FRESH, checked=True)
    assert spans is not None and spans[0] == (0, 250, 249)


def test_a_one_prefix_part_fills_the_first_ranges() -> None:
    prefix = PartialTransfer(url=URL, etag='"v1"', last_modified=None)
    spans = resumable_ranges(prefix, 600, URL, 1000, FRESH, checked=False)
    assert spans == [(0, 250, 250), (250, 500, 250), (500, 750, 100), (750, 1000, 0)]
    assert resumable_ranges(prefix, 1001, URL, 1000, FRESH, checked=False) is None


def test_a_ranges_record_is_written_as_version_2_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "1.json"
    path.write_bytes(_record().to_bytes())
    assert PartialTransfer.read(path) == _record()
    assert b'"version": 2' in path.read_bytes()
    assert _record().validator() is None  # a FileSink never resumes it as one prefix
    assert _record().if_range() == '"v1"'


# --- transfers against a server ------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileStore]:
    async with FileStore(RunPaths(tmp_path), 0, OutputConfig(mode="files"), ()) as opened:
        yield opened


def _sink(store: FileStore, url: str, size: int, algorithms: tuple[str, ...] = ()) -> FileSink:
    return store.sink(1, url, FileTarget(size=size, algorithms=algorithms))


def _served(server: RunningServer, path: str) -> list[str]:
    return [r["range"] for r in server.requests() if r["path"].startswith(path)]


CONFIG = FetchConfig(segments=4, segment_above=MiB)


async def test_a_file_comes_as_ranges_and_is_hashed_whole(
    server: RunningServer, store: FileStore
) -> None:
    n = 3 * MiB + 5
    url = server.url(f"/file/{n}/whole.bin")
    sink = _sink(store, url, n, ("md5", "git-sha1"))
    async with make_client(CONFIG) as client:
        result = await fetch_file(client, url, CONFIG, sink)
    assert result.ok, result.error_message
    data = sink.part.read_bytes()
    assert data == file_bytes(n) and result.size == n and result.sha256 == file_sha256(n)
    git = hashlib.sha1(b"blob %d\0" % n + data).hexdigest()
    assert result.digests == {"md5": hashlib.md5(data).hexdigest(), "git-sha1": git}
    assert result.http_status == 200 and result.head == data[:512]
    assert result.content_type == "application/octet-stream"
    assert result.path == str(store.relative(url, sink.target))
    ranges = _served(server, f"/file/{n}/")
    assert sorted(ranges) == sorted(f"bytes={a}-{b - 1}" for a, b in cut_ranges(n, 4, 10**12))
    assert server.state.file_bytes == {f"/file/{n}/whole.bin": n}


async def test_a_stopped_transfer_keeps_a_record_of_written_bytes_only_and_resumes_it(
    server: RunningServer, store: FileStore
) -> None:
    n = 16 * MiB
    url = server.url(f"/file/{n}/stopped.bin?pace=0.02")  # 3.2 MB/s a connection
    sink = _sink(store, url, n)
    async with make_client(CONFIG) as client:
        task = asyncio.create_task(fetch_file(client, url, CONFIG, sink))
        await asyncio.sleep(0.6)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        left = [t for t in asyncio.all_tasks() if "_range_task" in repr(t.get_coro())]
        assert not left, "a range's task outlived the transfer"
        record = PartialTransfer.read(sink.meta)
        assert record is not None and record.segments is not None and record.size == n
        data = sink.part.read_bytes()
        assert len(data) == n  # preallocated
        claimed = 0
        for start, _end, done in record.segments:
            assert data[start : start + done] == file_bytes(n, 0, start, start + done)
            claimed += done
        assert 0 < claimed < n
        await asyncio.sleep(0.1)  # the server's handlers see their clients gone
        server.clear_requests()
        result = await fetch_file(client, url, CONFIG, _sink(store, url, n))
    assert result.ok and result.sha256 == file_sha256(n)
    assert server.state.file_bytes == {f"/file/{n}/stopped.bin": n - claimed}
    asked = sorted(r.split("=")[1] for r in _served(server, f"/file/{n}/"))
    assert asked == sorted(f"{a + done}-{b}" for a, b, done in record.segments if a + done <= b)


async def _lying_server(content_range: str) -> tuple[web.AppRunner, str]:
    async def handler(request: web.Request) -> web.Response:
        headers = {"Content-Range": content_range, "ETag": '"x"'}
        return web.Response(status=206, body=b"x" * 10, headers=headers)

    app = web.Application()
    app.router.add_get("/f", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/f"


async def test_a_wrong_content_range_fails_the_range_as_bad_content(store: FileStore) -> None:
    runner, url = await _lying_server("bytes 10-19/40")  # asked 0-9 of 40
    config = FetchConfig(segments=4, segment_above=1)
    try:
        async with make_client(config) as client:
            result = await fetch_file(client, url, config, _sink(store, url, 40))
    finally:
        await runner.cleanup()
    assert result.error_kind is ErrorKind.BAD_CONTENT
    assert "asked for bytes 0-9" in (result.error_message or "")
    part, meta = store.part_of(1)
    assert part.stat().st_size == 40 and PartialTransfer.read(meta) is not None  # kept


async def test_a_range_failed_after_its_last_byte_asks_for_that_byte_again(
    store: FileStore,
) -> None:
    """A chunked response broken after its last byte (every byte of the range in hand when
    the request fails): the next request still asks for a byte, the last one, and the file
    is whole."""
    data = random.Random(3).randbytes(40)
    asked: list[str] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
                header = next(h for h in head.split("\r\n") if h.lower().startswith("range:"))
                first, last = (int(x) for x in header.split("=")[1].split("-"))
                asked.append(f"{first}-{last}")
                body = data[first : last + 1]
                status = (
                    f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/40\r\n"
                )
                if len(asked) > 1:
                    writer.write(f"{status}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                    continue
                writer.write(  # the first answer: its one chunk, then no proper end
                    f"{status}Transfer-Encoding: chunked\r\n\r\n{len(body):x}\r\n".encode()
                    + body
                    + b"\r\n"
                )
                await writer.drain()
                await asyncio.sleep(0.1)  # the chunk is read before what breaks the response
                writer.write(b"not a chunk size\r\n")
                await writer.drain()
                break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/f"
    # aiohttp waits for more after the broken chunk: the read timeout ends that request.
    config = FetchConfig(segments=2, segment_above=1, read_timeout=0.5)
    try:
        async with make_client(config) as client:
            sink = _sink(store, url, 40)
            result = await fetch_file(client, url, config, sink)
    finally:
        server.close()
    assert result.ok, result.error_message
    assert sink.part.read_bytes() == data and result.sha256 == hashlib.sha256(data).hexdigest()
    assert asked[0] == "0-19" and sorted(asked) == ["0-19", "19-19", "20-39"]
