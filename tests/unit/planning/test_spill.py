"""Sorted runs on disk and their merge (planning/spill.py), against a plain sort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from fetchshard.planning import Interrupted
from fetchshard.planning.spill import MergeShape, OverBudget, RunSorter, merge_runs

KEYS = ("host_hash", "key_hash", "position")
SORT = [(key, "ascending") for key in KEYS]


def _rows(n: int, rng: np.random.Generator, first: int = 0, hosts: int = 5) -> pa.Table:
    """Rows with few hosts and many repeated keys: ties on (host, key), broken by position."""
    host_values = rng.integers(0, 2**64, hosts, dtype=np.uint64)
    key_values = rng.integers(0, 2**64, max(n // 3, 1), dtype=np.uint64)
    return pa.table(
        {
            "host_hash": host_values[rng.integers(0, hosts, n)],
            "key_hash": key_values[rng.integers(0, len(key_values), n)],
            "position": np.arange(first, first + n, dtype=np.int64),
            "url": pa.array(
                [f"u{i}" if i % 11 else None for i in range(first, first + n)], pa.string()
            ),
        }
    )


def _write_run(path: Path, table: pa.Table, batch_rows: int) -> None:
    with ipc.new_file(str(path), table.schema) as writer:
        if len(table):
            writer.write_table(table, max_chunksize=batch_rows)


def _merged(paths: list[Path], block_bytes: int) -> pa.Table:
    pieces = list(merge_runs(paths, KEYS, block_bytes))
    for piece in pieces:
        assert len(piece), "no empty pieces"
    schema = ipc.open_file(str(paths[0])).schema
    return pa.concat_tables(pieces).combine_chunks() if pieces else schema.empty_table()


@pytest.mark.parametrize("seed", range(6))
def test_merged_runs_are_the_plain_sort_of_their_rows(seed: int, tmp_path: Path) -> None:
    rng = np.random.default_rng(seed)
    whole = _rows(5000, rng)
    # Runs of random sizes (one empty) from a shuffle, each sorted and cut in small batches.
    order = rng.permutation(len(whole))
    cuts = np.sort(rng.choice(np.arange(1, len(whole)), int(rng.integers(1, 9)), replace=False))
    parts = [order[a:b] for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(whole)], strict=True)]
    parts.insert(int(rng.integers(0, len(parts))), order[:0])
    paths = []
    for i, rows in enumerate(parts):
        paths.append(tmp_path / f"run-{i}.arrow")
        run = whole.take(pa.array(rows, pa.int64())).sort_by(SORT)
        _write_run(paths[-1], run, batch_rows=int(rng.integers(1, 400)))
    for block_bytes in (1, 700, 10_000, 10**9):  # a batch per block .. every run whole
        got = _merged(paths, block_bytes)
        assert got.equals(whole.sort_by(SORT).combine_chunks()), block_bytes


def test_one_run_and_no_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    run = _rows(1000, rng).sort_by(SORT)
    _write_run(tmp_path / "one.arrow", run, batch_rows=64)
    assert _merged([tmp_path / "one.arrow"], 2000).equals(run.combine_chunks())
    empty = run.schema.empty_table()
    _write_run(tmp_path / "a.arrow", empty, 64)
    _write_run(tmp_path / "b.arrow", empty, 64)
    assert list(merge_runs([tmp_path / "a.arrow", tmp_path / "b.arrow"], KEYS, 100)) == []


def test_a_run_whose_next_batch_is_empty_still_holds_back_the_others(tmp_path: Path) -> None:
    """A run's empty batch is no empty block: its rows still on disk bound the frontier."""

    def keyed(hosts: list[int], positions: list[int]) -> pa.Table:
        return pa.table(
            {
                "host_hash": np.array(hosts, np.uint64),
                "key_hash": np.zeros(len(hosts), np.uint64),
                "position": np.array(positions, np.int64),
            }
        )

    low, high = keyed([1, 5], [0, 1]), keyed([2, 3, 9], [2, 3, 4])
    with ipc.new_file(str(tmp_path / "low.arrow"), low.schema) as writer:
        batch = low.combine_chunks().to_batches()[0]
        for start, stop in ((0, 1), (1, 1), (1, 2)):
            writer.write_batch(batch.slice(start, stop - start))
    _write_run(tmp_path / "high.arrow", high, batch_rows=3)  # one block, nothing after
    got = _merged([tmp_path / "low.arrow", tmp_path / "high.arrow"], block_bytes=1)
    assert got.column("host_hash").to_pylist() == [1, 2, 3, 5, 9]


def _sorter(
    tmp_path: Path, shape: MergeShape, spills: list[int], named: list[int] | None = None
) -> RunSorter:
    def run_path(number: int) -> Path:
        if named is not None:
            named.append(number)
        return tmp_path / "spill" / f"run-{number:05d}.arrow"

    return RunSorter(KEYS, shape, run_path, on_spill=spills.append)


@pytest.mark.parametrize(
    ("run_bytes", "fan_in", "passes"),
    [(10**9, 4, False), (20_000, 64, False), (12_000, 2, True), (12_000, 3, True)],
)
def test_the_sorter_gives_the_plain_sort_whatever_it_spills(
    run_bytes: int, fan_in: int, passes: bool, tmp_path: Path
) -> None:
    """In memory, one merge, and merge passes (fan-in 2 and 3 over many runs) agree."""
    rng = np.random.default_rng(run_bytes + fan_in)
    spills: list[int] = []
    named: list[int] = []
    sorter = _sorter(tmp_path, MergeShape(run_bytes, fan_in, block_bytes=3000), spills, named)
    batches = [_rows(int(rng.integers(0, 300)), rng, first=1000 * i) for i in range(40)]
    for batch in batches:
        sorter.add(batch)
    got = pa.concat_tables(list(sorter.sorted())).combine_chunks()
    assert got.equals(pa.concat_tables(batches).sort_by(SORT).combine_chunks())
    assert spills == list(range(1, sorter.spilled + 1))
    assert (sorter.spilled == 0) == (sum(b.nbytes for b in batches) <= run_bytes)
    # A merge pass writes runs of its own, after those spilled from the rows.
    assert named == list(range(len(named)))
    assert (len(named) > sorter.spilled) == passes, (named, sorter.spilled)
    assert not list(tmp_path.glob("spill/*")), "every run removed once merged"


def test_a_stop_ends_a_merge_pass(tmp_path: Path) -> None:
    """A stop asked for while a pass rewrites the runs ends it (a rerun starts the slice over)."""
    rng = np.random.default_rng(5)
    asked: list[int] = []

    def should_stop() -> bool:
        asked.append(1)
        return len(asked) > 2

    sorter = RunSorter(
        KEYS,
        MergeShape(5_000, 2, block_bytes=1000),
        lambda n: tmp_path / "spill" / f"run-{n:05d}.arrow",
        should_stop=should_stop,
    )
    for i in range(20):
        sorter.add(_rows(100, rng, first=100 * i))
    assert sorter.spilled > 2  # more runs than the fan-in: a pass comes first
    with pytest.raises(Interrupted):
        next(sorter.sorted())
    assert len(asked) == 3


def test_runs_never_hold_more_than_their_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    spills: list[int] = []
    sorter = _sorter(tmp_path, MergeShape(10_000, 4, 1000), spills)
    sizes = []
    for i in range(30):
        batch = _rows(100, rng, first=100 * i)
        sorter.add(batch)
        sizes.append(batch.nbytes)
    assert sorter.spilled >= sum(sizes) // 10_000 - 1
    for path in sorted((tmp_path / "spill").glob("*.arrow")):
        assert ipc.open_file(str(path)).read_all().nbytes <= 10_000


def test_a_batch_larger_than_a_run_is_over_budget(tmp_path: Path) -> None:
    sorter = _sorter(tmp_path, MergeShape(1000, 4, 100), [])
    batch = _rows(200, np.random.default_rng(0))
    with pytest.raises(OverBudget) as caught:
        sorter.add(batch)
    assert caught.value.held == batch.nbytes and caught.value.needed == 3 * batch.nbytes


def test_the_shape_of_a_budget() -> None:
    mib = 1 << 20
    assert MergeShape.of(1024 * mib) == MergeShape(1024 * mib // 3, 64, 4 * mib)
    assert MergeShape.of(64 * mib) == MergeShape(64 * mib // 3, 16, mib)
    assert MergeShape.of(16 * mib) == MergeShape(16 * mib // 3, 4, mib)
    with pytest.raises(ValueError, match="cannot merge two runs"):
        MergeShape.of(7 * mib)
