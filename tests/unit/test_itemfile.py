"""The items file: staged in buckets, deduplicated (lowest input row wins), sorted by host."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from fetchshard import itemfile
from fetchshard.itemfile import BATCH_ROWS, BUCKETS, ItemFile, Span, Stage, to_batch
from fetchshard.ledger import Ledger, PlannedItem


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
        got = list(file.rows(span.first + start, span.first + start + BATCH_ROWS + 10))
        assert [r[0] for r in got] == ids[start : start + BATCH_ROWS + 10]
        assert [r[2] for r in got[:2]] == [f"u{ids[start]}", f"u{ids[start + 1]}"]
        assert got[0][3:] == (None, None, None, None)
    finally:
        file.close()


def test_a_bucket_too_big_is_split_by_id_into_runs_in_id_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(itemfile, "PIECE_ROWS", 100)
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
    monkeypatch.setattr(itemfile, "PIECE_ROWS", 50)
    host = 11 << 57
    ids = random.Random(2).sample(range(1, 1 << 62), 700)
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.insert_items([PlannedItem(i, host, "h", f"http://h/{i}", None) for i in ids])
        assert ledger._db.execute("SELECT COUNT(*) FROM spans").fetchone()[0] > 1
        seen: list[int] = []
        cursor = (-1.0, -1)
        while batch := ledger.ready_items(host, cursor, 1e18, 33):
            seen += [w.item_id for w in batch]
            cursor = (0.0, batch[-1].item_id)
        assert seen == sorted(ids)
        ledger._hints.clear()  # a cursor in the middle, found by search across the runs
        middle = sorted(ids)[400]
        assert [w.item_id for w in ledger.ready_items(host, (0.0, middle), 1e18, 3)] == sorted(ids)[
            401:404
        ]
        assert ledger.next_due(host, (0.0, sorted(ids)[-1])) is None
