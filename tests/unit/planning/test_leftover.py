"""leftover.py: what a generation takes over from one rank of an earlier one."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

import fetchshard.planning.leftover as leftover_module
from fetchshard.config import MIN_PLAN_MEMORY, Config, InputConfig, PlanConfig
from fetchshard.environment import FAULT
from fetchshard.errors import ConfigError
from fetchshard.inputs import open_inputs
from fetchshard.ledger import NO_HOST, Ledger, PlannedItem
from fetchshard.planning.leftover import SealContext, Source, leftover, prepare, seal
from fetchshard.planning.slicefiles import ITEMS, item_ids, item_keys, write_slice
from fetchshard.runfolder.generations import Generation
from fetchshard.runfolder.layout import GenerationPaths, RunPaths, SliceFiles, ledger_paths
from fetchshard.urls import ID_MASK

HOSTS = {11: "a.example", 22: "b.example"}


def _source(tmp_path: Path) -> Path:
    """A ledger of 10 items on two hosts and a bad URL: 1-4 ok, 5 failed http_404, 6 failed
    timeout, 7 failed then requeued (--retry-failed in place), 8-10 and the bad URL never
    committed."""
    ledger = Ledger(ledger_paths(tmp_path / "rank-00000.sqlite"))
    items = [
        PlannedItem(i, 11 if i % 2 else 22, HOSTS[11 if i % 2 else 22], f"http://x/{i}", None)
        for i in range(1, 11)
    ]
    items.append(PlannedItem(100, NO_HOST, "", "bad", None, "bad_url", "no scheme"))
    ledger.insert_items(items)
    ok = [(i, 1, None) for i in range(1, 5)]
    ledger.commit_part(1, [*ok, (5, 1, "http_404"), (6, 2, "timeout")], rows=6, nbytes=1, now=0)
    ledger.commit_part(2, [(7, 1, "http_5xx")], rows=1, nbytes=1, now=0)
    ledger.requeue(np.array([7]))
    ledger.close()
    return tmp_path / "rank-00000.sqlite"


def _leftover(
    db: Path,
    chosen: frozenset[str] | None,
    later: list[frozenset[str] | None],
    *,
    previous: bool,
) -> tuple[pa.Table, pa.Table, int, dict[str, int]]:
    """leftover() with its slice rows gathered from the sink into one table, each piece of
    the slice's schema."""
    pieces: list[pa.Table] = []
    carried, kept, errors = leftover(
        db, db.with_suffix(".items.arrow"), chosen, later, previous=previous, sink=pieces.append
    )
    for piece in pieces:
        assert piece.schema == ITEMS and len(piece)
    table = pa.concat_tables(pieces) if pieces else ITEMS.empty_table()
    return table, carried, kept, errors


def _ids(table: pa.Table) -> list[int]:
    return sorted(item_ids(table.column("key_hash").to_numpy(), "item").tolist())


def test_the_generation_after_takes_items_without_a_row_and_the_requeued(tmp_path: Path) -> None:
    db = _source(tmp_path)
    table, carried, kept, errors = _leftover(db, frozenset(), [], previous=True)
    assert table.schema == ITEMS
    assert _ids(table) == [7, 8, 9, 10, 100]
    assert carried.to_pylist() == [{"item_id": 7, "part": 2}]  # its row stays until replaced
    assert kept == 6 and errors == {}
    rows = {r["url"]: r for r in table.to_pylist()}
    assert rows["http://x/8"]["host"] == "b.example" and rows["http://x/9"]["host"] == "a.example"
    assert rows["bad"]["host"] is None and rows["bad"]["error_kind"] == "bad_url"
    for url, row in rows.items():  # the slice's hashes keep the ledger's ids in their low bits
        key = np.array([row["key_hash"]], np.uint64)
        assert item_ids(key, "item")[0] == (100 if url == "bad" else int(url.rsplit("/", 1)[1]))
        assert row["host_hash"] & ID_MASK == row["host_id"]


def test_with_retry_failed_the_chosen_failures_are_taken_with_their_rows(tmp_path: Path) -> None:
    db = _source(tmp_path)
    table, carried, kept, errors = _leftover(db, frozenset({"timeout"}), [], previous=True)
    assert _ids(table) == [6, 7, 8, 9, 10, 100]
    assert sorted(r["item_id"] for r in carried.to_pylist()) == [6, 7]
    assert kept == 5 and errors == {"timeout": 1}
    table, _, kept, errors = _leftover(db, None, [], previous=True)  # every kind
    assert _ids(table) == [5, 6, 7, 8, 9, 10, 100]
    assert kept == 4 and errors == {"http_404": 1, "timeout": 1}


def test_an_older_generation_gives_only_failures_no_later_one_took(tmp_path: Path) -> None:
    db = _source(tmp_path)
    # Its other items went to the generation after it long ago: only failures now.
    table, carried, kept, errors = _leftover(db, None, [], previous=False)
    assert _ids(table) == [5, 6]
    assert kept == 4 and errors == {"http_404": 1, "timeout": 1}
    assert sorted(r["item_id"] for r in carried.to_pylist()) == [5, 6]
    # A retrying generation since then took the timeouts: they are its rows now.
    table, _, kept, errors = _leftover(db, None, [frozenset({"timeout"})], previous=False)
    assert _ids(table) == [5] and kept == 4 and errors == {"http_404": 1}


def test_a_leftover_s_keys_spread_a_range_of_ids_and_give_them_back() -> None:
    """A stopped rank leaves each host's highest ids: over a heavy host's pieces (key ranges)
    the scrambled keys of such a range fall evenly."""
    top = np.arange(2**63 - 40_000, 2**63, dtype=np.uint64).astype(np.int64)
    keys = item_keys(top)
    assert (item_ids(keys, "item") == top).all()
    pieces = np.bincount((keys >> np.uint64(62)).astype(np.int64), minlength=4)
    assert pieces.min() > 0.95 * len(top) / 4  # each quarter of the key space


# ---------------------------------------------------------------- sealed within plan.memory

NOTE = 3000  # bytes of extras a row: 2048 of them (an items file's batch) exceed a 16 MiB run


def _big_source(root: Path, rank: int, n: int) -> None:
    """Rank ``rank`` of generation 0 (one of ``root``), planned with ``n`` items of ~3 KB on
    40 hosts (every 97th a bad URL), its first tenth committed (some failed, some requeued)."""
    rng = np.random.default_rng(rank)
    hosts = [int(h) for h in rng.integers(1, 2**62, 40)]
    items = []
    for i in range(1, n + 1):
        extras = f'{{"note": "{i}-{"x" * NOTE}"}}'
        if i % 97 == 0:
            items.append(PlannedItem(i, NO_HOST, "", f"bad{i}", extras, "bad_url", "no scheme"))
        else:
            host = hosts[int(rng.integers(0, len(hosts)))]
            items.append(PlannedItem(i, host, f"h{host}.example", f"http://h{host}/{i}", extras))
    ledger = Ledger(RunPaths(root).ledger_paths(rank))
    ledger.insert_items(items)
    done = [(i, 1, "timeout" if i % 7 == 0 else None) for i in range(1, n // 10)]
    ledger.commit_part(1, done, rows=len(done), nbytes=1, now=0)
    ledger.requeue(np.arange(1, n // 10, 5))
    ledger.close()


def _context(root: Path, world: int = 1) -> SealContext:
    """Generation 1 (one rank) over generation 0 of ``world`` ranks, plan.memory at its
    minimum: runs of 5.3 MiB."""
    urls = root / "urls.txt"  # read only by a source that never planned: none here
    urls.write_text("http://a.example/1\n", encoding="utf-8")
    config = Config(plan=PlanConfig(memory=MIN_PLAN_MEMORY))
    inputs = open_inputs(InputConfig(paths=(str(urls),)))
    generations = [Generation(0, world), Generation(1, 1)]
    return SealContext(root, config, inputs, generations, should_stop=lambda: False)


def _in_memory(root: Path, rank: int, out: Path) -> SliceFiles:
    """Source ``rank``'s leftover for generation 1 as _seal wrote it before issue 33: the
    rows gathered whole and sorted in memory (write_slice)."""
    pieces: list[pa.Table] = []
    db = RunPaths(root).ledger_paths(rank)
    leftover(db.db, db.items, frozenset(), [], previous=True, sink=pieces.append)
    files = GenerationPaths(out, 1).leftover(0, rank)
    write_slice(files, pa.concat_tables(pieces))
    return files


def _same_bytes(got: SliceFiles, want: SliceFiles) -> None:
    for name in ("items", "hosts", "index"):
        assert getattr(got, name).read_bytes() == getattr(want, name).read_bytes(), name


def test_a_leftover_over_plan_memory_is_sorted_in_spilled_runs_into_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "out"
    _big_source(root, 0, 6000)  # ~17 MB of leftover rows: three runs and what is held
    files = GenerationPaths(root, 1).leftover(0, 0)
    spill = files.spill
    assert spill == root / "gen-0001" / "leftover" / "spill" / "gen-0000-rank-00000"
    spilled: list[tuple[int, list[str]]] = []

    def point(name: str, count: int) -> None:  # what each spill left in the folder
        if name == "leftover_spill":
            spilled.append((count, sorted(p.name for p in spill.iterdir())))

    monkeypatch.setattr(leftover_module, "crash_point", point)
    done = seal(_context(root), 1, Source(0, 0))
    assert done is not None
    assert len(spilled) >= 3 and [c for c, _ in spilled] == list(range(1, len(spilled) + 1))
    for count, names in spilled:  # each run spilled beside the ones before
        assert names == [f"run-{i:05d}.arrow" for i in range(count)]
    assert not spill.exists(), "the runs go once the slice is published"
    want = _in_memory(root, 0, tmp_path / "memory")
    _same_bytes(files, want)
    # Its items without a row (6000 less the 599 committed) and the 120 requeued.
    assert done.items == _rows(files) == 6000 - 599 + 120
    assert done.carried == 120


def _rows(files: SliceFiles) -> int:
    with pa.memory_map(str(files.items)) as source:
        return int(ipc.open_file(source).read_all().num_rows)


_CHILD = (
    "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
    "import test_leftover as t; from fetchshard.planning.leftover import Source, seal; "
    "seal(t._context(Path(sys.argv[2]), world=2), 1, Source(0, 0))"
)


def test_a_seal_killed_mid_spill_is_redone_alone_into_the_same_bytes(tmp_path: Path) -> None:
    root = tmp_path / "out"
    _big_source(root, 0, 6000)
    _big_source(root, 1, 300)  # sealed before the kill, in memory
    ctx = _context(root, world=2)
    other = seal(ctx, 1, Source(0, 1))
    assert other is not None
    paths = GenerationPaths(root, 1)
    kept = paths.leftover(0, 1).done.stat().st_mtime_ns
    killed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(Path(__file__).parent), str(root)],
        env={**os.environ, FAULT: "leftover_spill:2"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    files = paths.leftover(0, 0)
    assert files.spill is not None
    assert sorted(p.name for p in files.spill.iterdir()) == ["run-00000.arrow", "run-00001.arrow"]
    assert not files.done.exists() and not files.items.exists()

    prepare(ctx, 1, None)  # every leftover not written: source 0's, redone whole
    assert paths.leftover(0, 1).done.stat().st_mtime_ns == kept, "a written leftover was redone"
    assert not files.spill.exists()
    _same_bytes(files, _in_memory(root, 0, tmp_path / "memory"))
    _same_bytes(paths.leftover(0, 1), _in_memory(root, 1, tmp_path / "memory"))  # no spill
    done = leftover_module.sealed(root, 1, Source(0, 0))
    assert done is not None and done.items == _rows(files) == 6000 - 599 + 120


def test_a_row_larger_than_a_run_is_one_line_naming_the_budget(tmp_path: Path) -> None:
    root = tmp_path / "out"
    ledger = Ledger(RunPaths(root).ledger_paths(0))
    huge = f'{{"note": "{"x" * (6 << 20)}"}}'  # 6 MiB: more than a 16 MiB budget's run
    ledger.insert_items([PlannedItem(1, 11, "a.example", "http://a.example/1", huge)])
    ledger.close()
    with pytest.raises(ConfigError) as caught:
        seal(_context(root), 1, Source(0, 0))
    message = str(caught.value)
    match = re.fullmatch(
        r"plan\.memory: 16777216 bytes cannot sort the leftover of generation 0 rank 0: one "
        r"of its rows takes (\d+) bytes, more than a run \(a third of it\); set plan\.memory "
        r"to at least (\d+) \((\d+) MiB\)",
        message,
    )
    assert match is not None, message
    held, needed, mib = (int(g) for g in match.groups())
    assert held > 6 << 20 and needed == 3 * held and mib == -(-needed // (1 << 20))
    assert not GenerationPaths(root, 1).leftover(0, 0).done.exists()
