"""The part writer's commit protocol and the ledger's recovery, on real files."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.config import OutputConfig
from fetchshard.ledger import Counts, Ledger, PlannedItem
from fetchshard.output.columns import ResultRow
from fetchshard.output.extras import encode_extras
from fetchshard.output.parts import PartWriter, recover
from fetchshard.output.table import body_column
from fetchshard.runfolder import storage as storage_module
from fetchshard.runfolder.layout import RunPaths, ledger_paths
from util import ok_row


def _ledger(tmp_path: Path, n: int) -> tuple[RunPaths, Ledger]:
    paths = RunPaths(tmp_path / "out")
    ledger = Ledger(paths.ledger_paths(0))
    extras = encode_extras(pa.table({"caption": [f"c{i}" for i in range(n)], "n": list(range(n))}))
    ledger.insert_items([PlannedItem(i + 1, 7, "h", f"http://h/{i}", extras[i]) for i in range(n)])
    return paths, ledger


def _row(i: int, extras: str | None) -> ResultRow:
    return ok_row(i, extras=extras)


def test_parts_roll_by_rows_and_commit_their_items(tmp_path: Path) -> None:
    paths, ledger = _ledger(tmp_path, 25)
    schema = pa.schema([("caption", pa.string()), ("n", pa.int64())])
    extras = encode_extras(
        pa.table({"caption": [f"c{i}" for i in range(25)], "n": list(range(25))})
    )
    writer = PartWriter(paths, 0, ledger, OutputConfig(part_max_rows=10), schema, next_part=1)
    for i in range(25):
        writer.add(_row(i + 1, extras[i]))
    writer.reap()
    # Parts are written by a worker thread: they reach the ledger once durable.
    deadline = time.monotonic() + 10
    while writer.parts_committed < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
        writer.reap()
    assert writer.parts_committed == 2 and writer.open_rows == 5
    assert ledger.counts().committed == 20
    writer.commit()
    assert ledger.counts().committed == 25 and ledger.counts().pending == 0
    parts = sorted(paths.shard_dir(0).glob("part-*.parquet"))
    assert [p.name for p in parts] == [
        "part-000001.parquet",
        "part-000002.parquet",
        "part-000003.parquet",
    ]
    table = pa.concat_tables(pq.read_table(p) for p in parts)
    assert table.column("caption").to_pylist() == [f"c{i}" for i in range(25)]
    assert table.column("n").type == pa.int64()
    assert pq.ParquetFile(parts[0]).metadata.row_group(0).column(0).compression == "ZSTD"


def test_recover_removes_tmp_and_adopts_an_unrecorded_part(tmp_path: Path) -> None:
    paths, ledger = _ledger(tmp_path, 12)
    writer = PartWriter(paths, 0, ledger, OutputConfig(part_max_rows=100), None, next_part=1)
    for i in range(1, 7):
        writer.add(_row(i, None))
    writer.commit()
    # Simulate a crash after renaming part 2 but before its ledger commit...
    other = Ledger(ledger_paths(tmp_path / "scratch.sqlite"))
    other.insert_items([PlannedItem(i, 7, "h", f"http://h/{i}", None) for i in range(7, 13)])
    lost = PartWriter(paths, 0, other, OutputConfig(), None, next_part=2)
    for i in range(7, 13):
        lost.add(_row(i, None))
    lost.commit()
    # ... and an unfinished part 3.
    tmp = paths.part_tmp(0, 3)
    tmp.write_bytes(b"half a parquet file")
    assert ledger.counts().committed == 6
    next_part = recover(paths, 0, ledger)
    assert next_part == 3
    assert not tmp.exists()
    assert ledger.counts().committed == 12
    assert ledger.committed_parts() == {1, 2}
    assert recover(paths, 0, ledger) == 3  # idempotent
    assert not [p for p in os.listdir(paths.shard_dir(0)) if p.endswith(".tmp")]


def _resident_bytes(path: Path) -> int:
    """How much of the file is in the page cache (util-linux fincore)."""
    done = subprocess.run(
        ["fincore", "-n", "-b", "-r", "-o", "RES", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout.split()[0])


@pytest.mark.skipif(shutil.which("fincore") is None, reason="needs util-linux fincore")
def test_a_committed_part_leaves_the_page_cache(tmp_path: Path) -> None:
    cached = tmp_path / "cached.bin"
    cached.write_bytes(os.urandom(1 << 20))
    if _resident_bytes(cached) == 0:
        pytest.skip("this filesystem does not show its page cache to fincore")
    probe = tmp_path / "probe.bin"
    probe.write_bytes(os.urandom(1 << 20))
    with probe.open("rb") as fh:  # straight to the kernel, not through the code under test
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    if _resident_bytes(probe) != 0:
        pytest.skip("this filesystem keeps its pages (tmpfs holds its files in the cache)")
    paths, ledger = _ledger(tmp_path, 8)
    writer = PartWriter(paths, 0, ledger, OutputConfig(part_max_rows=4), None, next_part=1)
    for i in range(1, 9):
        writer.add(dataclasses.replace(_row(i, None), body=os.urandom(256 << 10), size=256 << 10))
    writer.commit()
    writer.close()
    parts = sorted(paths.shard_dir(0).glob("part-*.parquet"))
    assert len(parts) == 2 and all(p.stat().st_size > 1 << 20 for p in parts)
    assert [_resident_bytes(p) for p in parts] == [0, 0]
    assert _resident_bytes(cached) > 0  # a file written without the writer stays cached
    assert len(pq.read_table(parts[0]).column("body")[0].as_py()) == 256 << 10


def test_the_next_part_is_written_while_a_part_waits_for_its_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, ledger = _ledger(tmp_path, 8)
    in_fsync, release = threading.Event(), threading.Event()
    real_fsync = storage_module.fsync_path

    def held_fsync(path: Path, *, drop_cache: bool = False) -> None:
        if path.name.endswith(".tmp"):  # a part's data, not a folder
            in_fsync.set()
            assert release.wait(30)
        real_fsync(path, drop_cache=drop_cache)

    monkeypatch.setattr(storage_module, "fsync_path", held_fsync)
    config = OutputConfig(part_max_rows=4, row_group_bytes=1)  # a row group per row
    writer = PartWriter(paths, 0, ledger, config, None, next_part=1)
    try:
        for i in range(1, 5):
            writer.add(_row(i, None))  # the fourth row rolls part 1
        assert in_fsync.wait(30)
        for i in range(5, 8):
            writer.add(_row(i, None))  # part 2's row groups
        for job in list(writer._jobs):
            job.result(timeout=30)  # written while part 1 is still in its fsync
        assert writer.parts_committed == 0 and ledger.counts().committed == 0
        assert paths.part_tmp(0, 2).exists()
    finally:
        release.set()
    writer.add(_row(8, None))
    writer.commit()
    writer.close()
    assert writer.parts_committed == 2 and ledger.counts().committed == 8
    assert sorted(p.name for p in paths.shard_dir(0).iterdir()) == [
        "part-000001.parquet",
        "part-000002.parquet",
    ]


def _body_codec_of(tmp_path: Path, content_type: str, **options: Any) -> tuple[str, str]:
    paths, ledger = _ledger(tmp_path, 4)
    writer = PartWriter(paths, 0, ledger, OutputConfig(**options), None, next_part=1)
    for i in range(1, 5):
        writer.add(dataclasses.replace(_row(i, None), content_type=content_type))
    writer.commit()
    writer.close()
    meta = pq.ParquetFile(paths.part(0, 1)).metadata.row_group(0)
    schema = pq.read_schema(paths.part(0, 1))
    body = meta.column(schema.get_field_index("body")).compression
    url = meta.column(schema.get_field_index("url")).compression
    return body, url


def test_bodies_already_compressed_are_stored_plain(tmp_path: Path) -> None:
    assert _body_codec_of(tmp_path / "jpeg", "image/jpeg") == ("UNCOMPRESSED", "ZSTD")
    assert _body_codec_of(tmp_path / "html", "text/html; charset=utf-8") == ("ZSTD", "ZSTD")
    assert _body_codec_of(tmp_path / "svg", "image/svg+xml") == ("ZSTD", "ZSTD")
    forced = _body_codec_of(tmp_path / "forced", "image/png", body_compression="zstd")
    assert forced == ("ZSTD", "ZSTD")


def test_body_column_shares_the_bodies_memory_and_round_trips(tmp_path: Path) -> None:
    bodies = [b"x" * 70_000, None, b"", b"tail"]
    column = body_column(bodies)
    assert column.to_pylist() == bodies
    first = column.chunk(0).buffers()[2]
    assert first is not None and first.address == pa.py_buffer(bodies[0]).address  # no copy
    table = pa.table({"body": column})
    pq.write_table(table, tmp_path / "b.parquet")
    back = pq.read_table(tmp_path / "b.parquet")
    assert back.column("body").to_pylist() == bodies
    assert pq.ParquetFile(tmp_path / "b.parquet").metadata.num_row_groups == 1


def test_commit_log_counts_at_once_and_folds_into_states(tmp_path: Path) -> None:
    ledger = Ledger(ledger_paths(tmp_path / "ledger.sqlite"))
    largest = (1 << 63) - 1  # item ids use all 63 bits; JSON must carry them exactly
    ledger.insert_items([PlannedItem(i, 7, "h", f"http://h/{i}", None) for i in (1, 2, 3, largest)])
    ledger.commit_part(1, [(1, 1, None), (largest, 3, "http_404")], rows=2, nbytes=10, now=1.0)
    expected = Counts(total=4, committed=2, pending=2, failed=1)
    assert ledger.counts() == expected
    assert ledger.error_counts() == {"http_404": 1}
    assert ledger.fold_commits() == 2
    assert ledger.counts() == expected and ledger.error_counts() == {"http_404": 1}
    assert [w.item_id for w in ledger.queue.ready_items(7, (-1.0, -1), 1e18, 10)] == [2, 3]
    row = ledger._db.execute(
        "SELECT state, part, attempts, error_kind FROM states WHERE item_id = ?", (largest,)
    ).fetchone()
    assert row == (1, 1, 3, "http_404")
    assert ledger.fold_commits() == 0
    ledger.close()
