"""Bodies as files: streamed to a ``.part``, hashed on the way, resumed with Range, placed
under ``files/`` by rename once the job has checked them.

A transfer writes ``partial/rank-N/<item id>.part`` (and, once the response is known, a
:class:`PartialTransfer` beside it with its ETag and Last-Modified). The chunks are gathered
into 1 MiB writes done by the store's threads, one at a time per transfer, so memory stays
flat whatever the size; each write also feeds the hashes, so the body is never read twice.
A transfer cut short keeps its ``.part``: the next attempt, in this run or after a crash,
asks for the rest (``Range``, with ``If-Range`` so a changed file comes whole). Only when
the job has checked the body (content, expected size and checksum, minimum size) is the
``.part`` fsynced, renamed into place and its folder fsynced; the row that names the file
is committed after that. So after any crash a file in place is whole, and an item whose row
was not committed is fetched again into the same name.

Any error of the disk (full, read-only, permissions) is a :class:`StorageError`: the rank
stops, nothing is recorded as the URL's failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, TypeVar

import pyarrow as pa

from fetchshard.config import Config, OutputConfig
from fetchshard.errors import StorageError, storage_error
from fetchshard.faults import fault_after
from fetchshard.http.content import AUTO, Hasher, hexdigest, new_hasher
from fetchshard.http.sink import HEAD, StoredBody
from fetchshard.output.columns import PATH_COLUMN, Column
from fetchshard.output.filenames import clash_path, file_path
from fetchshard.redact import mask_userinfo
from fetchshard.runfolder.documents import PartialTransfer
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.storage import LOCAL, Storage, fsync_path

log = logging.getLogger("fetchshard.files")
_T = TypeVar("_T")
FLUSH_BYTES = 1024 * 1024  # gathered per write; two of these per transfer at most
ADVISE_BYTES = 8 * FLUSH_BYTES  # written between two calls of the page-cache advice
THREADS = 4
_CLASH_ERRORS = frozenset({errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_IDENTITY = {"Accept-Encoding": "identity"}  # the bytes as stored, so a Range means them


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """All of ``chunks`` at the file's position, in as few system calls as the OS allows."""
    views = [memoryview(c) for c in chunks if c]
    while views:
        done = os.writev(fd, views[:1024])  # IOV_MAX
        while views and done >= len(views[0]):
            done -= len(views.pop(0))
        if done:
            views[0] = views[0][done:]


def _drop_cache(fd: int, offset: int, length: int) -> None:
    if hasattr(os, "posix_fadvise"):  # not on macOS: advice only
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


@dataclass(frozen=True, slots=True)
class FileTarget:
    """What is known of one item's file before it is fetched."""

    # Under the files folder; None: named after its URL (output/filenames.py).
    relative: PurePosixPath | None = None
    size: int | None = None  # the input's expected size
    algorithms: tuple[str, ...] = ()  # hashes besides sha256 its checks need
    # The input's expected checksum decides whether the bytes are right: a cut transfer
    # resumes with Range even without a validator (a URL pinned to a commit, say).
    checked: bool = False
    etag: str | None = None  # the expected checksum, for a placed hook's metadata
    commit: str | None = None  # a mirror's: the commit the file is from


# Called in a store thread once a file is in place (and before its row can be committed):
# a mirror's metadata beside it (hub/localdir.py).
PlacedHook = Callable[[PurePosixPath, FileTarget], None]
ForgetHook = Callable[[PurePosixPath], None]
_NO_TARGET = FileTarget()


def uses_files(config: Config) -> bool:
    """Whether bodies (all, or the large ones) go to files."""
    return config.output.mode == "files" or config.output.body_file_above > 0


def file_columns(config: Config) -> tuple[Column, ...]:
    """The columns of body files: ``path`` (relative to the output folder) and the checked
    hashes other than sha256."""
    columns = [Column(PATH_COLUMN, pa.string(), statistics=False)] if uses_files(config) else []
    algorithm = config.input.checksum_algorithm
    if config.input.checksum_column is not None and algorithm not in ("sha256", AUTO):
        columns.append(Column(config.input.checksum_algorithm, pa.string(), statistics=False))
    return tuple(columns)


def write_error(exc: OSError, what: str) -> StorageError:
    """The StorageError of a failed write of a body's file (or its record)."""
    return storage_error(exc, what) or StorageError(f"cannot write {what}: {exc.strerror or exc}")


def clear_partial(paths: RunPaths, rank: int) -> None:
    """The rank's slice is complete: no unfinished transfer of it is left."""
    shutil.rmtree(paths.partial_dir(rank), ignore_errors=True)


class FileStore:
    """A rank's body files: the threads that write them, where they go, what is unfinished."""

    def __init__(
        self,
        paths: RunPaths,
        rank: int,
        output: OutputConfig,
        algorithms: tuple[str, ...],
        *,
        one_item_per_url: bool = True,
        placed: PlacedHook | None = None,
        forgotten: ForgetHook | None = None,
        storage: Storage = LOCAL,
    ) -> None:
        self.paths = paths
        # A bucket's run: a checked file goes up in one PUT from its .part, never kept here.
        self.storage = storage
        self.local = storage.local
        # Without an id column an item is its URL; with one, items of one URL share its file.
        self.one_item_per_url = one_item_per_url
        self.partial = paths.partial_dir(rank)
        self.root = paths.files_dir
        self.output = output
        self.algorithms = algorithms  # besides sha256
        self.all_files = output.mode == "files"
        self.placed = placed
        self.forgotten = forgotten
        self._executor: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> FileStore:
        await self.run(self._prepare)
        self._executor = ThreadPoolExecutor(THREADS, thread_name_prefix="fetchshard-files")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)

    def _prepare(self) -> None:
        try:
            self.partial.mkdir(parents=True, exist_ok=True)
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, str(self.partial)) from exc
        self._root_real = os.path.realpath(self.root)

    def submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        executor = self._executor
        if executor is None:  # before __aenter__ or after __aexit__: a bug
            raise RuntimeError("the file store is not open")
        return executor.submit(fn, *args)

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            return await asyncio.get_running_loop().run_in_executor(None, fn, *args)
        return await asyncio.wrap_future(self.submit(fn, *args))

    def sink(self, item_id: int, url: str, target: FileTarget = _NO_TARGET) -> FileSink:
        """The sink of one attempt at ``item_id``: every body to a file in files mode; in
        Parquet mode only a body above ``output.body_file_above`` bytes."""
        threshold = 0 if self.all_files else self.output.body_file_above
        return FileSink(self, item_id, url, threshold, target)

    def relative(self, url: str, target: FileTarget) -> PurePosixPath:
        """Where an item's file goes under the files folder."""
        return target.relative if target.relative is not None else file_path(url)

    def part_of(self, item_id: int) -> tuple[Path, Path]:
        return self.partial / f"{item_id}.part", self.partial / f"{item_id}.json"

    async def place(self, sink: FileSink) -> str:
        """Put a checked body in its place; the path its row holds (relative to the folder)."""
        return await self.run(self._place, sink)

    def _place(self, sink: FileSink) -> str:
        relative = self.relative(sink.url, sink.target)
        try:
            target = self._into(relative, sink.part)
        except OSError as exc:
            if exc.errno not in _CLASH_ERRORS or sink.target.relative is not None:
                raise write_error(exc, str(self.root / relative)) from exc
            clash = clash_path(sink.url, relative)
            log.info("%s: %s is taken by a folder or file, placed as %s", sink.url, relative, clash)
            try:
                target = self._into(clash, sink.part)
            except OSError as exc2:
                raise write_error(exc2, str(self.root / clash)) from exc2
            relative = clash
        sink.meta.unlink(missing_ok=True)
        if self.placed is not None:
            self.placed(relative, sink.target)
        return target.relative_to(self.paths.output_dir).as_posix()

    def _into(self, relative: PurePosixPath, part: Path) -> Path:
        target = self.root.joinpath(*relative.parts)
        if not self.local:  # a key names it: no folder to make or escape, no name taken
            self.storage.publish(part, target)
            part.unlink()
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        # A folder made a symlink by someone else must not lead the file out of files/.
        real = os.path.realpath(target.parent)
        if os.path.commonpath([real, self._root_real]) != self._root_real:
            raise StorageError(
                f"{target.parent} leads outside {self.root}: refusing to write there"
            )
        if target.is_dir():
            raise OSError(errno.EISDIR, "is a folder", str(target))
        os.replace(part, target)
        if self.output.fsync_files:
            fsync_path(target.parent)
        return target

    async def discard(self, sink: FileSink) -> None:
        """Drop a body that failed its checks: the next attempt starts from nothing."""
        await self.run(sink.remove_part)

    async def forget(self, item_id: int, url: str, target: FileTarget = _NO_TARGET) -> None:
        """An item that ends failed: no ``.part`` and no file of it is left."""
        await self.run(self._forget, item_id, url, target)

    def _forget(self, item_id: int, url: str, target: FileTarget) -> None:
        for path in self.part_of(item_id):
            path.unlink(missing_ok=True)
        if not self.one_item_per_url:  # another item (another id) may own the URL's file
            return
        relative = self.relative(url, target)
        candidates = [relative]
        if target.relative is None:
            candidates.append(clash_path(url, relative))
        for candidate in candidates:
            path = self.root.joinpath(*candidate.parts)
            if not self.local:
                self.storage.remove(path)  # its object, if it went up before
            elif path.is_file() and not path.is_symlink():
                path.unlink()
        if self.forgotten is not None:
            self.forgotten(relative)


class FileSink:
    """One attempt's body: in memory up to ``threshold`` bytes (0: none), then to the item's
    ``.part`` through the store's threads."""

    def __init__(
        self,
        store: FileStore,
        item_id: int,
        url: str,
        threshold: int,
        target: FileTarget = _NO_TARGET,
    ) -> None:
        self.store = store
        self.url = url
        self.target = target
        self.algorithms = tuple(dict.fromkeys((*store.algorithms, *target.algorithms)))
        self.part, self.meta = store.part_of(item_id)
        self.threshold = threshold
        self.resume_from = 0
        self.validator: str | None = None
        try:
            have = self.part.stat().st_size
        except FileNotFoundError:
            have = 0
        if have > 0:
            record = PartialTransfer.read(self.meta)
            if record is not None and record.url == mask_userinfo(url):
                self.validator = record.validator()
                # Without a validator a changed file could be spliced onto the old bytes,
                # unless the input's checksum will catch it.
                # A segmented transfer's .part has holes: only its own ranges resume it.
                resumable = record.segments is None and (
                    self.validator is not None or target.checked
                )
                self.resume_from = have if resumable else 0
        self.offset = 0  # where this response's bytes start in the file
        self.size = 0  # bytes of the body so far, resumed ones included
        self._memory: list[bytes] | None = None
        self._chunks: list[bytes] = []
        self._gathered = 0
        self._head = b""
        self._pending: Future[None] | None = None
        self._fh: Any = None
        self._hashes: dict[str, Hasher] = {}
        self._closed = False
        self._record: PartialTransfer | None = None
        self._advised = self._dropped = 0  # file offsets of the page-cache advice

    def request_headers(self) -> Mapping[str, str]:
        if self.resume_from <= 0:
            return _IDENTITY
        asked = {**_IDENTITY, "Range": f"bytes={self.resume_from}-"}
        if self.validator is None:  # target.checked: the final checksum decides
            return asked
        return {**asked, "If-Range": self.validator}

    def limit(self, default: int) -> int:
        cap = self.store.output.file_limit
        return cap - self.offset if cap > 0 else 1 << 62

    async def begin(self, status: int, headers: Mapping[str, str]) -> str | None:
        if status == 416 and self.resume_from > 0:
            await self.store.run(self.remove_part)
            return (
                f"the server would not resume at byte {self.resume_from} (HTTP 416): starting over"
            )
        if not 200 <= status < 300:
            return None
        if status == 206:
            if self.resume_from <= 0:
                return "HTTP 206 (a part) to a request for the whole body"
            match = _CONTENT_RANGE.fullmatch((headers.get("Content-Range") or "").strip())
            start = int(match.group(1)) if match else None
            if start != self.resume_from:
                await self.store.run(self.remove_part)
                return (
                    f"HTTP 206 from byte {start}, asked for {self.resume_from} "
                    f"(Content-Range {headers.get('Content-Range')!r}): starting over"
                )
            self.offset = self.resume_from
        record = PartialTransfer(
            url=mask_userinfo(self.url),  # written to disk: no secret
            etag=headers.get("ETag"),
            last_modified=headers.get("Last-Modified"),
        )
        declared = headers.get("Content-Length")
        small = (
            self.offset == 0
            and self.threshold > 0
            and declared is not None
            and declared.isdigit()
            and int(declared) <= self.threshold
        )
        if small or (self.offset == 0 and self.threshold > 0 and declared is None):
            self._memory = []  # to a file only if it grows past the threshold
            self._record = record
            return None
        await self.store.run(self._open, record)
        return None

    def _open(self, record: PartialTransfer) -> None:
        self._hashes = {"sha256": hashlib.sha256()}
        for algorithm in self.algorithms:
            hasher = new_hasher(algorithm, self.target.size)
            if hasher is not None:  # git-sha1 of a file of unknown size: not checked
                self._hashes[algorithm] = hasher
        fh: Any
        try:
            self.meta.write_bytes(record.to_bytes())
            if self.offset > 0:
                fh = open(self.part, "r+b", buffering=0)  # noqa: SIM115 - closed by _close
                self._hash_prefix(fh)
                fh.truncate(self.offset)
                fh.seek(self.offset)
            else:
                fh = open(self.part, "wb", buffering=0)  # noqa: SIM115 - closed by _close
        except OSError as exc:
            raise write_error(exc, str(self.part)) from exc
        self._fh = fh
        self.size = self.offset

    def _hash_prefix(self, fh: Any) -> None:
        """The bytes already in the ``.part``, read once: the hashes cover the whole file."""
        left = self.offset
        while left > 0:
            block = fh.read(min(FLUSH_BYTES, left))
            if not block:
                raise OSError(errno.EIO, f"{self.part} is shorter than {self.offset} bytes")
            if len(self._head) < HEAD:
                self._head += block[: HEAD - len(self._head)]
            for h in self._hashes.values():
                h.update(block)
            left -= len(block)

    async def write(self, chunk: bytes) -> None:
        if self._memory is not None:
            self._memory.append(chunk)
            self._gathered += len(chunk)
            if self._gathered > self.threshold:  # it is a large body after all
                chunks, self._memory = self._memory, None
                self._gathered = 0
                assert self._record is not None  # set with _memory in begin()
                await self.store.run(self._open, self._record)
                for piece in chunks:
                    await self._add(piece)
            return
        await self._add(chunk)

    async def _add(self, chunk: bytes) -> None:
        if len(self._head) < HEAD:
            self._head += chunk[: HEAD - len(self._head)]
        self._chunks.append(chunk)
        self._gathered += len(chunk)
        if self._gathered >= FLUSH_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        if self._pending is not None:
            await asyncio.wrap_future(self._pending)
            self._pending = None
        if self._chunks:
            chunks, self._chunks, self._gathered = self._chunks, [], 0
            self._pending = self.store.submit(self._write_chunks, chunks)

    def _write_chunks(self, chunks: list[bytes]) -> None:
        for h in self._hashes.values():
            for chunk in chunks:
                h.update(chunk)
        try:
            fault_after("file-write")  # tests: a disk that fills up at the Nth write
            fd = self._fh.fileno()
            _write_all(fd, chunks)
            self.size += sum(len(c) for c in chunks)
            if self.size - self._advised >= ADVISE_BYTES:
                # Start writing back what came in, and drop from the page cache what an earlier
                # call started (now clean): the final fsync has little left to wait for, and
                # the kernel manages far fewer cached pages (as parts.py does for parts).
                _drop_cache(fd, self._dropped, self.size - self._dropped)
                self._dropped, self._advised = self._advised, self.size
        except OSError as exc:
            raise write_error(exc, str(self.part)) from exc

    async def finish(self) -> StoredBody:
        if self._memory is not None:  # small enough for the row
            body = b"".join(self._memory)
            self._memory = []
            digests = {a: hexdigest(a, body) for a in self.algorithms}
            return StoredBody(
                len(body),
                hashlib.sha256(body).hexdigest(),
                data=body,
                head=body[:HEAD],
                digests=digests,
            )
        await self._flush()
        await self._flush()  # the last gathered chunks, then wait for them
        await self.store.run(self._close, self.store.output.fsync_files)
        digests = {a: h.hexdigest() for a, h in self._hashes.items() if a != "sha256"}
        return StoredBody(
            self.size,
            self._hashes["sha256"].hexdigest(),
            path=str(self.store.relative(self.url, self.target)),
            head=self._head,
            digests=digests,
        )

    def _close(self, durable: bool) -> None:
        fh, self._fh = self._fh, None
        if fh is None or self._closed:
            return
        self._closed = True
        try:
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
            _drop_cache(fh.fileno(), 0, 0)  # nothing reads it back during the run
            fh.close()
        except OSError as exc:
            raise write_error(exc, str(self.part)) from exc

    def abort(self) -> None:
        """The transfer failed: close the ``.part`` (kept, to resume) once its writes are done,
        the bytes gathered for the next write included (a resume asks only for the rest)."""
        self._memory = None
        pending, self._pending = self._pending, None
        chunks, self._chunks, self._gathered = self._chunks, [], 0
        if self._fh is None:
            return
        with contextlib.suppress(RuntimeError):  # the store closing: the exit closes the file
            self.store.submit(self._close_after, pending, chunks)

    def _close_after(self, pending: Future[None] | None, chunks: list[bytes] | None = None) -> None:
        written = True
        if pending is not None:
            try:
                pending.result()
            except Exception:  # the write before failed: nothing after it goes in
                written = False
        if chunks and written:
            with contextlib.suppress(StorageError):
                self._write_chunks(chunks)
        with contextlib.suppress(StorageError):
            self._close(False)

    def remove_part(self) -> None:
        self._close_after(None)
        self.part.unlink(missing_ok=True)
        self.meta.unlink(missing_ok=True)
