"""A run whose data lives in a bucket: the state folder on this machine, its data mirrored.

The run folder is laid out as ever, on a POSIX filesystem (the *state folder*: the live
ledger, locks, logs, partial transfers, plan files, parts being written). What a reader
elsewhere needs (``run.json``, the parts, bodies as files, the progress, stats and done
documents, a snapshot of each ledger) is put in the bucket under the same relative names, so
``s3://bucket/prefix/shards/rank-00000/part-000001.parquet`` is the state folder's
``shards/rank-00000/part-000001.parquet``. Each object is one PutObject of a finished file
(runfolder/objectstore.py); a part's with ``If-None-Match: *``, so a second writer of the same
rank is stopped, never let replace a committed part.

:class:`BucketStorage` is the :class:`~fetchshard.runfolder.storage.Storage` of such a run: a
document is written locally then put, a part is put instead of renamed (its tmp file stays
until the ledger has it), and removing a mirrored file deletes its object too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, BinaryIO

from fetchshard.errors import FetchshardError, RunFolderError
from fetchshard.runfolder.layout import (
    CARRIED_SUFFIX,
    TMP_SUFFIX,
    LedgerPaths,
    generation_name,
    generation_of_name,
)
from fetchshard.runfolder.objectstore import BucketURL, ObjectStore, S3Settings
from fetchshard.runfolder.storage import LOCAL, Storage
from fetchshard.runfolder.view import RunFolder

if TYPE_CHECKING:
    from fetchshard.config import OutputConfig

log = logging.getLogger(__name__)

# The top-level names of a run folder (or of a generation's folder) whose files are the run's
# data: put in the bucket. ``ledger/`` holds the live SQLite database: only its snapshot goes
# (snapshot_ledger); of ``leftover/``, what a merge reads (done documents, carried rows).
MIRRORED = frozenset(
    {"run.json", "generation.json", "shards", "progress", "stats", "done", "files"}
)
_SNAPSHOT_SUFFIX = ".snapshot" + TMP_SUFFIX
_SHARDS = "shards"
_FILES = "files"
_LEDGER = "ledger"
_LEFTOVER = "leftover"


def _mirrored(relative: PurePosixPath) -> bool:
    top = _top(relative)
    if top == _LEFTOVER:  # the slices are state; what says it is done and the rows carried not
        return relative.parent.name == "done" or relative.name.endswith(CARRIED_SUFFIX)
    return top in MIRRORED


def _top(relative: PurePosixPath) -> str:
    """The run folder's top-level name a file is under (a generation's folder skipped)."""
    parts = relative.parts
    return parts[1] if len(parts) > 1 and generation_of_name(parts[0]) is not None else parts[0]


class BucketStorage:
    """The run folder ``root`` on this machine, its data mirrored to ``url`` through ``store``."""

    local = False

    def __init__(self, root: Path, url: BucketURL, store: ObjectStore) -> None:
        self.root = root
        self.url = url
        self.store = store
        # Documents written often (progress) are put by one background thread, the latest
        # bytes of a key only: a slow store never holds the event loop.
        self._lock = threading.Lock()
        self._latest: dict[str, bytes] = {}
        self._queued: dict[str, Future[None]] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="bucket-put")

    def __repr__(self) -> str:
        return f"BucketStorage({self.root}, {self.url})"

    # ------------------------------------------------------------------ names

    def relative(self, path: Path) -> PurePosixPath | None:
        """``path``'s name in the run folder when it is mirrored to the bucket, else None."""
        rel = self._inside(path)
        return rel if rel is not None and _mirrored(rel) else None

    def key(self, path: Path) -> str:
        """The key of ``path`` (a file of the run folder) in the bucket."""
        return self.url.key(path.relative_to(self.root).as_posix())

    def _inside(self, path: Path) -> PurePosixPath | None:
        """``path``'s name in the run folder (None: outside it, or the folder itself)."""
        try:
            rel = PurePosixPath(path.relative_to(self.root).as_posix())
        except ValueError:
            return None
        return rel if rel.parts else None

    # ------------------------------------------------------------------ Storage

    def write_atomic(self, path: Path, data: bytes, *, durable: bool = False) -> None:
        LOCAL.write_atomic(path, data, durable=durable)
        if self.relative(path) is None:
            return
        if durable:  # stats, done, run.json: in the bucket before we go on
            self.store.put_bytes(data, self.key(path))
        else:
            self._put_later(self.key(path), data)

    def publish(self, tmp: Path, final: Path, *, drop_cache: bool = False) -> None:
        """Put the finished ``tmp`` as ``final``'s object. A part's key is created once,
        never replaced (:class:`~fetchshard.errors.WriterConflictError` if another writer's
        is there); a body's file is replaced whole (an item fetched again after a crash
        writes the same name); of either, ``tmp`` stays until the caller has recorded it,
        and no copy is kept here. Any other file is renamed into place, and put if mirrored."""
        relative = self.relative(final)
        top = None if relative is None else _top(relative)
        if top == _SHARDS:
            self.store.put_file(tmp, self.key(final), create_only=True)
        elif top == _FILES:
            self.store.put_file(tmp, self.key(final), create_only=False)
        else:  # a file of the state folder (a carried rows file: also put)
            LOCAL.publish(tmp, final, drop_cache=drop_cache)
            if relative is not None:
                self.store.put_file(final, self.key(final), create_only=False)

    def remove(self, path: Path) -> None:
        LOCAL.remove(path)
        relative = self.relative(path)
        if relative is None:
            if self._snapshot(path):  # a ledger (--restart): its snapshot goes with it
                self.store.delete(self.key(path))
            return
        key = self.key(path)
        if relative.parent.name == _SHARDS:  # a rank's shards folder (--restart): its parts
            for listed in self.store.list(key + "/"):
                self.store.delete(listed.key)
        self.store.delete(key)

    def create(self, path: Path, data: bytes) -> bool:
        created = LOCAL.create(path, data)  # the state folder decides who is first
        if created and self.relative(path) is not None:
            self.store.put_bytes(data, self.key(path))
        return created

    def check_rebuildable(self) -> None:
        """A state folder rebuilt from the bucket: only a run of one generation can be (a
        later one's leftover was planned from the earlier generations' ledgers)."""
        if self.store.any(self.url.key(generation_name(1))):
            raise RunFolderError(
                f"{self.root} is a new state folder, but {self.url} holds later generations "
                "(another number of ranks): a run with generations resumes only with its state "
                "folder (--state-dir)"
            )

    def _snapshot(self, path: Path) -> bool:
        """Whether ``path`` is a ledger's database or items file, whose snapshot is put."""
        rel = self._inside(path)
        return rel is not None and _top(rel) == _LEDGER and path.suffix in (".sqlite", ".arrow")

    def published(self, folder: Path) -> dict[str, int]:
        """The files published in ``folder``: name -> size (its objects, in the bucket)."""
        prefix = self.key(folder) + "/"
        return {
            listed.key[len(prefix) :]: listed.size
            for listed in self.store.list(prefix)
            if "/" not in listed.key[len(prefix) :]
        }

    def open_published(self, path: Path) -> BinaryIO:
        """A published file to read (ranged GETs: a Parquet reader reads only what it needs)."""
        return self.store.open_read(self.key(path))

    def abort_uploads(self, folder: Path) -> int:
        """Abort the unfinished multipart uploads under ``folder``'s prefix (another tool's,
        or an older version's: ours never start one); return how many."""
        return self.store.abort_uploads(self.key(folder) + "/")

    def restore(self, path: Path) -> bool:
        """Fetch ``path`` from the bucket when the state folder lacks it (a state folder lost
        with its machine); whether it was."""
        if path.exists() or self.relative(path) is None:
            return False
        data = self.store.get_bytes(self.key(path))
        if data is None:
            return False
        LOCAL.write_atomic(path, data, durable=True)
        return True

    def snapshot_ledger(self, ledger: LedgerPaths) -> None:
        """Put a consistent copy of the ledger and its items file in the bucket (``ledger/``),
        for ``merge`` and ``report`` elsewhere."""
        snapshot = ledger.db.with_name(ledger.db.name + _SNAPSHOT_SUFFIX)
        snapshot.unlink(missing_ok=True)
        try:
            with (
                contextlib.closing(sqlite3.connect(f"file:{ledger.db}?mode=ro", uri=True)) as src,
                contextlib.closing(sqlite3.connect(snapshot)) as dst,
            ):
                src.backup(dst)
            items = self.key(ledger.items)
            if ledger.items.exists():  # written once by planning: put unless it is there
                size = ledger.items.stat().st_size
                if [o.size for o in self.store.list(items) if o.key == items] != [size]:
                    self.store.put_file(ledger.items, items, create_only=False)
            self.store.put_file(snapshot, self.key(ledger.db), create_only=False)
        finally:
            snapshot.unlink(missing_ok=True)

    def flush(self) -> None:
        """Wait until every document put in the background is in the bucket."""
        with self._lock:
            waiting = list(self._queued.values())
        for future in waiting:
            future.result()

    def close(self) -> None:
        self.flush()
        self._pool.shutdown(wait=True)

    def _put_later(self, key: str, data: bytes) -> None:
        with self._lock:
            self._latest[key] = data
            if key not in self._queued:
                self._queued[key] = self._pool.submit(self._put_latest, key)

    def _put_latest(self, key: str) -> None:
        with self._lock:
            data = self._latest.pop(key)
            del self._queued[key]
        try:
            self.store.put_bytes(data, key)
        except FetchshardError as exc:  # a progress document: the next one may get through
            log.warning("%s", exc)


@contextlib.contextmanager
def run_storage(output: OutputConfig) -> Iterator[Storage]:
    """The storage of a run's output: the local folder, or a bucket (reached once here, so a
    missing bucket or credential is one line before any work)."""
    bucket = output.bucket
    if bucket is None:
        yield LOCAL
        return
    settings = S3Settings.resolve(os.environ, endpoint=output.s3_endpoint, region=output.s3_region)
    with ObjectStore(bucket.bucket, settings) as store:
        store.check()
        storage = BucketStorage(output.root, bucket, store)
        try:
            yield storage
        finally:
            storage.close()


# What a reader of a bucket's run copies to read it as a folder: the documents and ledger
# snapshots (the parts it reads where they are).
_COPIED = frozenset(
    {"run.json", "generation.json", "progress", "stats", "done", "ledger", _LEFTOVER}
)


@contextlib.contextmanager
def bucket_run(
    url: BucketURL, settings: S3Settings, *, parent: Path | None = None
) -> Iterator[RunFolder]:
    """The run in the bucket at ``url``, as a :class:`RunFolder`: its documents and ledger
    snapshots copied into a temporary folder (in ``parent``), removed on exit."""
    with ObjectStore(url.bucket, settings) as store:
        store.check()
        # The documents' folders only, never the parts (a large run has many thousands).
        generations = [
            folder
            for folder in store.folders(url.folder)
            if generation_of_name(url.relative(folder).rstrip("/")) is not None
        ]
        listed = [
            entry
            for base in [url.folder, *generations]
            for name in sorted(_COPIED)
            for entry in store.list(base + name)
        ]
        if not any(url.relative(o.key) == "run.json" for o in listed):
            raise RunFolderError(f"{url} is not a fetchshard run (no run.json)")
        if parent is not None:
            parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetchshard-copy-", dir=parent) as tmp:
            copy = Path(tmp)
            for entry in listed:
                relative = PurePosixPath(url.relative(entry.key))
                if not relative.parts or _top(relative) not in _COPIED:
                    continue
                target = copy.joinpath(*relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                store.get_file(entry.key, target)  # gone since the listing: as if never there
            storage = BucketStorage(copy, url, store)
            try:
                yield RunFolder(copy, storage=storage, location=str(url))
            finally:
                storage.close()
