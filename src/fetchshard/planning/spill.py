"""Sorting more rows than fit in memory: sorted runs spilled to disk, and their merge.

``RunSorter`` holds the rows it is given until they reach a third of its budget (the heap they
leave and their sorted copy take the rest), then sorts them and writes them as one run (Arrow
IPC, LZ4). At the
end, a sorter that never spilled sorts in memory; else it merges its runs, streaming: each
step holds one block of every run, the frontier is the smallest of the runs' last loaded keys
(no row still on disk is below it), and every loaded row at or below it goes out, the pieces
sorted together; the run whose block ended at the frontier loads its next. With more runs
than blocks fit in the budget, groups of them are first merged into longer runs.

The keys must order the rows totally (the plan step's end in the row's position, unique): the
rows then come out in the one order ``Table.sort_by`` gives, however they were cut.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from fetchshard.planning import Interrupted

# A run's rows are read in blocks of at least this (below, seeks and per-step work dominate)
# and merged at most MAX_FAN_IN at a time (above, the blocks shrink for no gain: two passes
# at 64 runs each already sort 4096 runs).
MIN_BLOCK_BYTES = 1 << 20
MAX_FAN_IN = 64
# A run's file is cut into batches this fraction of a block: a block overshoots by at most
# one batch.
_BATCHES_PER_BLOCK = 4
_COMPRESSION = "lz4"  # spilled runs are read once and may be on a shared filesystem
# A run is a third of the budget: rows held take about 1.5 times their Arrow size in the heap
# (the selector's temporaries, freed between them, are not given back), their sorted copy as
# much again (measured: a plan rank's RSS of base + 1.5 GB for a budget of 1 GiB at half).
RUN_SHARE = 3


class OverBudget(Exception):
    """The rows handed over at once exceed what the budget can sort; ``needed`` would do."""

    def __init__(self, held: int, needed: int) -> None:
        super().__init__(f"{held} bytes of rows at once need a budget of {needed} bytes")
        self.held = held
        self.needed = needed


@dataclass(frozen=True)
class MergeShape:
    """How a budget is spent: the rows held before a run is spilled, how many runs one merge
    reads together, and how much of each it holds at a time."""

    run_bytes: int
    fan_in: int
    block_bytes: int

    @classmethod
    def of(cls, budget: int) -> MergeShape:
        # Merging holds a block of each run, what goes out of them (at most as much again) and
        # its sorted copy: blocks of a quarter of the budget over the runs.
        fan_in = min(MAX_FAN_IN, budget // (4 * MIN_BLOCK_BYTES))
        if fan_in < 2:
            raise ValueError(f"a budget of {budget} bytes cannot merge two runs")
        return cls(run_bytes=budget // RUN_SHARE, fan_in=fan_in, block_bytes=budget // (4 * fan_in))


class RunSorter:
    """Rows in, any order; the same rows out, sorted by ``keys``, in bounded memory."""

    def __init__(
        self,
        keys: Sequence[str],
        shape: MergeShape,
        run_path: Callable[[int], Path],
        *,
        on_spill: Callable[[int], None] = lambda runs: None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> None:
        self.keys = tuple(keys)
        self.shape = shape
        self._run_path = run_path  # names run n (a merge pass's output takes the next n)
        self._on_spill = on_spill  # told the number of runs spilled so far after each
        # Asked between the pieces of a merge pass: a pass rewrites every run, minutes of
        # work for a slice of tens of GB, and a stopped rank should not wait for it.
        self._should_stop = should_stop
        self._held: list[pa.Table] = []
        self._held_bytes = 0
        self._runs: list[Path] = []
        self._next_run = 0
        self.spilled = 0  # runs written from the rows handed over (merge passes' not counted)

    def add(self, table: pa.Table) -> None:
        """Hold ``table``'s rows; spill them with those held when they reach a run's size."""
        size = table.nbytes
        if size > self.shape.run_bytes:  # no run could hold it
            raise OverBudget(size, RUN_SHARE * size)
        if self._held_bytes + size > self.shape.run_bytes:
            self._spill()
        self._held.append(table)
        self._held_bytes += size

    def sorted(self) -> Generator[pa.Table, None, None]:
        """Every row handed over, in order, in pieces; the runs are removed once merged."""
        if not self._runs:
            if self._held:
                table = self._sort(pa.concat_tables(self._held))
                self._held, self._held_bytes = [], 0
                yield table
            return
        if self._held:
            self._spill()
        runs = self._runs
        while len(runs) > self.shape.fan_in:  # a pass: groups of fan_in runs into one each
            merged = []
            for start in range(0, len(runs), self.shape.fan_in):
                group = runs[start : start + self.shape.fan_in]
                if len(group) == 1:  # the last group, alone: already a run
                    merged += group
                    continue
                merged.append(self._merge_into_run(group))
                _remove(group)
            runs = merged
        self._runs = runs
        yield from merge_runs(runs, self.keys, self.shape.block_bytes)
        _remove(runs)
        self._runs = []

    def _sort(self, table: pa.Table) -> pa.Table:
        return table.sort_by([(key, "ascending") for key in self.keys])

    def _spill(self) -> None:
        table = pa.concat_tables(self._held)
        self._held, self._held_bytes = [], 0
        table = self._sort(table)  # the unsorted rows go as the sorted copy is made
        path = self._new_run()
        with _RunWriter(path, table.schema, self._batch_rows(table)) as writer:
            writer.write(table)
        self._runs.append(path)
        self.spilled += 1
        self._on_spill(self.spilled)

    def _merge_into_run(self, group: list[Path]) -> Path:
        path = self._new_run()
        writer: _RunWriter | None = None
        try:
            for piece in merge_runs(group, self.keys, self.shape.block_bytes):
                if self._should_stop():
                    raise Interrupted("planning interrupted while merging spilled runs")
                if writer is None:
                    writer = _RunWriter(path, piece.schema, self._batch_rows(piece))
                writer.write(piece)
        finally:
            if writer is not None:
                writer.close()
        return path

    def _new_run(self) -> Path:
        path = self._run_path(self._next_run)
        self._next_run += 1
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _batch_rows(self, sample: pa.Table) -> int:
        """Rows per batch of a run's file, from the bytes a row of ``sample`` takes."""
        per_row = max(sample.nbytes / max(len(sample), 1), 1.0)
        return max(1, int(self.shape.block_bytes / _BATCHES_PER_BLOCK / per_row))


class _RunWriter:
    """One run's file: batches of at most ``batch_rows`` rows, compressed."""

    def __init__(self, path: Path, schema: pa.Schema, batch_rows: int) -> None:
        options = ipc.IpcWriteOptions(compression=_COMPRESSION)
        self._writer = ipc.new_file(str(path), schema, options=options)
        self._batch_rows = batch_rows

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(table, max_chunksize=self._batch_rows)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> _RunWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def merge_runs(paths: Sequence[Path], keys: Sequence[str], block_bytes: int) -> Iterator[pa.Table]:
    """The rows of the runs at ``paths`` (each sorted by ``keys``) in order, in pieces,
    holding about one block of ``block_bytes`` of each run and what one step puts out."""
    runs = [_Cursor(path, keys, block_bytes) for path in paths]
    sort_keys = [(key, "ascending") for key in keys]
    try:
        while True:
            for run in runs:
                if not run.rows and run.more:
                    run.load()
            live = [run for run in runs if run.rows]
            if not live:
                return
            waiting = [run.last() for run in live if run.more]
            frontier = min(waiting) if waiting else None  # None: every run is fully loaded
            pieces = []
            for run in live:
                count = run.rows if frontier is None else run.count_at_most(frontier)
                if count:
                    pieces.append(run.take(count))
            if len(pieces) == 1:
                yield pieces[0]
            else:
                yield pa.concat_tables(pieces).sort_by(sort_keys)
    finally:
        for run in runs:
            run.close()


class _Cursor:
    """One run being merged: the rows of its current block not yet put out."""

    def __init__(self, path: Path, keys: Sequence[str], block_bytes: int) -> None:
        self._file = pa.OSFile(str(path), "rb")  # read, not mapped: a block is freed once out
        self._reader = ipc.open_file(self._file)
        self._batches: int = self._reader.num_record_batches
        self._keys = tuple(keys)
        self._block_bytes = block_bytes
        self._next = 0
        self._table: pa.Table | None = None
        self._columns: list[np.ndarray] = []
        self.rows = 0

    @property
    def more(self) -> bool:
        """Whether batches of the run are still on disk."""
        return self._next < self._batches

    def load(self) -> None:
        """Read the next block: batches until it holds ``block_bytes``, or the run ends."""
        batches = []
        size = 0
        rows = 0
        while self.more and (size < self._block_bytes or not rows):  # never an empty block
            batch = self._reader.get_batch(self._next)
            self._next += 1
            batches.append(batch)
            size += batch.nbytes
            rows += batch.num_rows
        self._table = pa.Table.from_batches(batches, schema=self._reader.schema)
        self._columns = [self._table.column(key).to_numpy() for key in self._keys]
        self.rows = len(self._table)

    def last(self) -> tuple[Any, ...]:
        return tuple(column[-1] for column in self._columns)

    def count_at_most(self, bound: tuple[Any, ...]) -> int:
        """How many of the held rows are at or below ``bound`` (a prefix: they are sorted)."""
        lo, hi = 0, self.rows
        for column, value in zip(self._columns, bound, strict=True):
            part = column[lo:hi]  # the rows equal to the bound on every earlier key
            lo, hi = (
                lo + int(np.searchsorted(part, value, side="left")),
                lo + int(np.searchsorted(part, value, side="right")),
            )
            if lo == hi:
                return lo
        return hi

    def take(self, count: int) -> pa.Table:
        """The first ``count`` held rows, which leave the block."""
        assert self._table is not None
        out = self._table.slice(0, count)
        self._table = self._table.slice(count)
        self._columns = [column[count:] for column in self._columns]
        self.rows -= count
        return out

    def close(self) -> None:
        self._file.close()


def _remove(paths: Sequence[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
