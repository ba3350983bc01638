"""The planned item, declared once, and the file that holds a rank's planned items.

The row: :class:`PlannedItem` declares every field of a planned item and its type. The items
file holds each of them but the host's name (kept once per host, in the ledger's ``hosts``
table), in the order :data:`ITEM_COLUMNS` gives; its Arrow :data:`ITEM_SCHEMA` is derived from
the two. :class:`WorkItem` is the same item as the queue hands it to a fetcher: the planned
columns (checked at import to match) and its attempt state; :data:`STATE_COLUMNS`, the SQL
columns of ``states`` a WorkItem is read from, is derived from its fields. Everything that
reads the file reads it by column name (``planning/slicefiles.py``, ``planning/select.py``
and ``planning/planfile.py`` name their columns from here too).

The file: one Arrow IPC file per rank, sorted by (host_id, item_id), never changed. Planning
used to insert every kept row into SQLite, which cost ~6 µs per row at world size 1 (a B-tree
keyed by hash, then its index): 141 k rows/s for a rank that keeps everything. Here planning
appends the rows to :data:`BUCKETS` scratch streams, split by the top bits of their host id;
:meth:`Stage.finish` then reads one bucket at a time, keeps the lowest input row of each item
id (an item id decides its host, so repeats share a bucket), sorts it and appends it to the
file. A bucket larger than :data:`PIECE_ROWS` (one host holding much of the slice) is first
split by item id, so memory holds one piece, whatever the slice. The ledger keeps where each
host's runs of rows lie, and records in SQLite only what changes (retries, deferrals, commits).

Fixed-size record batches of :data:`BATCH_ROWS` rows make a row's batch its position divided
by that; the reader reads a batch at a time into a small cache (reads, not a memory map, so
the pages read do not stay in the rank's RSS for the rest of the run).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import os
import shutil
import typing
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

# Items that never reach the network (bad URLs) live under this host id.
NO_HOST = 0


@dataclass(frozen=True, slots=True)
class PlannedItem:
    """One planned item: the declaration of the row (see the module docstring)."""

    item_id: int
    host_id: int
    host: str
    url: str  # the input's text, as the output shows it
    extras: str | None  # JSON of the extra input columns, decoded by the writer
    error_kind: str | None = None  # set for items that fail before fetching (bad_url)
    error_message: str | None = None
    fetch_url: str | None = None  # normalize_url(url).url when that differs from url


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One pending item as the scheduler hands it to a fetcher (or back, to retry).

    Built per URL on the hot path: a plain slotted dataclass, no checks of its own."""

    item_id: int
    url: str
    extras: str | None
    attempts: int
    next_attempt_at: float
    error_kind: str | None
    error_message: str | None
    http_status: int | None
    fetch_url: str | None  # what to request when it is not ``url`` itself (normalized)
    host_id: int


# The items file's columns, in their order on disk: every field of PlannedItem but ``host``.
ITEM_COLUMNS = ("item_id", "host_id", "url", "fetch_url", "extras", "error_kind", "error_message")

# The SQL columns of ``states`` a WorkItem is read from, in its fields' order.
STATE_COLUMNS = ", ".join(f.name for f in dataclasses.fields(WorkItem))

_ARROW_TYPES: dict[object, tuple[pa.DataType, bool]] = {  # a field's type -> (type, nullable)
    int: (pa.int64(), False),
    str: (pa.string(), False),
    str | None: (pa.string(), True),
}


def _item_schema() -> pa.Schema:
    planned = typing.get_type_hints(PlannedItem)
    work = typing.get_type_hints(WorkItem)
    if set(planned) - set(ITEM_COLUMNS) != {"host"}:
        raise TypeError("ITEM_COLUMNS must name every field of PlannedItem but host")
    differ = [name for name in ITEM_COLUMNS if work.get(name) != planned[name]]
    if differ:
        raise TypeError(f"WorkItem must carry {differ} as PlannedItem declares them")
    fields = []
    for name in ITEM_COLUMNS:
        arrow_type, nullable = _ARROW_TYPES[planned[name]]
        fields.append(pa.field(name, arrow_type, nullable=nullable))
    return pa.schema(fields)


ITEM_SCHEMA = _item_schema()

BATCH_ROWS = 2048
_BUCKET_BITS = 6
BUCKETS = 1 << _BUCKET_BITS  # host ids are 63-bit hashes: the top 6 of them pick a bucket
_CACHED_BATCHES = 32  # ~8 MB of URLs


@dataclass(frozen=True, slots=True)
class Span:
    """A run of one host's rows in the file (a host has one per piece of its bucket)."""

    host_id: int
    first: int
    count: int


def to_batch(columns: dict[str, Any], rows: int) -> pa.RecordBatch:
    """A batch of the file's schema from some of its columns, by name (the others are null)."""
    arrays = []
    for field in ITEM_SCHEMA:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(rows, field.type))
        elif isinstance(values, pa.ChunkedArray):
            arrays.append(values.combine_chunks().cast(field.type))
        elif isinstance(values, pa.Array):
            arrays.append(values.cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=ITEM_SCHEMA)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ------------------------------------------------------------------- writing the file

_POS = "pos"  # the staged rows' input row numbers
_STAGE_SCHEMA = ITEM_SCHEMA.append(pa.field(_POS, pa.int64(), nullable=False))
_BAD = -1  # the bucket of rows without a host (bad URLs)
_FLUSH_ROWS = 2048  # per stream: ~16 MB buffered over 64 streams at ~120 bytes per row
# Rows sorted in memory at once (~30 MB of URLs). A bigger bucket (a host holding much of the
# slice) is split by item id into pieces of about this size: its rows in the file are then
# several runs, one per piece, each sorted by id and in id order.
PIECE_ROWS = 1 << 18


class _Streams:
    """Rows appended to one scratch stream per key, buffered: one write per ~2048 rows of a
    key, not one per input batch and key."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._folder = folder
        self._writers: dict[int, pa.ipc.RecordBatchStreamWriter] = {}
        self._buffers: dict[int, list[pa.RecordBatch]] = {}
        self.rows: dict[int, int] = {}

    def add(self, keys: np.ndarray, batch: pa.RecordBatch) -> None:
        # Keys are small: as int16 numpy's stable sort is a radix sort.
        order = np.argsort(keys.astype(np.int16), kind="stable")
        keys = keys[order]
        batch = batch.take(pa.array(order))
        starts = np.flatnonzero(np.diff(keys, prepend=keys[:1] - 1)).tolist()
        for start, stop in itertools.pairwise([*starts, len(keys)]):
            key = int(keys[start])
            self._buffers.setdefault(key, []).append(batch.slice(start, stop - start))
            before = self.rows.get(key, 0)
            self.rows[key] = before + stop - start
            if self.rows[key] // _FLUSH_ROWS > before // _FLUSH_ROWS:
                self._flush(key)

    def _path(self, key: int) -> Path:
        return self._folder / ("bad.arrows" if key == _BAD else f"{key:03d}.arrows")

    def _flush(self, key: int) -> None:
        parts = self._buffers.pop(key, [])
        if not parts:
            return
        writer = self._writers.get(key)
        if writer is None:
            writer = self._writers[key] = pa.ipc.new_stream(str(self._path(key)), _STAGE_SCHEMA)
        writer.write_batch(pa.Table.from_batches(parts).combine_chunks().to_batches()[0])

    def close(self) -> None:
        for key in list(self._buffers):
            self._flush(key)
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def batches(self, key: int) -> Iterator[pa.RecordBatch]:
        with pa.OSFile(str(self._path(key)), "rb") as source:
            yield from pa.ipc.open_stream(source)

    def read(self, key: int) -> pa.Table:
        with pa.OSFile(str(self._path(key)), "rb") as source:
            return pa.ipc.open_stream(source).read_all().combine_chunks()

    def remove(self, key: int) -> None:
        self._path(key).unlink(missing_ok=True)

    def discard(self) -> None:
        self._buffers.clear()
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()
        shutil.rmtree(self._folder, ignore_errors=True)


class Stage:
    """Planned rows on their way into the items file (see the module docstring), in a scratch
    folder of their own (on the file's filesystem: the file is written there, then renamed)."""

    def __init__(self, folder: Path) -> None:
        shutil.rmtree(folder, ignore_errors=True)
        self._folder = folder
        self._streams = _Streams(folder / "buckets")
        self.rows = 0

    def add(self, batch: pa.RecordBatch, positions: np.ndarray) -> None:
        """Stage rows with their input row numbers (of repeated item ids, the lowest wins)."""
        if not batch.num_rows:
            return
        hosts = batch.column("host_id").to_numpy()
        buckets = np.where(hosts == NO_HOST, _BAD, hosts >> (63 - _BUCKET_BITS))
        columns = [*(batch.column(name) for name in ITEM_COLUMNS), pa.array(positions, pa.int64())]
        self._streams.add(buckets, pa.RecordBatch.from_arrays(columns, schema=_STAGE_SCHEMA))
        self.rows += batch.num_rows

    def _pieces(self, bucket: int) -> Iterator[tuple[pa.Table, np.ndarray, np.ndarray]]:
        """A bucket's rows in pieces of at most about PIECE_ROWS distinct ids, in item id
        order; each piece as :func:`_sorted` gives it."""
        rows = self._streams.rows[bucket]
        if rows <= PIECE_ROWS:
            yield _sorted(self._streams.read(bucket))
            self._streams.remove(bucket)
            return
        bits = max(1, int(np.ceil(np.log2(rows / PIECE_ROWS))))
        split = _Streams(self._folder / f"split-{bucket}")
        try:
            for batch in self._streams.batches(bucket):
                split.add(batch.column("item_id").to_numpy() >> (63 - bits), batch)
            split.close()
            self._streams.remove(bucket)
            for key in sorted(split.rows):
                yield _sorted(split.read(key))
                split.remove(key)
        finally:
            split.discard()

    def _bad_index(self) -> tuple[np.ndarray, np.ndarray]:
        """The ids of the bad rows, each with its lowest input position, sorted by id."""
        if _BAD not in self._streams.rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        ids, positions = [], []
        for batch in self._streams.batches(_BAD):
            ids.append(batch.column("item_id").to_numpy())
            positions.append(batch.column(_POS).to_numpy())
        all_ids, all_positions = np.concatenate(ids), np.concatenate(positions)
        order = np.lexsort((all_positions, all_ids))
        all_ids, all_positions = all_ids[order], all_positions[order]
        first = np.ones(len(all_ids), dtype=bool)
        first[1:] = all_ids[1:] != all_ids[:-1]
        return all_ids[first], all_positions[first]

    def finish(self, target: Path) -> tuple[list[Span], int]:
        """Write the items file (atomically, durably); return its spans and row count.

        An item id decides its host, with one exception: a bad URL's id may equal a good
        one's (its key is its raw text, which can be another row's normalized URL). So the
        bad rows go last, and an id in both keeps whichever row came first in the input."""
        self._streams.close()
        bad_ids, bad_pos = self._bad_index()
        bad_keep = np.ones(len(bad_ids), dtype=bool)
        tmp = self._folder / target.name  # renamed into place, or removed with the stage
        out = _Output(tmp)
        try:
            for bucket in sorted(b for b in self._streams.rows if b != _BAD):
                for table, ids, positions in self._pieces(bucket):
                    if len(bad_ids):
                        at = np.minimum(np.searchsorted(bad_ids, ids), len(bad_ids) - 1)
                        both = bad_ids[at] == ids
                        good_first = both & (positions < bad_pos[at])
                        bad_keep[at[good_first]] = False
                        if (both & ~good_first).any():
                            table = table.filter(pa.array(~(both & ~good_first)))
                    out.write(table.drop_columns([_POS]))
            if len(bad_ids):
                dropped = bad_ids[~bad_keep]
                for table, ids, _ in self._pieces(_BAD):
                    if len(dropped):
                        table = table.filter(pa.array(~np.isin(ids, dropped)))
                    out.write(table.drop_columns([_POS]))
            out.close()
        except BaseException:
            out.abort()
            raise
        os.replace(tmp, target)
        _fsync_folder(target.parent)
        return out.spans, out.rows

    def discard(self) -> None:
        self._streams.discard()
        shutil.rmtree(self._folder, ignore_errors=True)


def _sorted(table: pa.Table) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    """The rows sorted by (host_id, item_id), only the lowest input position of each item
    id; and their ids and positions."""
    ids = table.column("item_id").to_numpy()
    positions = table.column(_POS).to_numpy()
    order = np.lexsort((ids, table.column("host_id").to_numpy()))
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


class _Output:
    """The items file being written: fixed-size batches, and where each host's rows lie."""

    def __init__(self, path: Path) -> None:
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = pa.ipc.new_file(self._sink, ITEM_SCHEMA)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.rows = 0
        self.spans: list[Span] = []

    def write(self, table: pa.Table) -> None:
        """Append rows sorted by host; each host's run of rows becomes a span."""
        if not table.num_rows:
            return
        hosts = table.column("host_id").to_numpy()
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


# ------------------------------------------------------------------- reading the file


class ItemFile:
    """Reads rows of the items file by position, a record batch at a time, each column by its
    name (wherever the file holds it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._source = pa.OSFile(str(path), "rb")
        self._reader = pa.ipc.open_file(self._source)
        names = self._reader.schema.names
        missing = [name for name in ITEM_COLUMNS if name not in names]
        if missing:
            self._source.close()
            raise ValueError(f"{path} is not an items file: no column {', '.join(missing)}")
        self._at = {name: names.index(name) for name in ITEM_COLUMNS}
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
        return int(batch.column(self._at["item_id"])[position % BATCH_ROWS].as_py())

    def find(self, first: int, count: int, after: int) -> int:
        """The position of the first row of ``first .. first+count`` whose id is > ``after``
        (the rows are sorted by id there)."""
        return first + bisect.bisect_right(_Ids(self, first, count), after)

    def fresh(self, start: int, stop: int) -> Iterator[WorkItem]:
        """The items at positions ``start .. stop-1``, as never tried."""
        at = self._at
        while start < stop:
            index, offset = divmod(start, BATCH_ROWS)
            take = min(stop - start, BATCH_ROWS - offset)
            part = self._batch(index).slice(offset, take)
            column = {name: part.column(i).to_pylist() for name, i in at.items()}
            for item_id, host, url, fetch_url, extras, kind, message in zip(
                column["item_id"],
                column["host_id"],
                column["url"],
                column["fetch_url"],
                column["extras"],
                column["error_kind"],
                column["error_message"],
                strict=True,
            ):
                yield WorkItem(item_id, url, extras, 0, 0.0, kind, message, None, fetch_url, host)
            start += take

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every batch in file order, of :data:`ITEM_SCHEMA`, read one at a time (not kept in
        the cache)."""
        for index in range(self._reader.num_record_batches):
            yield self._reader.get_batch(index).select(list(ITEM_COLUMNS))

    def read_all(self) -> pa.Table:
        return self._reader.read_all().select(list(ITEM_COLUMNS))


class _Ids:
    """Item ids of a range of rows as a sequence, for :func:`bisect.bisect_right`."""

    def __init__(self, file: ItemFile, first: int, count: int) -> None:
        self._file, self._first, self._count = file, first, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> int:
        return self._file.item_id(self._first + index)
