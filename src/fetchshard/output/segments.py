"""One large file over several connections, like ``aria2c -x``: byte ranges fetched in
parallel into one preallocated ``.part``, each resumable, the whole hashed once at the end.

A body file goes this way (:func:`fetch_file`) when its size is known before it is asked for
(the input's ``size_column``, an hf:// listing) and it is at least ``fetch.segment_above``
bytes with ``fetch.segments`` > 1, or larger than ``fetch.segment_max_bytes`` (a CDN's limit
on one GET): it is cut into max(segments, ceil(size / segment_max_bytes)) ranges, fetched
``segments`` at a time. A file of unknown size is one GET as ever; no request is spent on
learning a size.

Each range is one :func:`~fetchshard.http.request.fetch` (redirects with each hop's
credentials, deadlines, failures as data) into a :class:`_Range` sink that asks
``Range: bytes=a-b``, takes only a 206 whose ``Content-Range`` is exactly that range of a
file of that size, and writes the bytes at their offsets through the file store's threads
(1 MiB per ``pwritev``, one write in flight per range: about 2 MiB of a range in memory at
most). The first range goes alone: a server that ignores ``Range`` answers it 200 with the
whole file, which is then written from byte 0 over that one connection without opening the
others, and its ``ETag`` (else ``Last-Modified``) is the others' ``If-Range``, so a file
that changes midway comes whole (a 200, the same fallback) instead of spliced.

A range cut or timed out goes on from its last byte, a few times with a short backoff; one
that still fails ends the attempt with its failure, and the ``.part`` and its progress stay
for the job's next attempt (a retry, the final pass, a rerun after a crash). The progress is
a :class:`PartialTransfer` (version 2) beside the ``.part``: each range's bytes written,
recorded at most once a second and only once they are written (and ``fdatasync``-ed when
files are fsynced), so every range resumes from what its record claims. A record of another
URL or size, or without a validator when no checksum will check the result, starts over.

Once every range is in, the file is fsynced, hashed once (sha256 and the sink's other
algorithms) in a store thread and returned as a whole body's :class:`FetchResult`. The
item's :class:`FileSink` (whose ``.part`` this is) goes to ``results.handle`` as with any
file, which places or discards it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import math
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from typing import Any

from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind, StorageError
from fetchshard.faults import fault_after
from fetchshard.http.client import Client
from fetchshard.http.content import Hasher, new_hasher
from fetchshard.http.request import FetchResult, elapsed_ms, fetch
from fetchshard.http.sink import HEAD, StoredBody
from fetchshard.output.files import FLUSH_BYTES, FileSink, write_error
from fetchshard.redact import mask_userinfo
from fetchshard.runfolder.documents import PartialTransfer

log = logging.getLogger("fetchshard.files")

HASH_BLOCK = 4 * 1024 * 1024  # read back per call when the whole file is hashed
RECORD_SECONDS = 1.0  # the progress record is rewritten at most this often
RANGE_ATTEMPTS = 4  # failures in a row without a new byte before a range gives up
RANGE_MAX_ATTEMPTS = 16  # requests of one range in one attempt of the file, whatever happens
RANGE_BACKOFF = 0.25  # seconds before a range's second request, doubling...
RANGE_BACKOFF_MAX = 2.0  # ...up to this
# What a range asks for again by itself: the connection's or one server's trouble, and a
# signed link that expired while the file came (asked again, the input URL gives a new one).
# A 429 or a 503 is the host asking for less, an answer that is not the range a verdict:
# both end the attempt, for the job's retry policy and the host's health to hear.
_RETRIED = frozenset(
    {
        ErrorKind.EXPIRED_REDIRECT,
        ErrorKind.CONNECT,
        ErrorKind.TIMEOUT,
        ErrorKind.READ_TIMEOUT,
        ErrorKind.TOO_SLOW,
        ErrorKind.BAD_CONTENT,
        ErrorKind.HTTP_5XX,
    }
)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


# --- the pure parts ------------------------------------------------------------------------


def range_count(size: int, segments: int, max_bytes: int) -> int:
    """How many ranges a ``size``-byte file is cut into: ``segments``, more when one would
    exceed ``max_bytes``, never more than its bytes."""
    return max(1, min(size, max(segments, math.ceil(size / max_bytes))))


def cut_ranges(size: int, segments: int, max_bytes: int) -> list[tuple[int, int]]:
    """The ranges ``(start, stop)`` (stop exclusive) of a ``size``-byte file: contiguous, in
    order, their lengths differing by one byte at most, none above ``max_bytes``."""
    count = range_count(size, segments, max_bytes)
    base, extra = divmod(size, count)
    ranges = []
    start = 0
    for i in range(count):
        stop = start + base + (1 if i < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def wants_segments(config: FetchConfig, size: int | None, *, threshold: int, cap: int) -> bool:
    """Whether a body file of expected ``size`` is fetched as ranges. ``threshold``: the sink
    keeps a body up to this many bytes in memory (Parquet mode), never as ranges; ``cap``:
    ``output.max_file_bytes`` (0: none), beyond which one GET says too_large."""
    if size is None or size <= max(threshold, 0):
        return False
    if cap > 0 and size > cap:
        return False
    if size > config.segment_max_bytes:
        return True
    return config.segments > 1 and size >= config.segment_above


def content_range_problem(header: str | None, start: int, last: int, size: int) -> str | None:
    """Why a 206 to ``Range: bytes=start-last`` of a ``size``-byte file is not that range
    (a bad_content message), or None."""
    match = _CONTENT_RANGE.fullmatch((header or "").strip())
    if match is None:
        return f"HTTP 206 without a usable Content-Range ({header!r}) to bytes={start}-{last}"
    first, final, total = match.groups()
    if (int(first), int(final)) != (start, last):
        return f"HTTP 206 with Content-Range {header!r}, asked for bytes {start}-{last}"
    if total != str(size):
        return f"HTTP 206 with Content-Range {header!r}: the file is not {size:,} bytes"
    return None


def resumable_ranges(
    record: PartialTransfer | None,
    have: int | None,
    url: str,
    size: int,
    ranges: list[tuple[int, int]],
    *,
    checked: bool,
) -> list[tuple[int, int, int]] | None:
    """The ranges ``(start, stop, done)`` to go on from, given the ``.part``'s record and its
    length ``have`` (None: no ``.part``); None to start over. ``ranges``: a fresh cut, used
    for a record of one prefix (a :class:`FileSink`'s); ``checked``: the input's checksum
    will tell a spliced file, so a record without a validator may be resumed."""
    if record is None or have is None or record.url != mask_userinfo(url):
        return None
    if record.if_range() is None and not checked:
        return None  # a changed file could be spliced onto the old bytes unseen
    if record.segments is None:  # written from its start: its bytes fill the first ranges
        if have > size:
            return None
        return [(a, b, min(max(have - a, 0), b - a)) for a, b in ranges]
    if record.size != size or have != size:
        return None
    spans = [(start, end + 1, done) for start, end, done in record.segments]
    at = 0
    for start, stop, done in spans:
        if start != at or stop <= start or done > stop - start:
            return None
        at = stop
    return spans if at == size else None


# --- the transfer --------------------------------------------------------------------------


async def fetch_file(
    client: Client, url: str, config: FetchConfig, sink: FileSink, *, timeout_factor: float = 1.0
) -> FetchResult:
    """Fetch ``url``'s body into ``sink``'s ``.part``: as ranges over several connections
    when its expected size (the sink's target's: the input's size column, an hf:// listing)
    asks for it (:func:`wants_segments`), else with one :func:`fetch`. Either way the result
    is a whole body's (or the failure that ended the attempt) and ``sink`` is what the job
    places or discards."""
    size = sink.target.size
    cap = sink.store.output.file_limit
    if size is None or not wants_segments(config, size, threshold=sink.threshold, cap=cap):
        return await fetch(client, url, config, timeout_factor=timeout_factor, sink=sink)
    return await _Transfer(client, url, config, sink, size, timeout_factor).run()


class _Range:
    """One byte range of the file, ``start`` to ``stop`` (exclusive), and the sink of each of
    its requests; in whole mode (the server ignores Range) the whole file from byte 0."""

    def __init__(self, transfer: _Transfer, start: int, stop: int, done: int) -> None:
        self.transfer = transfer
        self.start = start
        self.stop = stop
        self.written = start + done  # the bytes up to here are in the file (a thread moves it)
        self.pos = self.written  # the bytes up to here have come, gathered ones included
        self.whole = False
        self.refused = False  # an answer that cannot be this range: not asked again here
        self._chunks: list[bytes] = []
        self._gathered = 0
        self._pending: Future[None] | None = None

    @property
    def left(self) -> int:
        return self.stop - self.pos

    def request_headers(self) -> Mapping[str, str]:
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={self.pos}-{self.stop - 1}"}
        validator = self.transfer.validator
        if validator is not None:
            headers["If-Range"] = validator
        return headers

    async def begin(self, status: int, headers: Mapping[str, str]) -> str | None:
        if not 200 <= status < 300:
            return None  # fetch() fails it by its status
        if status != 206:  # Range ignored, or If-Range says the file changed: all of it here
            return await self.transfer.whole_file(self, headers)
        size = self.transfer.size
        problem = content_range_problem(headers.get("Content-Range"), self.pos, self.stop - 1, size)
        declared = headers.get("Content-Length")
        if problem is None and declared is not None and declared.strip() != str(self.left):
            problem = f"HTTP 206 of {self.left:,} bytes with Content-Length {declared}"
        if problem is not None:
            self.refused = True
            return problem
        self.transfer.answered(headers)
        return None

    def limit(self, default: int) -> int:
        if self.whole:
            cap = self.transfer.store.output.file_limit
            return cap if cap > 0 else 1 << 62
        return self.left

    async def write(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._gathered += len(chunk)
        self.pos += len(chunk)
        if self._gathered >= FLUSH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        """Wait for the range's write in flight, then hand the gathered bytes to a thread."""
        if self._pending is not None:
            await _wait(self._pending)
            self._pending = None
        if self._chunks:  # no await from here to the submit: a cancel keeps the chunks
            chunks, self._chunks = self._chunks, []
            offset, self._gathered = self.pos - self._gathered, 0
            self._pending = self.transfer.store.submit(self.write_at, chunks, offset)

    async def finish(self) -> StoredBody:
        await self.flush()
        await self.flush()  # the last gathered bytes, then wait for them
        return StoredBody(self.pos - self.start, "")

    def abort(self) -> None:
        """The request failed: the gathered bytes stay (the next request asks from ``pos``;
        the end of the transfer writes them if none comes)."""

    def take_gathered(self) -> tuple[list[bytes], int, Future[None] | None]:
        """The bytes not yet handed to a thread, their offset and the write in flight."""
        chunks, self._chunks = self._chunks, []
        offset, self._gathered = self.pos - self._gathered, 0
        pending, self._pending = self._pending, None
        return chunks, offset, pending

    def reopen_last_byte(self) -> None:
        """Every byte came but the request failed after them: the next one asks for the last
        byte again (a request must ask for one); it is dropped here if not yet handed over,
        else its second write is skipped (``write_at``)."""
        if self._chunks:
            self._chunks[-1] = self._chunks[-1][:-1]
            self._gathered -= 1
        self.pos -= 1

    async def restart_whole(self, size: int) -> None:
        """From now on this range is the whole file, from byte 0."""
        if self._pending is not None:
            await _wait(self._pending)
            self._pending = None
        self._chunks, self._gathered = [], 0
        self.start, self.stop, self.pos, self.written = 0, size, 0, 0
        self.whole = True

    def write_at(self, chunks: list[bytes], offset: int) -> None:
        """In a store thread: the chunks at ``offset``, which must follow what is written (an
        earlier write never ran when its request was cancelled: these bytes come again)."""
        if offset != self.written or not chunks:
            return
        try:
            fault_after("file-write")  # tests: a disk that fills up at the Nth write
            _pwrite_all(self.transfer.fd, chunks, offset)
        except OSError as exc:
            raise write_error(exc, str(self.transfer.sink.part)) from exc
        self.written = offset + sum(len(c) for c in chunks)
        self.transfer.after_write()


class _Transfer:
    """One attempt at one file as ranges: the ``.part``, the ranges' tasks, the record."""

    def __init__(
        self,
        client: Client,
        url: str,
        config: FetchConfig,
        sink: FileSink,
        size: int,
        timeout_factor: float,
    ) -> None:
        self.client = client
        self.url = url
        self.config = config
        self.sink = sink
        self.store = sink.store
        self.size = size
        self.timeout_factor = timeout_factor
        self.fd = -1
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.ranges: list[_Range] = []
        self.running: dict[asyncio.Task[FetchResult], _Range] = {}
        self.whole: _Range | None = None
        self.first: tuple[int, FetchResult] | None = None  # the lowest range's response
        self.retry_until = math.inf
        self._ranged = asyncio.Event()  # a 206 came: the other connections may open
        self._record_lock = threading.Lock()  # one thread writes the record at a time
        self._recorded_at = -math.inf  # time.monotonic() of the last record

    @property
    def validator(self) -> str | None:
        """The If-Range of every request: the file's strong ETag, else its Last-Modified."""
        probe = PartialTransfer(url="", etag=self.etag, last_modified=self.last_modified)
        return probe.if_range()

    async def run(self) -> FetchResult:
        started = time.perf_counter()
        opened = self.store.submit(self._open)
        try:
            await asyncio.shield(asyncio.wrap_future(opened))
        except asyncio.CancelledError:  # the thread goes on: what it opens, it closes then
            opened.add_done_callback(lambda _: self._close())
            raise
        try:
            failure = await self._fetch_ranges()
        except BaseException:
            with contextlib.suppress(Exception):  # the error on its way out says more
                await self._stop()
            raise
        if failure is not None:
            await self._stop()
            failure.elapsed_ms = elapsed_ms(started)
            return failure
        stored = await self.store.run(self._complete)
        assert self.first is not None  # every file asks at least one range (_open)
        answer = self.first[1]
        return FetchResult.whole(200, answer.final_url, answer.content_type, stored, started)

    # --- the ranges ---

    async def _fetch_ranges(self) -> FetchResult | None:
        """Every unfinished range, ``fetch.segments`` at a time; the failure that ends the
        attempt, if one does."""
        todo = deque(r for r in self.ranges if r.left > 0)
        parallel = self.config.segments
        waves = math.ceil(len(todo) / parallel)
        # A range asks again only while the attempt is within the time its waves of
        # requests could take, and one more request: the attempt's time stays bounded.
        budget = (waves + 1) * self.config.total_timeout * self.timeout_factor
        self.retry_until = time.monotonic() + budget
        log.debug(
            "%s: %d ranges to fetch, %d at a time", mask_userinfo(self.url), len(todo), parallel
        )
        ranged = asyncio.ensure_future(self._ranged.wait())
        running = self.running
        try:
            while todo or running:
                # The first range goes alone: its answer says whether the server honours
                # Range, and gives the validator the others ask with.
                while (
                    todo
                    and self.whole is None
                    and len(running) < parallel
                    and (not running or self._ranged.is_set())
                ):
                    rng = todo.popleft()
                    running[asyncio.create_task(self._range_task(rng))] = rng
                if self.whole is not None:
                    todo.clear()
                waiting: set[asyncio.Future[Any]] = {*running}
                if not ranged.done():
                    waiting.add(ranged)
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                for task in [t for t in running if t.done()]:
                    rng = running.pop(task)
                    if task.cancelled():
                        continue  # dropped for the whole file (whole_file)
                    result = task.result()  # a full disk (StorageError) ends it all here
                    if not result.ok:
                        return result
                    if self.first is None or rng.start < self.first[0]:
                        self.first = (rng.start, result)
            return None
        finally:
            ranged.cancel()
            tasks = list(running)
            for task in tasks:
                task.cancel()
            await asyncio.gather(ranged, *tasks, return_exceptions=True)
            running.clear()

    async def _range_task(self, rng: _Range) -> FetchResult:
        """One range to its end: asked again from its last byte after a cut, a few times."""
        failures = attempts = 0
        while True:
            before = rng.pos
            result = await fetch(
                self.client, self.url, self.config, timeout_factor=self.timeout_factor, sink=rng
            )
            attempts += 1
            if result.ok and (rng.whole or rng.left == 0):
                return result
            if result.ok:  # a body that ended early without an error (chunked, say)
                result = _failed(result, f"the range ended at byte {rng.pos:,} of {rng.stop:,}")
            elif result.error_kind is ErrorKind.TOO_LARGE and not rng.whole:
                rng.refused = True
                result = _failed(result, f"more bytes than the range {rng.start}-{rng.stop - 1}")
            failures = 0 if rng.pos > before else failures + 1
            if rng.left == 0 and not rng.whole:
                rng.reopen_last_byte()
            if (
                rng.refused
                or result.error_kind not in _RETRIED
                or result.http_status == 503
                or failures >= RANGE_ATTEMPTS
                or attempts >= RANGE_MAX_ATTEMPTS
                or time.monotonic() >= self.retry_until
            ):
                return result
            log.debug(
                "%s: range %d-%d at byte %d: %s, asked again",
                mask_userinfo(self.url),
                rng.start,
                rng.stop - 1,
                rng.pos,
                result.error_message,
            )
            await asyncio.sleep(min(RANGE_BACKOFF_MAX, RANGE_BACKOFF * 2.0 ** max(failures - 1, 0)))

    def answered(self, headers: Mapping[str, str]) -> None:
        """A range's 206 is right: the file's validators, and the other ranges may go."""
        if self.etag is None and self.last_modified is None:
            self.etag = headers.get("ETag")
            self.last_modified = headers.get("Last-Modified")
        self._ranged.set()

    async def whole_file(self, rng: _Range, headers: Mapping[str, str]) -> str | None:
        """``rng``'s request was answered with the whole file: it takes the file from byte 0
        over its connection, the other ranges stop and their progress is dropped."""
        if self.whole is not None and self.whole is not rng:
            rng.refused = True
            return "HTTP 200 to a range while another response brings the whole file"
        if self.whole is None:
            self.whole = rng
            log.info(
                "%s: the server answered a range with the whole file: one connection",
                mask_userinfo(self.url),
            )
            others = [task for task, other in self.running.items() if other is not rng]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            for other in self.ranges:
                if other is not rng and other._pending is not None:
                    with contextlib.suppress(Exception):  # cancelled, or the rank's error
                        await _wait(other._pending)
            self.ranges = [rng]
        await rng.restart_whole(self.size)
        self.etag = headers.get("ETag")
        self.last_modified = headers.get("Last-Modified")
        self._ranged.set()
        return None

    # --- the record ---

    def record(self) -> PartialTransfer:
        """The progress as written so far (what the threads have written, nothing gathered)."""
        return PartialTransfer(
            url=mask_userinfo(self.url),  # written to disk: no secret
            etag=self.etag,
            last_modified=self.last_modified,
            size=self.size,
            segments=tuple(
                (r.start, r.stop - 1, min(r.written, r.stop) - r.start) for r in self.ranges
            ),
        )

    def after_write(self) -> None:
        """In a store thread, after a range's write: the record, if its time has come (while
        another thread writes it, this one goes on)."""
        if time.monotonic() - self._recorded_at < RECORD_SECONDS:
            return
        if not self._record_lock.acquire(blocking=False):
            return
        try:
            if time.monotonic() - self._recorded_at >= RECORD_SECONDS:
                self._write_record(True)
        finally:
            self._record_lock.release()

    def _save(self, sync: bool) -> None:
        with self._record_lock:
            self._write_record(sync)

    def _write_record(self, sync: bool) -> None:
        """The record of the writes done by now, once the bytes it claims are durable (when
        files are fsynced), replacing the last one at once."""
        record = self.record()
        meta = self.sink.meta
        temporary = meta.with_name(meta.name + ".tmp")
        try:
            if sync and self.store.output.fsync_files:
                _datasync(self.fd)
            temporary.write_bytes(record.to_bytes())
            os.replace(temporary, meta)
        except OSError as exc:
            raise write_error(exc, str(meta)) from exc
        self._recorded_at = time.monotonic()

    # --- the file, in the store's threads ---

    def _open(self) -> None:
        part = self.sink.part
        try:
            have: int | None = part.stat().st_size
        except FileNotFoundError:
            have = None
        record = PartialTransfer.read(self.sink.meta)
        fresh = cut_ranges(self.size, self.config.segments, self.config.segment_max_bytes)
        spans = resumable_ranges(
            record, have, self.url, self.size, fresh, checked=self.sink.target.checked
        )
        try:
            fd = os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            raise write_error(exc, str(part)) from exc
        try:
            if spans is None:
                spans = [(a, b, 0) for a, b in fresh]
                os.ftruncate(fd, 0)  # the bytes of another file or version: none kept
            else:
                assert record is not None  # resumable_ranges: there is one
                self.etag, self.last_modified = record.etag, record.last_modified
                log.info(
                    "%s: resuming %d of %d bytes in %d ranges",
                    mask_userinfo(self.url),
                    sum(d for _, _, d in spans),
                    self.size,
                    len(spans),
                )
            _preallocate(fd, self.size)
        except OSError as exc:
            os.close(fd)
            raise write_error(exc, str(part)) from exc
        self.fd = fd
        self.ranges = [_Range(self, a, b, d) for a, b, d in spans]
        if all(r.left == 0 for r in self.ranges):
            # All in already (a crash before the file was placed): ask for its last byte
            # again, whose answer says the file is unchanged and gives its content type.
            last = self.ranges[-1]
            last.pos = last.written = last.stop - 1
        try:
            self._save(False)  # the ranges as cut, before any byte
        except StorageError:
            os.close(fd)
            self.fd = -1
            raise
        self._recorded_at = -math.inf  # the first write is recorded at once

    def _complete(self) -> StoredBody:
        """Every byte is in: the file's length fixed, fsynced, hashed once, closed."""
        fd, part = self.fd, self.sink.part
        size = self.ranges[0].written if self.whole is not None else self.size
        hashes: dict[str, Hasher] = {"sha256": hashlib.sha256()}
        for algorithm in self.sink.algorithms:
            hasher = new_hasher(algorithm, size)
            if hasher is not None:
                hashes[algorithm] = hasher
        head = b""
        try:
            if size != self.size:  # the whole file, not the size expected: as it came
                os.ftruncate(fd, size)
            if self.store.output.fsync_files:
                os.fsync(fd)
            self._save(False)  # a crash before its placing keeps it whole
            head = _hash_file(fd, size, hashes)
        except OSError as exc:
            raise write_error(exc, str(part)) from exc
        finally:
            self._close()
        sha256 = hashes.pop("sha256").hexdigest()
        return StoredBody(
            size,
            sha256,
            path=str(self.store.relative(self.sink.url, self.sink.target)),
            head=head,
            digests={a: h.hexdigest() for a, h in hashes.items()},
        )

    async def _stop(self) -> None:
        """The attempt ends without the file: what came is written and recorded, the
        ``.part`` closed and kept for the next attempt."""
        gathered = [(r, *r.take_gathered()) for r in self.ranges]
        future: Future[None] | None = None
        with contextlib.suppress(RuntimeError):  # the store closing: its exit waited for all
            future = self.store.submit(self._shutdown, gathered)
        if future is None:
            self._shutdown(gathered)
            return
        await asyncio.shield(asyncio.wrap_future(future))

    def _shutdown(
        self, gathered: list[tuple[_Range, list[bytes], int, Future[None] | None]]
    ) -> None:
        failed: StorageError | None = None
        try:
            for rng, chunks, offset, pending in gathered:
                if pending is not None:
                    wait_futures([pending])  # submitted before this: never behind it
                    if not pending.cancelled() and pending.exception() is not None:
                        continue  # that write failed: what follows it is not written
                try:
                    rng.write_at(chunks, offset)
                except StorageError as exc:  # the other ranges' bytes and the record still
                    failed = failed or exc
            self._save(True)
        finally:
            self._close()
        if failed is not None:
            raise failed

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


# --- helpers -------------------------------------------------------------------------------


async def _wait(future: Future[None]) -> None:
    """A store thread's write done (its error raised); one cancelled before it ran is done."""
    if future.done():
        if not future.cancelled():
            future.result()
        return
    await asyncio.wrap_future(future)


def _failed(result: FetchResult, message: str) -> FetchResult:
    """``result`` as a bad_content failure: the answer was not the range asked."""
    result.error_kind, result.error_message = ErrorKind.BAD_CONTENT, message
    result.path = result.sha256 = None
    return result


def _pwrite_all(fd: int, chunks: list[bytes], offset: int) -> None:
    """All of ``chunks`` at ``offset``, in as few system calls as the OS allows."""
    views = [memoryview(c) for c in chunks if c]
    while views:
        done = os.pwritev(fd, views[:1024], offset)  # IOV_MAX
        offset += done
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done:
            views[0] = views[0][done:]


def _preallocate(fd: int, size: int) -> None:
    """Reserve the file's blocks (a full disk shows now, not halfway); where the filesystem
    cannot, only set its length."""
    if size <= 0:
        return
    allocate: Callable[[int, int, int], None] | None = getattr(os, "posix_fallocate", None)
    if allocate is not None:
        try:
            allocate(fd, 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)


def _datasync(fd: int) -> None:
    sync: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)  # macOS: no fdatasync
    sync(fd)


def _hash_file(fd: int, size: int, hashes: Mapping[str, Hasher]) -> bytes:
    """Feed the file's ``size`` bytes to every hash, read once; its first bytes."""
    head = b""
    offset = 0
    while offset < size:
        block = os.pread(fd, min(HASH_BLOCK, size - offset), offset)
        if not block:
            raise OSError(errno.EIO, f"the file ends at byte {offset} of {size}")
        if offset == 0:
            head = block[:HEAD]
        for hasher in hashes.values():
            hasher.update(block)
        if hasattr(os, "posix_fadvise"):  # nothing reads it again during the run
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, offset, len(block), os.POSIX_FADV_DONTNEED)
        offset += len(block)
    return head
