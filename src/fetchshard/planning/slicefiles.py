"""The files of one plan rank's slice, written and read only here (paths: runfolder/layout.py).

- ``rank-N.items.arrow``: every row of the slice as the ledger will hold it, sorted by (host
  hash, key hash): whatever the assignment, one destination rank's rows are a few runs (its
  small hosts' hashes are one interval, a piece of a heavy host one key-hash range). Arrow IPC,
  uncompressed, so a reader memory-maps it and touches only the pages of its runs; written by
  ``SliceWriter`` from rows in order, sorted in memory (``write_slice``) or merged from runs
  spilled to disk (spill.py), the same bytes either way;
- ``rank-N.hosts.arrow``: the slice's rows per host hash (the counting pass, done here once);
- ``rank-N.index.arrow``: every INDEX_STRIDE-th (host hash, key hash) of the items: a run's
  bounds are found in the index, then in one stride of the items (a page of each column).
"""

from __future__ import annotations

import contextlib
import mmap
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from fetchshard.errors import PlanError
from fetchshard.ledger import ITEM_SCHEMA
from fetchshard.runfolder.layout import SliceFiles, tmp_of
from fetchshard.runfolder.storage import LOCAL, Storage
from fetchshard.urls import ID_MASK

INDEX_STRIDE = 1024
# A record batch's buffers lie together in the file: with batches of one stride, the rows of a
# run and the stride searched to find its bounds are a few adjacent regions, read ahead by the
# kernel, instead of one region per column (cold, 400 slices x 20 columns' pages of a run took
# 9 s for one rank's 250k rows, against 2 s warm). A multiple of INDEX_STRIDE.
BATCH_ROWS = INDEX_STRIDE

ITEMS = pa.schema(
    [
        pa.field("host_hash", pa.uint64(), nullable=False),
        pa.field("key_hash", pa.uint64(), nullable=False),
        pa.field("position", pa.int64(), nullable=False),  # the row's order in the input
        ITEM_SCHEMA.field("host_id"),
        pa.field("host", pa.string()),  # None for a bad URL
        # The rest of the planned item (its id is the low bits of the key hash).
        *(f for f in ITEM_SCHEMA if f.name not in ("item_id", "host_id")),
    ]
)
HOSTS = pa.schema([pa.field("host_hash", pa.uint64()), pa.field("rows", pa.int64())])
INDEX = pa.schema([pa.field("host_hash", pa.uint64()), pa.field("key_hash", pa.uint64())])
# A leftover's key hash is its item id times this odd number, mod 2**64 (invertible: the item
# id comes back). A stopped rank leaves each host's highest item ids (its queue goes in id
# order); its low bits would keep that range together, so that a heavy host's pieces (key
# ranges) got all of it. Multiplying spreads any range of ids over every piece.
_KEY_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_KEY_INVERSE = np.uint64(pow(0x9E3779B97F4A7C15, -1, 2**64))


def item_keys(item_ids: np.ndarray) -> np.ndarray:
    """The key hashes a leftover slice gives these item ids."""
    out: np.ndarray = item_ids.astype(np.uint64) * _KEY_MULTIPLIER
    return out


def item_ids(key_hashes: np.ndarray, keys: str) -> np.ndarray:
    """The item ids of a slice's rows from their key hashes (``SliceFiles.keys``)."""
    keys_u64 = key_hashes.astype(np.uint64)
    ids = keys_u64 * _KEY_INVERSE if keys == "item" else keys_u64 & np.uint64(ID_MASK)
    out: np.ndarray = ids.astype(np.int64)
    return out


# Beside a leftover slice: the (item id, part) of the source's committed rows it takes up again.
CARRIED = pa.schema([pa.field("item_id", pa.int64()), pa.field("part", pa.int64())])


# The slice's order: position (the row's order in the input) is unique, so the order is
# total and any correct sort of the same rows, in memory or merged from runs, is the same.
SORT_KEYS = ("host_hash", "key_hash", "position")


def as_items(table: pa.Table) -> pa.Table:
    """Rows of a slice (the selector's plan_rows, a leftover's) in :data:`ITEMS`'s shape."""
    return table.select(ITEMS.names).cast(ITEMS)


def sort_items(items: pa.Table) -> pa.Table:
    """Rows of :data:`ITEMS` in the slice's order (:data:`SORT_KEYS`)."""
    return items.sort_by([(key, "ascending") for key in SORT_KEYS])


def write_slice(files: SliceFiles, items: pa.Table, storage: Storage = LOCAL) -> tuple[int, int]:
    """Sort the slice's rows (:data:`ITEMS`) in memory and publish its three files; return
    (rows, hosts)."""
    with SliceWriter(files, storage) as writer:
        writer.add(sort_items(as_items(items)))
        return writer.publish()


class SliceWriter:
    """A slice's three files from its rows in order, any number at a time: the items in
    batches of BATCH_ROWS, the hosts' rows and the index gathered on the way (16 bytes a host
    and a stride). Each file is written to a tmp file, fsynced and renamed by ``publish``;
    the same rows give the same bytes however they were cut."""

    def __init__(self, files: SliceFiles, storage: Storage = LOCAL) -> None:
        self._files = files
        self._storage = storage
        files.items.parent.mkdir(parents=True, exist_ok=True)
        self._writer = ipc.new_file(str(tmp_of(files.items)), ITEMS)
        self._open = True  # closing an Arrow file writer twice writes its footer twice
        self._pending: pa.Table | None = None  # fewer than BATCH_ROWS rows not yet written
        self._rows = 0
        self._hosts: list[np.ndarray] = []  # host hashes in order, runs of one host merged
        self._counts: list[np.ndarray] = []
        self._index: list[tuple[np.ndarray, np.ndarray]] = []

    def __enter__(self) -> SliceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()  # unpublished, the tmp file stays for the redo to remove

    def _close(self) -> None:
        if self._open:
            self._open = False
            self._writer.close()

    def add(self, rows: pa.Table) -> None:
        """Rows of :data:`ITEMS` that follow, in the slice's order, every row added before."""
        if not len(rows):
            return
        hosts = rows.column("host_hash").to_numpy()
        keys = rows.column("key_hash").to_numpy()
        first = -self._rows % INDEX_STRIDE  # the next multiple of the stride, from here
        # Copies: a strided view would keep every piece's columns alive until the end.
        self._index.append((hosts[first::INDEX_STRIDE].copy(), keys[first::INDEX_STRIDE].copy()))
        starts = np.flatnonzero(np.r_[True, hosts[1:] != hosts[:-1]])
        counts = np.diff(np.r_[starts, len(hosts)]).astype(np.int64)
        unique = hosts[starts]
        if self._hosts and self._hosts[-1][-1] == unique[0]:  # a host across two calls
            self._counts[-1][-1] += counts[0]
            unique, counts = unique[1:], counts[1:]
        if len(unique):  # the last array always holds the last host
            self._hosts.append(unique)
            self._counts.append(counts)
        self._rows += len(rows)
        table = rows if self._pending is None else pa.concat_tables([self._pending, rows])
        whole = len(table) - len(table) % BATCH_ROWS
        for start in range(0, whole, BATCH_ROWS):
            self._writer.write_batch(_exact(table.slice(start, BATCH_ROWS)))
        self._pending = table.slice(whole) if whole < len(table) else None

    def publish(self) -> tuple[int, int]:
        """Write the last batch and the other two files, publish the three; (rows, hosts)."""
        if self._pending is not None:  # an empty slice has no batch
            self._writer.write_batch(_exact(self._pending))
        self._close()
        self._storage.publish(tmp_of(self._files.items), self._files.items)
        index_hosts = [h for h, _ in self._index]
        index_keys = [k for _, k in self._index]
        index = pa.table(
            {"host_hash": _joined(index_hosts), "key_hash": _joined(index_keys)}, schema=INDEX
        )
        _publish(self._files.index, index, INDEX, self._storage)
        hosts = _joined(self._hosts)
        counts = np.concatenate(self._counts) if self._counts else np.zeros(0, np.int64)
        host_table = pa.table({"host_hash": hosts, "rows": counts}, schema=HOSTS)
        _publish(self._files.hosts, host_table, HOSTS, self._storage)
        return self._rows, len(hosts)


def _exact(rows: pa.Table) -> pa.RecordBatch:
    """``rows`` as one batch whose buffers hold exactly its rows, so that its bytes in the file
    are the same however the rows were cut and copied before: Arrow's writer pads a column's
    buffer to 64 bytes with whatever follows the rows in it (a sorted table's next strings,
    a spilled block's), and a bitmap's last byte keeps the bits past the rows."""
    arrays = []
    for column in rows.columns:
        array = column.combine_chunks()
        n, first = len(array), array.offset
        buffers = array.buffers()
        validity = None
        if array.null_count:
            valid = array.is_valid().to_numpy(zero_copy_only=False)
            validity = pa.py_buffer(np.packbits(valid, bitorder="little"))
        if pa.types.is_string(array.type):
            offsets = np.frombuffer(buffers[1], np.int32, n + 1, first * 4)
            start, size = int(offsets[0]), int(offsets[-1] - offsets[0])
            data = pa.py_buffer(b"") if buffers[2] is None else buffers[2].slice(start, size)
            own = [validity, pa.py_buffer(offsets - offsets[0]), data]
        elif pa.types.is_integer(array.type):
            width = array.type.bit_width // 8
            own = [validity, buffers[1].slice(first * width, n * width)]
        else:  # pragma: no cover - ITEMS holds strings and integers only
            raise TypeError(f"no exact copy of a {array.type} column")
        arrays.append(pa.Array.from_buffers(array.type, n, own, null_count=array.null_count))
    return pa.RecordBatch.from_arrays(arrays, schema=ITEMS)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def _publish(path: Path, table: pa.Table, schema: pa.Schema, storage: Storage) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_of(path)
    with ipc.new_file(str(tmp), schema) as writer:
        writer.write_table(table.combine_chunks())
    storage.publish(tmp, path)


def write_carried(path: Path, table: pa.Table, storage: Storage = LOCAL) -> None:
    """Publish a leftover's carried rows (:data:`CARRIED`)."""
    _publish(path, table.cast(CARRIED), CARRIED, storage)


def read_carried(path: Path) -> pa.Table:
    """A leftover's carried rows (:data:`CARRIED`); none when it has no such file."""
    if not path.exists():
        return CARRIED.empty_table()
    with pa.memory_map(str(path)) as source:
        return ipc.open_file(source).read_all()


def read_hosts(files: SliceFiles) -> tuple[np.ndarray, np.ndarray]:
    """The slice's host hashes (sorted) and their rows."""
    with pa.memory_map(str(files.hosts)) as source:
        table = ipc.open_file(source).read_all()
    return (
        table.column("host_hash").to_numpy().astype(np.uint64),
        table.column("rows").to_numpy().astype(np.int64),
    )


def map_random(path: Path) -> mmap.mmap:
    """A plan file memory-mapped with the kernel's read-ahead off.

    W ranks each read a few runs of every slice's files: with read-ahead (8 MB on some
    disks) a cold read of one run fetches megabytes around it. Pages then come one per fault,
    unless asked for in bulk (``madvise(MADV_WILLNEED)``).
    """
    with path.open("rb") as source:
        if os.fstat(source.fileno()).st_size == 0:
            raise PlanError(f"{path} is empty: the plan is damaged")
        mapped = mmap.mmap(source.fileno(), 0, prot=mmap.PROT_READ)
    mapped.madvise(mmap.MADV_RANDOM)
    return mapped


@dataclass
class SliceItems:
    """One slice's items, memory-mapped: find runs by (host hash, key hash), read them."""

    path: Path
    rows: int
    _mapped: mmap.mmap
    _base: int  # the mapping's address: a buffer's offset in the file is its address minus it
    _reader: ipc.RecordBatchFileReader
    _index_hosts: np.ndarray
    _index_keys: np.ndarray
    # Batches fetched so far, with their host_hash and key_hash columns as numpy views of the
    # mapped file (a search touches only the pages it looks at).
    _batches: dict[int, tuple[pa.RecordBatch, np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def open(cls, files: SliceFiles) -> SliceItems:
        with pa.memory_map(str(files.index)) as source:
            index = ipc.open_file(source).read_all()
        mapped = map_random(files.items)
        view = pa.py_buffer(mapped)
        reader = ipc.open_file(view)
        last = reader.num_record_batches - 1
        rows = last * BATCH_ROWS + reader.get_batch(last).num_rows if last >= 0 else 0
        return cls(
            files.items,
            rows,
            mapped,
            view.address,
            reader,
            index.column("host_hash").to_numpy().astype(np.uint64),
            index.column("key_hash").to_numpy().astype(np.uint64),
        )

    def _batch(self, number: int) -> tuple[pa.RecordBatch, np.ndarray, np.ndarray]:
        found = self._batches.get(number)
        if found is None:
            batch = self._reader.get_batch(number)
            found = batch, batch.column(0).to_numpy(), batch.column(1).to_numpy()
            self._batches[number] = found
        return found

    def close(self) -> None:
        self._batches.clear()
        # Tables read from it may outlive it (rank_tables yields them): the mapping then goes
        # with the last of them.
        with contextlib.suppress(BufferError):
            self._mapped.close()

    def _will_need(self, batch: pa.RecordBatch) -> None:
        """Ask the kernel for a batch's bytes in one go: a whole batch is read, and with
        read-ahead off it would come a page per fault."""
        extent = batch_extent(batch, self._base, len(self._mapped))
        if extent is not None:
            start = extent[0] - extent[0] % mmap.PAGESIZE
            self._mapped.madvise(mmap.MADV_WILLNEED, start, extent[1] - start)

    def __enter__(self) -> SliceItems:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _columns(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """host_hash and key_hash of rows start..stop-1 (within one batch)."""
        number, offset = divmod(start, BATCH_ROWS)
        end = offset + stop - start
        _, hosts, keys = self._batch(number)
        return hosts[offset:end], keys[offset:end]

    def lower_bound(self, host: int, key: int = 0) -> int:
        """The first row whose (host hash, key hash) is at least (host, key)."""
        j = _count_below(self._index_hosts, self._index_keys, host, key)
        if j == 0:
            return 0
        start = (j - 1) * INDEX_STRIDE
        stop = min(j * INDEX_STRIDE, self.rows)
        hosts, keys = self._columns(start, stop)
        return start + _count_below(hosts, keys, host, key)

    def host_end(self, host: int) -> int:
        """The first row of a host hash above ``host``."""
        return self.rows if host >= 2**64 - 1 else self.lower_bound(host + 1)

    def read(self, start: int, stop: int) -> pa.Table:
        """Rows start..stop-1 (any span), as a table of :data:`ITEMS`."""
        pieces = []
        while start < stop:
            batch_no, offset = divmod(start, BATCH_ROWS)
            take = min(stop - start, BATCH_ROWS - offset)
            batch = self._batch(batch_no)[0]
            if take * 4 >= BATCH_ROWS:  # a few rows come a page per column, faulted
                self._will_need(batch)
            pieces.append(batch.slice(offset, take))
            start += take
        return pa.Table.from_batches(pieces, schema=ITEMS)


def batch_extent(batch: pa.RecordBatch, base: int, size: int) -> tuple[int, int] | None:
    """The bytes [start, stop) of a file mapped at ``base`` that a batch read from it spans.

    An empty buffer may point anywhere (Arrow's shared zero-size buffer): only buffers with
    bytes inside the mapping count, or the span would run to the end of the file."""
    spans = [
        (b.address - base, b.address - base + b.size)
        for column in batch.columns
        for b in column.buffers()
        if b is not None and b.size and base <= b.address < base + size
    ]
    if not spans:
        return None
    return min(start for start, _ in spans), max(stop for _, stop in spans)


def _count_below(hosts: np.ndarray, keys: np.ndarray, host: int, key: int) -> int:
    """How many of the sorted pairs (hosts, keys) are below (host, key)."""
    h = np.uint64(host)
    lo = int(np.searchsorted(hosts, h, side="left"))
    hi = int(np.searchsorted(hosts, h, side="right"))
    return lo + int(np.searchsorted(keys[lo:hi], np.uint64(key), side="left"))
