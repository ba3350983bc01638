"""The items file: staged in buckets, deduplicated (lowest input row wins), sorted by host."""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fetchshard.ledger import Ledger, PlannedItem, WorkItem, items
from fetchshard.ledger.items import BATCH_ROWS, BUCKETS, ItemFile, Span, Stage, to_batch
from fetchshard.ledger.sql import SCHEMA
from fetchshard.planning.slicefiles import ITEMS
from fetchshard.runfolder.layout import ledger_paths


def _batch(rows: list[tuple[int, int, str]]) -> pa.RecordBatch:
    ids, hosts, urls = zip(*rows, strict=True)
    return to_batch({"item_id": ids, "host_id": hosts, "url": urls}, len(rows))


def _stage_and_read(
    tmp_path: Path, batches: list[tuple[list[tuple[int, int, str]], list[int]]]
) -> tuple[list[Span], pa.Table]:
    stage = Stage(tmp_path / "stage")
    for rows, positions in batches:
        stage.add(_batch(rows), np.array(positions, dtype=np.int64))
    spans, count = stage.finish(tmp_path / "items.arrow")
    stage.discard()
    assert not (tmp_path / "stage").exists()
    with pa.OSFile(str(tmp_path / "items.arrow"), "rb") as source:
        table = pa.ipc.open_file(source).read_all()
    assert table.num_rows == count
    return spans, table


def test_sorted_by_host_then_id_with_one_span_per_host(tmp_path: Path) -> None:
    rng = random.Random(3)
    hosts = [rng.randrange(1, 1 << 63) for _ in range(200)]  # all over the buckets
    rows = [(rng.randrange(1, 1 << 63), rng.choice(hosts), f"u{i}") for i in range(10_000)]
    batches = [
        (rows[i : i + 777], list(range(i, min(i + 777, len(rows)))))
        for i in range(0, len(rows), 777)
    ]
    spans, table = _stage_and_read(tmp_path, batches)
    got = list(
        zip(table.column("host_id").to_pylist(), table.column("item_id").to_pylist(), strict=True)
    )
    assert got == sorted((h, i) for i, h, _ in rows)
    assert len({h >> 57 for h in hosts}) > BUCKETS // 2  # the rows did go to many buckets
    assert sorted(s.host_id for s in spans) == sorted(set(h for _, h, _ in rows))
    for span in spans:
        assert set(table.column("host_id").to_pylist()[span.first : span.first + span.count]) == {
            span.host_id
        }
    assert sum(s.count for s in spans) == table.num_rows
    # Every batch of the file but the last holds BATCH_ROWS rows (the reader relies on it).
    with pa.OSFile(str(tmp_path / "items.arrow"), "rb") as source:
        reader = pa.ipc.open_file(source)
        sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    assert all(n == BATCH_ROWS for n in sizes[:-1]) and 0 < sizes[-1] <= BATCH_ROWS


def test_repeated_id_keeps_the_lowest_input_row_whatever_the_staging_order(tmp_path: Path) -> None:
    host = 5 << 57
    batches = [
        ([(1, host, "late"), (2, host, "two")], [50, 2]),
        ([(1, host, "early"), (3, host, "three")], [10, 3]),  # staged after, but row 10 < 50
        ([(1, host, "later"), (2, host, "two again")], [60, 70]),
    ]
    _, table = _stage_and_read(tmp_path, batches)
    assert table.column("url").to_pylist() == ["early", "two", "three"]


def test_bad_url_sharing_a_good_urls_id_keeps_whichever_came_first(tmp_path: Path) -> None:
    host = 9 << 57
    # A bad URL's id is the hash of its raw text, which can be another row's normalized URL.
    batches = [
        ([(7, 0, "bad first"), (8, host, "good first")], [1, 2]),
        ([(7, host, "good later"), (8, 0, "bad later"), (9, 0, "bad alone")], [3, 4, 5]),
    ]
    spans, table = _stage_and_read(tmp_path, batches)
    rows = sorted(
        zip(table.column("item_id").to_pylist(), table.column("url").to_pylist(), strict=True)
    )
    assert rows == [(7, "bad first"), (8, "good first"), (9, "bad alone")]
    assert [(s.host_id, s.count) for s in spans] == [(host, 1), (0, 2)]  # bad rows go last


def test_reader_finds_and_reads_across_batch_boundaries(tmp_path: Path) -> None:
    host, other = 3 << 57, 40 << 57
    ids = sorted(random.Random(1).sample(range(1, 10**9), 3 * BATCH_ROWS + 5))
    rows = [(i, host, f"u{i}") for i in ids] + [(11, other, "o")]
    spans, _ = _stage_and_read(tmp_path, [(rows, list(range(len(rows))))])
    span = next(s for s in spans if s.host_id == host)
    file = ItemFile(tmp_path / "items.arrow")
    try:
        for k in (0, 1, BATCH_ROWS - 1, BATCH_ROWS, 2 * BATCH_ROWS + 3, len(ids) - 1):
            assert file.find(span.first, span.count, ids[k]) == span.first + k + 1
            assert file.find(span.first, span.count, ids[k] - 1) == span.first + k
        assert file.find(span.first, span.count, -1) == span.first
        start = BATCH_ROWS - 3
        got = list(file.fresh(span.first + start, span.first + start + BATCH_ROWS + 10))
        assert [w.item_id for w in got] == ids[start : start + BATCH_ROWS + 10]
        assert [w.url for w in got[:2]] == [f"u{ids[start]}", f"u{ids[start + 1]}"]
        first = got[0]
        assert (first.fetch_url, first.extras, first.error_kind, first.error_message) == (
            None,
            None,
            None,
            None,
        )
        assert (first.host_id, first.attempts, first.next_attempt_at) == (host, 0, 0.0)
    finally:
        file.close()


def test_a_bucket_too_big_is_split_by_id_into_runs_in_id_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items, "PIECE_ROWS", 100)
    rng = random.Random(7)
    big, small = 3 << 57, (3 << 57) + 1  # one bucket; "big" holds most of the slice
    rows = [(rng.randrange(1, 1 << 63), big if i % 10 else small, f"u{i}") for i in range(2000)]
    rows += [(rows[5][0], rows[5][1], "repeat"), (rows[7][0], 0, "bad with a good id")]
    rows += [(rng.randrange(1, 1 << 63), 0, f"bad{i}") for i in range(300)]  # bad rows split too
    spans, table = _stage_and_read(tmp_path, [(rows, list(range(len(rows))))])
    expected = {}
    for item, host, url in rows:
        expected.setdefault(item, (host, url))
    got = list(
        zip(*(table.column(n).to_pylist() for n in ("item_id", "host_id", "url")), strict=True)
    )
    assert sorted(got) == sorted((i, h, u) for i, (h, u) in expected.items())
    runs = {h: [s for s in spans if s.host_id == h] for h in (big, small, 0)}
    assert all(len(r) > 1 for r in runs.values()), "the bucket and the bad rows were split"
    for host, host_runs in runs.items():
        ids = [
            i
            for s in host_runs
            for i in table.column("item_id").to_pylist()[s.first : s.first + s.count]
        ]
        assert ids == sorted(i for i, (h, _) in expected.items() if h == host)
        assert [s.first for s in host_runs] == sorted(s.first for s in host_runs)
    assert not list((tmp_path / "stage").glob("**/*.arrows"))


def test_ledger_reads_a_host_through_all_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(items, "PIECE_ROWS", 50)
    host = 11 << 57
    ids = random.Random(2).sample(range(1, 1 << 62), 700)
    with Ledger(ledger_paths(tmp_path / "l.sqlite")) as ledger:
        ledger.insert_items([PlannedItem(i, host, "h", f"http://h/{i}", None) for i in ids])
        assert ledger._db.execute("SELECT COUNT(*) FROM spans").fetchone()[0] > 1
        seen: list[int] = []
        cursor = (-1.0, -1)
        while batch := ledger.queue.ready_items(host, cursor, 1e18, 33):
            seen += [w.item_id for w in batch]
            cursor = (0.0, batch[-1].item_id)
        assert seen == sorted(ids)
        ledger.queue._hints.clear()  # a cursor in the middle, found by search across the runs
        middle = sorted(ids)[400]
        assert [
            w.item_id for w in ledger.queue.ready_items(host, (0.0, middle), 1e18, 3)
        ] == sorted(ids)[401:404]
        assert ledger.queue.next_due(host, (0.0, sorted(ids)[-1])) is None


def test_the_declared_row_is_the_schema_on_disk() -> None:
    """PlannedItem declares the row; the files' schemas derived from it are those earlier
    versions wrote (tests/system/test_compat.py reads such folders)."""
    assert (
        pa.schema(
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
        == items.ITEM_SCHEMA
    )
    assert ITEMS.names == [
        "host_hash", "key_hash", "position", "host_id", "host", "url", "fetch_url", "extras",
        "error_kind", "error_message",
    ]  # fmt: skip
    assert ITEMS.field("host").nullable and not ITEMS.field("url").nullable
    # Every WorkItem field is a column of ``states``, read in the dataclass's order.
    with sqlite3.connect(":memory:") as db:
        db.executescript(SCHEMA)
        columns = {r[1] for r in db.execute("PRAGMA table_info(states)")}
    assert set(items.STATE_COLUMNS.split(", ")) <= columns
    assert items.STATE_COLUMNS.split(", ") == [f.name for f in dataclasses.fields(WorkItem)]


def test_the_file_is_read_by_column_name(tmp_path: Path) -> None:
    host = 3 << 57
    path = tmp_path / "items.arrow"
    shuffled = to_batch({"item_id": [5, 9], "host_id": [host, host], "url": ["a", "b"]}, 2)
    shuffled = shuffled.select(list(reversed(items.ITEM_COLUMNS)))
    with pa.ipc.new_file(str(path), shuffled.schema) as writer:
        writer.write_batch(shuffled)
    file = ItemFile(path)
    try:
        assert file.find(0, 2, 5) == 1 and file.item_id(1) == 9
        assert [(w.item_id, w.host_id, w.url) for w in file.fresh(0, 2)] == [
            (5, host, "a"),
            (9, host, "b"),
        ]
        assert next(file.batches()).schema == items.ITEM_SCHEMA
    finally:
        file.close()
    with pa.ipc.new_file(str(path), shuffled.schema.remove(0)) as writer:
        writer.write_batch(shuffled.drop_columns(["error_message"]))
    with pytest.raises(ValueError, match="error_message"):
        ItemFile(path)
