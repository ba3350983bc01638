"""The plan step's slice files and a run rank's runs in them, without a network."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.config import MIN_PLAN_MEMORY, Config, InputConfig, OutputConfig, PlanConfig
from fetchshard.errors import ConfigError
from fetchshard.planning.assignment import Assignment
from fetchshard.planning.planfile import RankRuns
from fetchshard.planning.slicefiles import (
    BATCH_ROWS,
    INDEX_STRIDE,
    ITEMS,
    SORT_KEYS,
    SliceItems,
    SliceWriter,
    as_items,
    batch_extent,
    read_hosts,
    write_slice,
)
from fetchshard.planning.spill import MergeShape, RunSorter
from fetchshard.planning.step import plan_step_rank
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.layout import PlanPaths


def _items(n: int, hosts: int, seed: int) -> pa.Table:
    """Rows of a slice: Zipf hosts (a few very heavy), uniform keys, some repeated keys."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, hosts + 1) ** 1.3
    host_hashes = rng.integers(0, 2**64, hosts, dtype=np.uint64)
    which = rng.choice(hosts, n, p=weights / weights.sum())
    keys = rng.integers(0, 2**64, n, dtype=np.uint64)
    keys[: n // 50] = keys[n // 50 : 2 * (n // 50)]  # duplicates of other rows' keys
    return pa.table(
        {
            "host_hash": host_hashes[which],
            "key_hash": keys,
            "position": np.arange(n, dtype=np.int64),
            "host_id": (host_hashes[which] >> np.uint64(1)).astype(np.int64),
            "host": [f"h{w}" for w in which],
            "url": [f"http://h{w}/{i}" for i, w in enumerate(which)],
            "fetch_url": pa.nulls(n, pa.string()),
            "extras": pa.nulls(n, pa.string()),
            "error_kind": pa.nulls(n, pa.string()),
            "error_message": pa.nulls(n, pa.string()),
        }
    )


@pytest.fixture
def written(tmp_path: Path) -> tuple[PlanPaths, pa.Table]:
    paths = PlanPaths(tmp_path)
    table = _items(30_000, 300, seed=1)
    rows, hosts = write_slice(paths.slice(0), table)
    assert rows == 30_000 and hosts == len(set(table.column("host_hash").to_pylist()))
    return paths, table


def test_the_slice_is_sorted_and_its_host_counts_add_up(
    written: tuple[PlanPaths, pa.Table],
) -> None:
    paths, table = written
    with SliceItems.open(paths.slice(0)) as items:
        got = items.read(0, items.rows)
    assert items.rows == len(table)
    pairs = list(
        zip(got.column("host_hash").to_pylist(), got.column("key_hash").to_pylist(), strict=True)
    )
    assert pairs == sorted(pairs)
    assert sorted(got.column("url").to_pylist()) == sorted(table.column("url").to_pylist())
    hosts, counts = read_hosts(paths.slice(0))
    assert (np.diff(hosts.astype(np.float64)) > 0).all() and int(counts.sum()) == len(table)


def test_a_batch_s_extent_is_its_own_bytes_whatever_its_empty_buffers_point_at(
    written: tuple[PlanPaths, pa.Table],
) -> None:
    """What a read asks the kernel for: the batch's bytes, not the rest of the file (the
    all-null columns' empty data buffers point outside the mapping)."""
    paths, _ = written
    size = paths.slice(0).items.stat().st_size
    with SliceItems.open(paths.slice(0)) as items:
        extents = []
        for number in range(-(-items.rows // BATCH_ROWS)):
            batch = items._batch(number)[0]
            extent = batch_extent(batch, items._base, size)
            assert extent is not None
            for column in batch.columns:
                for buffer in column.buffers():
                    if buffer is not None and buffer.size:
                        start = buffer.address - items._base
                        assert extent[0] <= start < start + buffer.size <= extent[1]
            extents.append(extent)
    # Each batch's bytes lie apart from the others', in order, inside the file.
    for (_, stop), (start, _) in itertools.pairwise(extents):
        assert stop <= start
    assert extents[0][0] > 0 and extents[-1][1] < size


def test_lower_bound_is_the_first_row_at_or_after_the_pair(
    written: tuple[PlanPaths, pa.Table],
) -> None:
    paths, _ = written
    with SliceItems.open(paths.slice(0)) as items:
        got = items.read(0, items.rows)
        hosts = got.column("host_hash").to_pylist()
        keys = got.column("key_hash").to_pylist()
        pairs = list(zip(hosts, keys, strict=True))
        rng = np.random.default_rng(2)
        probes = [pairs[int(i)] for i in rng.integers(0, len(pairs), 300)]
        probes += [(h, k + 1) for h, k in probes[:100]] + [(h, 0) for h, _ in probes[:100]]
        probes += [(0, 0), (2**64 - 1, 2**64 - 1), (int(rng.integers(0, 2**63)), 5)]
        probes += [pairs[i * INDEX_STRIDE] for i in range(len(pairs) // INDEX_STRIDE)]
        for host, key in probes:
            key = min(key, 2**64 - 1)
            want = sum(1 for p in pairs if p < (host, key))
            assert items.lower_bound(host, key) == want, (host, key)
        for host in set(hosts[::997]):
            assert items.host_end(host) == sum(1 for h in hosts if h <= host)


@pytest.mark.parametrize("world", [1, 3, 16, 50])
def test_each_rank_s_runs_are_exactly_its_rows(world: int, tmp_path: Path) -> None:
    """Over several slices, rank r's runs hold every row the assignment gives r, and no other."""
    paths = PlanPaths(tmp_path)
    slices = [_items(8000 + 3000 * s, 200, seed=3) for s in range(3)]  # the same hosts
    all_hosts, all_counts = [], []
    for s, table in enumerate(slices):
        write_slice(paths.slice(s), table)
        hosts, counts = read_hosts(paths.slice(s))
        all_hosts.append(hosts)
        all_counts.append(counts)
    hosts = np.concatenate(all_hosts)
    unique, inverse = np.unique(hosts, return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(all_counts)).astype(np.int64)
    assignment = Assignment.from_counts(unique, counts, world)
    assert world == 1 or assignment.pieces, "a heavy host is cut into pieces"
    for rank in range(world):
        runs = RankRuns.of(assignment, rank)
        for s in range(len(slices)):
            with SliceItems.open(paths.slice(s)) as items:
                whole = items.read(0, items.rows)
                ranks = assignment.ranks_of(
                    whole.column("host_hash").to_numpy(), whole.column("key_hash").to_numpy()
                )
                want = np.flatnonzero(ranks == rank).tolist()
                got = [i for start, stop in runs.spans(items) for i in range(start, stop)]
                assert sorted(got) == want and len(set(got)) == len(got), (rank, s)
                # Given the slice's hosts, the searches skip heavy hosts it does not hold.
                present = read_hosts(paths.slice(s))[0]
                assert runs.spans(items, present) == runs.spans(items), (rank, s)


def test_a_slice_of_an_older_plan_does_not_complete_a_new_one(tmp_path: Path) -> None:
    from fetchshard.config import load_config
    from fetchshard.errors import PlanError
    from fetchshard.planning.planfile import plan_in_use

    src = tmp_path / "urls.txt"
    out = tmp_path / "out"

    def config(restart: bool = False) -> Config:
        overrides = {"input.paths": [str(src)], "output.dir": str(out), "run.restart": restart}
        return load_config(environ={}, overrides=overrides)

    src.write_text("".join(f"http://h{i % 7}.org/{i}\n" for i in range(500)))
    for rank in (0, 1):
        plan_step_rank(config(), RankInfo(rank, 2, "test"))
    assert plan_in_use(config(), [src], 2) is not None
    src.write_text("".join(f"http://h{i % 5}.org/new/{i}\n" for i in range(400)))
    with pytest.raises(PlanError, match="another input"):
        plan_step_rank(config(), RankInfo(0, 2, "test"))
    plan_step_rank(config(restart=True), RankInfo(0, 2, "test"))
    # Rank 1's done document is of the old plan: the new one is not complete.
    with pytest.raises(PlanError, match=r"incomplete: 1 of 2 plan ranks .*rank 1\)"):
        plan_in_use(config(), [src], 2)
    kept = plan_step_rank(config(), RankInfo(1, 2, "test"))
    assert kept.rows > 0
    assert plan_in_use(config(), [src], 2) is not None


# (rows, run size, fan-in): a single merge of ~6 runs, merge passes over ~9, two small runs,
# and slices that fit (one row, none).
SPILLED = [(30_000, 400_000, 64), (30_000, 250_000, 3), (1025, 40_000, 2), (1, 40_000, 2),
           (0, 40_000, 2)]  # fmt: skip


@pytest.mark.parametrize(("rows", "run_bytes", "fan_in"), SPILLED)
def test_a_slice_sorted_in_spilled_runs_is_the_same_bytes_as_in_memory(
    rows: int, run_bytes: int, fan_in: int, tmp_path: Path
) -> None:
    """Runs spilled and merged (in one merge or in passes) give the files write_slice gives."""
    table = _items(rows, 300, seed=rows) if rows else ITEMS.empty_table()
    if rows:  # bad URLs have no host name
        hosts = [None if i % 13 == 0 else h for i, h in enumerate(table["host"].to_pylist())]
        table = table.set_column(table.schema.get_field_index("host"), "host", pa.array(hosts))
    want = (rows, len(set(table["host_hash"].to_pylist())))
    memory, spilled = PlanPaths(tmp_path / "memory"), PlanPaths(tmp_path / "spilled")
    assert write_slice(memory.slice(0), table) == want
    files = spilled.slice(0)
    sorter = RunSorter(SORT_KEYS, MergeShape(run_bytes, fan_in, 20_000), files.spill_run)
    for start in range(0, rows, 300):  # as a plan rank gets them: in input order, by batch
        sorter.add(as_items(table.slice(start, 300)))
    with SliceWriter(files) as writer:
        for piece in sorter.sorted():
            writer.add(piece)
        assert writer.publish() == want
    assert (sorter.spilled >= 2) == (rows > 1000), sorter.spilled
    for name in ("items", "hosts", "index"):
        assert getattr(files, name).read_bytes() == getattr(memory.slice(0), name).read_bytes()
    assert files.spill is not None and not list(files.spill.glob("*"))


def test_an_input_batch_larger_than_a_run_is_one_line_naming_the_budget(tmp_path: Path) -> None:
    """The plan step's words for a budget too small (shared with a leftover's, step.over_budget):
    one input batch of 4000 rows of 3 KB is 12 MB, over a 16 MiB budget's run of 5.3."""
    src = tmp_path / "urls.parquet"
    urls = [f"http://h{i % 7}.example/{i}" for i in range(4000)]
    pq.write_table(pa.table({"url": urls, "note": ["n".ljust(3000, "x")] * 4000}), src)
    config = Config(
        input=InputConfig(paths=(str(src),), extra_columns=("note",), batch_rows=16384),
        output=OutputConfig(dir=str(tmp_path / "out")),
        plan=PlanConfig(memory=MIN_PLAN_MEMORY),
    )
    with pytest.raises(ConfigError) as caught:
        plan_step_rank(config, RankInfo(0, 1, "test"))
    message = str(caught.value)
    match = re.fullmatch(
        r"plan\.memory: 16777216 bytes cannot sort plan rank 0's slice: the rows of one input "
        r"batch take (\d+) bytes, more than a run \(a third of it\); set plan\.memory to at "
        r"least (\d+) \((\d+) MiB\), or input\.batch_rows below 16384",
        message,
    )
    assert match is not None, message
    held, needed, mib = (int(g) for g in match.groups())
    assert held > 12_000_000 and needed == 3 * held and mib == -(-needed // (1 << 20))
    assert not PlanPaths(tmp_path / "out").slice(0).done.exists()
