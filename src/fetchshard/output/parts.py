"""Parquet part files of one rank, and the commit protocol that makes them exactly-once.

A part is written to ``part-N.parquet.tmp``, fsynced, renamed to ``part-N.parquet``, the
folder fsynced, and only then are its items marked committed in the ledger, in one
transaction. A crash before the rename leaves a tmp file (deleted at start-up); a crash
between the rename and the ledger commit leaves a part the ledger does not know, which
:func:`recover` adopts by reading its item ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fetchshard.clock import SYSTEM, Clock
from fetchshard.config import OutputConfig
from fetchshard.errors import StorageError, UsageError, storage_error
from fetchshard.faults import crash_point
from fetchshard.ledger import Ledger
from fetchshard.output.codecs import body_codec
from fetchshard.output.columns import BASE_COLUMNS, ColumnTable, ResultRow
from fetchshard.output.table import rows_to_table
from fetchshard.runfolder.layout import TMP_SUFFIX, RunPaths
from fetchshard.runfolder.storage import LOCAL, Storage

log = logging.getLogger(__name__)


def recover(
    paths: RunPaths, rank: int, ledger: Ledger, *, storage: Storage = LOCAL, clock: Clock = SYSTEM
) -> int:
    """Delete tmp files and adopt published-but-unrecorded parts; return the next part number."""
    folder = paths.shard_dir(rank)
    folder.mkdir(parents=True, exist_ok=True)
    for entry in sorted(folder.iterdir()):
        if entry.name.endswith(TMP_SUFFIX):
            log.info("removing unfinished part %s", entry.name)
            entry.unlink()
    aborted = storage.abort_uploads(folder)
    if aborted:
        log.warning("aborted %d unfinished uploads of another writer into %s", aborted, folder)
    known = ledger.committed_parts()
    highest = max(known, default=0)
    published = storage.published(folder)
    adopted = 0
    for name in sorted(published):
        number = paths.part_number(folder / name)
        if number is None:
            log.warning("%s is not a part: left as it is", folder / name)
            continue
        highest = max(highest, number)
        if number in known:
            continue
        with storage.open_published(folder / name) as source:
            table = pq.read_table(source, columns=["item_id", "attempts", "error_kind"])
        items = list(
            zip(
                table.column("item_id").to_pylist(),
                table.column("attempts").to_pylist(),
                table.column("error_kind").to_pylist(),
                strict=True,
            )
        )
        ledger.commit_part(number, items, rows=len(items), nbytes=published[name], now=clock.wall())
        log.info("adopted part %s (%d rows) published before its ledger commit", name, len(items))
        adopted += 1
    if adopted:
        # An item in two adopted parts (fetched again by --retry-failed, the ledger rebuilt):
        # the later row is current, and the counts count it once.
        ledger.fold_commits()
    return highest + 1


# Closed parts waiting for their fsync and ledger commit, at most.
_MAX_PENDING_COMMITS = 2


class PartWriter:
    """Streams result rows into row groups of the open part; rolls and commits parts.

    The file work (Arrow conversion, Parquet encoding) runs in a writer thread, in submission
    order, so the event loop goes on fetching meanwhile. Making a closed part durable (fsync,
    rename, the folder's fsync) and its ledger commit run in a second thread, in part order,
    so the writer goes on with the next part's row groups during the fsync (which used to
    hold the loop at the writer's backpressure for ~11 % of a run). The committer has its own
    connection to the ledger; SQLite's locking orders it with the caller's.
    """

    def __init__(
        self,
        paths: RunPaths,
        rank: int,
        ledger: Ledger,
        config: OutputConfig,
        extras: pa.Schema | None,
        next_part: int,
        *,
        columns: ColumnTable = BASE_COLUMNS,
        storage: Storage = LOCAL,
        clock: Clock = SYSTEM,
    ) -> None:
        self._paths = paths
        self._rank = rank
        self._ledger_files = ledger.files  # the worker opens its own connection
        self._config = config
        self._extras = extras
        self._columns = columns
        self._storage = storage
        self._clock = clock  # its wall clock is also read in the committer thread
        self._schema = columns.schema(extras)
        # Dictionary encoding pays only for repetitive columns; on bodies and URLs it hashes
        # every value and then gives up (measured: 0.19 -> 0.085 CPU ms per 67 KB row, zstd).
        self._options: dict[str, Any] = {
            "use_dictionary": columns.dictionary_columns(extras),
            "write_statistics": columns.statistics_columns(extras),
        }
        self._next_part = next_part
        self._part: int | None = None
        self._opened_at = 0.0
        self._buffer: list[ResultRow] = []
        self._buffer_bytes = 0
        self._part_rows: list[tuple[int, int, str | None]] = []
        self._part_bytes = 0
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"writer-{rank}")
        self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"commit-{rank}")
        self._jobs: deque[Future[Any]] = deque()
        self._commits: deque[tuple[Future[Any], int]] = deque()
        self._failed: BaseException | None = None
        self._files: dict[int, pq.ParquetWriter] = {}  # the writer thread's only
        self._worker_ledger: Ledger | None = None  # the committer's only
        self.parts_committed = 0
        self.rows_committed = 0

    @property
    def open_rows(self) -> int:
        """Rows written or buffered but not yet committed."""
        return len(self._part_rows) + sum(rows for _, rows in self._commits)

    def add(self, row: ResultRow) -> None:
        self._buffer.append(row)
        self._part_rows.append((row.item_id, row.attempts, row.error_kind))
        size = 256 + len(row.url) + (len(row.body) if row.body is not None else 0)
        self._buffer_bytes += size
        self._part_bytes += size
        if self._part is None:
            self._part = self._next_part
            self._next_part += 1
            self._opened_at = self._clock.monotonic()
        if self._buffer_bytes >= self._config.row_group_bytes:
            self._flush_row_group()
        if (
            len(self._part_rows) >= self._config.part_max_rows
            or self._part_bytes >= self._config.part_max_bytes
        ):
            self.roll()

    def due(self) -> bool:
        """Whether the open part has been open longer than ``commit_interval``."""
        return (
            self._part is not None
            and self._clock.monotonic() - self._opened_at >= self._config.commit_interval
        )

    def roll(self) -> None:
        """Close the open part in the background; its items commit once it is durable."""
        if self._part is None:
            return
        self._flush_row_group()
        # Parts waiting for their fsync are not in memory, but their dirty pages are: on a
        # disk slower than the network, wait here rather than queue parts without end.
        while len(self._commits) >= _MAX_PENDING_COMMITS:
            self._commits[0][0].result()
            self.reap()
        closed = self._submit(self._close_part, self._part)
        durable = self._committer.submit(
            self._guarded, self._commit_part, closed, self._part, self._part_rows
        )
        self._commits.append((durable, len(self._part_rows)))
        self._part = None
        self._part_rows = []
        self._part_bytes = 0

    def reap(self) -> None:
        """Count the parts committed since the last call; re-raise a failure of the worker."""
        while self._jobs and self._jobs[0].done():
            self._jobs.popleft().result()  # re-raises the worker's error here
        while self._commits and self._commits[0][0].done():
            future, rows = self._commits.popleft()
            future.result()
            self.parts_committed += 1
            self.rows_committed += rows

    def _last(self) -> Future[Any] | None:
        # After a roll the last commit waits for the writer's last job: each thread runs its
        # jobs in order, so that one done means everything is.
        if self._commits:
            return self._commits[-1][0]
        return self._jobs[-1] if self._jobs else None

    def commit(self) -> None:
        """Roll the open part and wait until every part is durable and in the ledger."""
        self.roll()
        last = self._last()
        if last is not None:
            last.result()
        self.reap()

    async def commit_async(self) -> None:
        """:meth:`commit` without blocking the event loop."""
        self.roll()
        last = self._last()
        if last is not None:
            # asyncio.wait, unlike awaiting the future, never cancels the job if we are.
            waited = asyncio.wrap_future(last)
            await asyncio.wait({waited})
            if waited.done() and not waited.cancelled():
                waited.exception()  # seen here (else asyncio logs it); reap() raises it
        self.reap()

    def close(self) -> None:
        """Stop both threads; parts not yet renamed stay tmp files, removed by the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._committer.shutdown(wait=True, cancel_futures=True)
        for file in self._files.values():
            file.close()
        self._files.clear()
        if self._worker_ledger is not None:
            # Opened in the committer; closing from here is safe once it has stopped.
            self._worker_ledger.close()
            self._worker_ledger = None

    def _flush_row_group(self) -> None:
        if not self._buffer:
            return
        assert self._part is not None
        self._submit(self._write_group, self._part, self._buffer)
        self._buffer = []
        self._buffer_bytes = 0

    def _submit(self, job: Callable[..., Any], *args: Any) -> Future[Any]:
        # Backpressure: one job may wait behind the running one, so memory holds at most
        # about three row groups (filling, queued, being written) whatever the disk speed.
        self.reap()
        while len(self._jobs) >= 2:
            self._jobs[0].result()
            self.reap()
        future = self._pool.submit(self._guarded, job, *args)
        self._jobs.append(future)
        return future

    def _guarded(self, job: Callable[..., Any], *args: Any) -> Any:
        # After one failure no later job may run: renaming a part that misses a row group
        # would commit items whose rows are not in it.
        if isinstance(self._failed, StorageError | UsageError):  # not a bug: say it again
            raise type(self._failed)(str(self._failed)) from self._failed
        if self._failed is not None:
            raise RuntimeError("an earlier write failed") from self._failed
        try:
            return job(*args)
        except BaseException as exc:
            full = storage_error(exc, f"the parts of rank {self._rank}")
            self._failed = full or exc
            if full is not None:
                raise full from exc
            raise

    def _write_group(self, part: int, rows: list[ResultRow]) -> None:
        file = self._files.get(part)
        if file is None:
            tmp = self._paths.part_tmp(self._rank, part)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            codecs = dict.fromkeys(self._schema.names, self._config.compression)
            codecs["body"] = body_codec(self._config, rows)
            file = self._files[part] = pq.ParquetWriter(
                tmp, self._schema, compression=codecs, **self._options
            )
        table = rows_to_table(
            rows, self._columns, self._schema, self._extras, self._config.store_body
        )
        file.write_table(table, row_group_size=len(rows))

    def _close_part(self, part: int) -> None:
        self._files.pop(part).close()

    def _commit_part(
        self, closed: Future[Any], part: int, rows: list[tuple[int, int, str | None]]
    ) -> None:
        closed.result()  # the writer has written the footer (or failed: then so does this)
        tmp = self._paths.part_tmp(self._rank, part)
        final = self._paths.part(self._rank, part)
        size = tmp.stat().st_size
        crash_point("before_publish", part)
        # Dropped from the page cache: nothing reads a part back during the run.
        self._storage.publish(tmp, final, drop_cache=True)
        crash_point("after_rename", part)
        if self._worker_ledger is None:
            self._worker_ledger = Ledger(self._ledger_files)
        self._worker_ledger.commit_part(
            part, rows, rows=len(rows), nbytes=size, now=self._clock.wall()
        )
        # A store's publish copies the file (a rename leaves no tmp): gone once recorded.
        tmp.unlink(missing_ok=True)
        log.debug("committed part %d (%d rows)", part, len(rows))
