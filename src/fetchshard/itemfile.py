"""A rank's planned items: one Arrow IPC file, sorted by (host_id, item_id), never changed.

Planning used to insert every kept row into SQLite, which cost ~6 µs per row at world size 1
(a B-tree keyed by hash, then its index): 141 k rows/s for a rank that keeps everything.
Here planning appends the rows to :data:`BUCKETS` scratch streams, split by the top bits of
their host id; :meth:`Stage.finish` then reads one bucket at a time, drops repeated item ids
(the first staged row wins; an item id decides its host, so repeats share a bucket), sorts it,
and appends it to the file. Memory holds one bucket, not the slice. The ledger keeps, per
host, where its rows start and how many there are, and records in SQLite only what changes
(retries, deferrals, commits).

Fixed-size record batches of :data:`BATCH_ROWS` rows make a row's batch its position divided
by that; the reader reads a batch at a time into a small cache (reads, not a memory map, so
the pages read do not stay in the rank's RSS for the rest of the run).
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fetchshard.paths import TMP_SUFFIX, fsync_path

SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.int64(), nullable=False),
        pa.field("host_id", pa.int64(), nullable=False),
        pa.field("url", pa.string(), nullable=False),
        pa.field("fetch_url", pa.string()),
        pa.field("extras", pa.string()),
        pa.field("error_kind", pa.string()),
        pa.field("error_message", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)

BATCH_ROWS = 2048
_BUCKET_BITS = 6
BUCKETS = 1 << _BUCKET_BITS  # host ids are 63-bit hashes: the top 6 of them pick a bucket
_CACHED_BATCHES = 32  # ~8 MB of URLs


@dataclass(frozen=True, slots=True)
class Span:
    """Where one host's rows lie in the file."""

    host_id: int
    first: int
    count: int


def to_batch(columns: dict[str, Any], rows: int) -> pa.RecordBatch:
    """A batch of the file's schema from some of its columns (the others are null)."""
    arrays = []
    for field in SCHEMA:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(rows, field.type))
        elif isinstance(values, pa.ChunkedArray):
            arrays.append(values.combine_chunks().cast(field.type))
        elif isinstance(values, pa.Array):
            arrays.append(values.cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=SCHEMA)


_STAGE_SCHEMA = SCHEMA.append(pa.field("pos", pa.int64(), nullable=False))
_BAD = -1  # the bucket of rows without a host (bad URLs)
_FLUSH_ROWS = 2048  # per bucket: ~16 MB buffered in all at ~120 bytes per row


class Stage:
    """Planned rows on their way into the items file (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self._folder = folder
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        # A small slice puts a few rows per input batch in each bucket: written one by one,
        # they cost more than the rows themselves (~40 µs per write).
        self._buffers: dict[int, list[pa.RecordBatch]] = {}
        self._buffered: dict[int, int] = {}
        self.rows = 0

    def add(self, batch: pa.RecordBatch, positions: np.ndarray) -> None:
        """Stage rows with their input row numbers (of repeated item ids, the lowest wins)."""
        n = batch.num_rows
        if not n:
            return
        hosts = batch.column(1).to_numpy()
        buckets = np.where(hosts == 0, _BAD, hosts >> (63 - _BUCKET_BITS))
        order = np.argsort(buckets, kind="stable")
        columns = [*batch.columns, pa.array(positions, type=pa.int64())]
        batch = pa.RecordBatch.from_arrays(columns, schema=_STAGE_SCHEMA).take(pa.array(order))
        buckets = buckets[order]
        starts = np.flatnonzero(np.diff(buckets, prepend=_BAD - 1)).tolist()
        for start, stop in itertools.pairwise([*starts, n]):
            bucket = int(buckets[start])
            part = batch.slice(start, stop - start)
            self._buffers.setdefault(bucket, []).append(part)
            self._buffered[bucket] = self._buffered.get(bucket, 0) + (stop - start)
            if self._buffered[bucket] >= _FLUSH_ROWS:
                self._flush(bucket)
        self.rows += n

    def _flush(self, bucket: int) -> None:
        parts = self._buffers.pop(bucket, [])
        self._buffered.pop(bucket, None)
        if parts:
            self._writer(bucket).write_batch(
                pa.Table.from_batches(parts).combine_chunks().to_batches()[0]
            )

    def _path(self, bucket: int) -> Path:
        return self._folder / ("bad.arrows" if bucket == _BAD else f"bucket-{bucket:02d}.arrows")

    def _writer(self, bucket: int) -> pa.ipc.RecordBatchStreamWriter:
        writer = self._writers.get(bucket)
        if writer is None:
            writer = self._writers[bucket] = pa.ipc.new_stream(
                str(self._path(bucket)), _STAGE_SCHEMA
            )
        return writer

    def _read(self, bucket: int) -> tuple[pa.Table, np.ndarray, np.ndarray]:
        """A bucket's rows, first of each item id only, sorted by (host_id, item_id); and
        their ids and staged positions."""
        with pa.OSFile(str(self._path(bucket)), "rb") as source:
            table = pa.ipc.open_stream(source).read_all().combine_chunks()
        ids = table.column(0).to_numpy()
        positions = table.column("pos").to_numpy()
        order = np.lexsort((ids, table.column(1).to_numpy()))
        ids = ids[order]
        first = np.ones(len(ids), dtype=bool)  # the first row of each run of one id
        first[1:] = ids[1:] != ids[:-1]
        if not first.all():  # of a repeated id keep the row of the lowest input position
            run = np.cumsum(first) - 1
            lowest = np.full(int(run[-1]) + 1, np.iinfo(np.int64).max)
            np.minimum.at(lowest, run, positions[order])
            first = positions[order] == lowest[run]
        order = order[first]
        return table.take(pa.array(order)), ids[first], positions[order]

    def finish(self, target: Path) -> tuple[list[Span], int]:
        """Write the items file (atomically, durably); return its host spans and row count.

        An item id decides its host, with one exception: a bad URL's id may equal a good
        one's (its key is its raw text, which can be another row's normalized URL). So the
        bad rows go last, and an id in both keeps whichever row was staged first."""
        for bucket in list(self._buffers):
            self._flush(bucket)
        for writer in self._writers.values():
            writer.close()
        bad_ids = bad_pos = np.zeros(0, dtype=np.int64)
        if _BAD in self._writers:
            _, bad_ids, bad_pos = self._read(_BAD)
            by_id = np.argsort(bad_ids)
            bad_ids, bad_pos = bad_ids[by_id], bad_pos[by_id]
        bad_keep = np.ones(len(bad_ids), dtype=bool)
        tmp = target.with_name(target.name + TMP_SUFFIX)
        out = _Output(tmp)
        try:
            for bucket in sorted(b for b in self._writers if b != _BAD):
                table, ids, positions = self._read(bucket)
                if len(bad_ids):
                    at = np.minimum(np.searchsorted(bad_ids, ids), len(bad_ids) - 1)
                    both = bad_ids[at] == ids
                    good_first = both & (positions < bad_pos[at])
                    bad_keep[at[good_first]] = False
                    if (both & ~good_first).any():
                        table = table.filter(pa.array(~(both & ~good_first)))
                out.write(table.drop_columns(["pos"]))
            if len(bad_ids):
                table, ids, _ = self._read(_BAD)
                dropped = bad_ids[~bad_keep]
                if len(dropped):
                    table = table.filter(pa.array(~np.isin(ids, dropped)))
                out.write(table.drop_columns(["pos"]))
            out.close()
        except BaseException:
            out.abort()
            raise
        os.replace(tmp, target)
        fsync_path(target.parent)
        return out.spans, out.rows

    def discard(self) -> None:
        self._buffers.clear()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        shutil.rmtree(self._folder, ignore_errors=True)


class _Output:
    """The items file being written: fixed-size batches, and where each host's rows lie."""

    def __init__(self, path: Path) -> None:
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, SCHEMA)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self.spans: list[Span] = []

    def write(self, table: pa.Table) -> None:
        """Append rows sorted by host (a host's rows in one call)."""
        if not table.num_rows:
            return
        hosts = table.column(1).to_numpy()
        starts = np.flatnonzero(np.diff(hosts, prepend=hosts[:1] - 1)).tolist()
        for start, stop in itertools.pairwise([*starts, len(hosts)]):
            self.spans.append(Span(int(hosts[start]), self.rows + start, stop - start))
        self.rows += table.num_rows
        self._pending.append(table)
        self._pending_rows += table.num_rows
        # Every batch but the last holds exactly BATCH_ROWS rows (see ItemFile).
        if self._pending_rows >= BATCH_ROWS:
            whole = pa.concat_tables(self._pending).combine_chunks()
            cut = self._pending_rows - self._pending_rows % BATCH_ROWS
            self._writer.write_table(whole.slice(0, cut), max_chunksize=BATCH_ROWS)
            self._pending, self._pending_rows = [whole.slice(cut)], self._pending_rows - cut

    def close(self) -> None:
        if self._pending_rows:
            self._writer.write_table(pa.concat_tables(self._pending).combine_chunks())
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()
        self._sink.close()


class ItemFile:
    """Reads rows of the items file by position, a record batch at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._source = pa.OSFile(str(path), "rb")
        self._reader = pa.ipc.open_file(self._source)
        self._cache: OrderedDict[int, pa.RecordBatch] = OrderedDict()

    def close(self) -> None:
        self._cache.clear()
        self._source.close()

    def _batch(self, index: int) -> pa.RecordBatch:
        batch = self._cache.get(index)
        if batch is None:
            batch = self._cache[index] = self._reader.get_batch(index)
            if len(self._cache) > _CACHED_BATCHES:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(index)
        return batch

    def item_id(self, position: int) -> int:
        batch = self._batch(position // BATCH_ROWS)
        return int(batch.column(0)[position % BATCH_ROWS].as_py())

    def find(self, first: int, count: int, after: int) -> int:
        """The position of the first row of ``first .. first+count`` whose id is > ``after``
        (the rows are sorted by id there)."""
        return first + bisect.bisect_right(_Ids(self, first, count), after)

    def rows(self, start: int, stop: int) -> Iterator[tuple[Any, ...]]:
        """The rows at positions ``start .. stop-1``, as tuples in :data:`COLUMNS` order."""
        while start < stop:
            index, offset = divmod(start, BATCH_ROWS)
            take = min(stop - start, BATCH_ROWS - offset)
            part = self._batch(index).slice(offset, take)
            yield from zip(*(column.to_pylist() for column in part.columns), strict=True)
            start += take

    def read_all(self) -> pa.Table:
        return self._reader.read_all()


class _Ids:
    """Item ids of a range of rows as a sequence, for :func:`bisect.bisect_right`."""

    def __init__(self, file: ItemFile, first: int, count: int) -> None:
        self._file, self._first, self._count = file, first, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> int:
        return self._file.item_id(self._first + index)
