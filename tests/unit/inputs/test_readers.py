"""The readers of each format (inputs/readers.py): every format plain and compressed, the
rules of csv, jsonl and parquet values, ids, batches, bounded memory, errors, read-ahead."""

from __future__ import annotations

import datetime
import decimal
import gzip
import itertools
import json
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.errors import InputError
from fetchshard.inputs import detect_format, iter_batches, read_ahead, validate_inputs
from input_files import (
    URLS,
    all_extras,
    all_urls,
    cfg,
    read_all,
    records,
    touch,
    write_bytes,
    write_format,
)

FORMAT_CASES = [
    ("txt", "in.txt"),
    ("txt", "in.txt.gz"),
    ("txt", "in.urls.zst"),
    ("csv", "in.csv"),
    ("csv", "in.csv.gz"),
    ("csv", "in.csv.zstd"),
    ("tsv", "in.tsv"),
    ("tsv", "in.tab.gz"),
    ("jsonl", "in.jsonl"),
    ("jsonl", "in.ndjson.gz"),
    ("jsonl", "in.json.zst"),
    ("parquet", "in.parquet"),
    ("parquet", "in.pq"),
]


@pytest.mark.parametrize(("fmt", "name"), FORMAT_CASES, ids=[c[1] for c in FORMAT_CASES])
def test_every_format_plain_and_compressed(fmt: str, name: str, tmp_path: Path) -> None:
    path = write_format(fmt, tmp_path / name, records())
    assert detect_format(path, "auto") == fmt
    batches = read_all(cfg(path))
    assert all_urls(batches) == URLS
    assert batches[0].first_row == 0
    assert all(b.ids is None for b in batches)
    if fmt == "txt":
        assert all(b.extras is None for b in batches)
        return
    extras = all_extras(batches)
    assert extras.column_names == ["n", "caption"]
    assert extras.column("caption").to_pylist() == [r["caption"] for r in records()]
    expected_n = [r["n"] for r in records()]
    if fmt in ("csv", "tsv"):  # CSV extras are text
        assert extras.schema.field("n").type == pa.string()
        assert extras.column("n").to_pylist() == [str(n) for n in expected_n]
    else:
        assert extras.schema.field("n").type == pa.int64()
        assert extras.column("n").to_pylist() == expected_n


def test_csv_invalid_utf8_url_is_none_and_extras_replaced(tmp_path: Path) -> None:
    data = b"url,caption\nhttp://a/1,ok\nhttp://a/\xff,fine\nhttp://a/3,bad \xfe byte\n"
    batches = read_all(cfg(write_bytes(tmp_path / "in.csv", data)))
    assert all_urls(batches) == ["http://a/1", None, "http://a/3"]
    extras = all_extras(batches)
    assert extras.schema.field("caption").type == pa.string()
    assert extras.column("caption").to_pylist() == ["ok", "fine", "bad \ufffd byte"]


def test_csv_empty_values_and_null_like_text_stay_text(tmp_path: Path) -> None:
    data = b"url,note\nhttp://a/1,\nhttp://a/2,NULL\n"
    extras = all_extras(read_all(cfg(write_bytes(tmp_path / "in.csv", data))))
    assert extras.column("note").to_pylist() == ["", "NULL"]


def test_jsonl_extras_keep_types(tmp_path: Path) -> None:
    rows = [
        {"url": f"http://a/{i}", "n": i, "score": i / 2, "meta": {"tags": ["x", str(i)], "k": i}}
        for i in range(5)
    ]
    extras = all_extras(read_all(cfg(write_format("jsonl", tmp_path / "in.jsonl", rows))))
    assert extras.schema.field("n").type == pa.int64()
    assert extras.schema.field("score").type == pa.float64()
    meta_type = extras.schema.field("meta").type
    assert pa.types.is_struct(meta_type)
    assert meta_type.field("tags").type == pa.list_(pa.string())
    assert extras.column("meta").to_pylist() == [r["meta"] for r in rows]
    assert extras.column("n").to_pylist() == [0, 1, 2, 3, 4]


def test_jsonl_non_string_url_is_none_and_odd_values_survive(tmp_path: Path) -> None:
    lines = [
        {"url": "http://a/1", "note": None},
        {"url": 5, "note": "text"},
        {"note": "no url"},
        {"url": None, "note": 7},  # a number in a string column: kept as its JSON text
        {"url": "http://a/\ud800", "note": "lone surrogate"},
    ]
    path = write_bytes(tmp_path / "in.jsonl", "".join(json.dumps(r) + "\n" for r in lines).encode())
    batches = read_all(cfg(path, batch_rows=2))
    assert all_urls(batches) == ["http://a/1", None, None, None, None]
    extras = all_extras(batches)
    assert extras.schema.field("note").type == pa.string()
    assert extras.column("note").to_pylist() == [None, "text", "no url", "7", "lone surrogate"]


def test_jsonl_invalid_utf8_line_gives_none_url(tmp_path: Path) -> None:
    data = b'{"url": "http://a/1", "c": "x"}\n{"url": "http://a/\xff", "c": "y\xfe"}\n'
    batches = read_all(cfg(write_bytes(tmp_path / "in.jsonl", data)))
    assert all_urls(batches) == ["http://a/1", None]
    assert all_extras(batches).column("c").to_pylist() == ["x", "y\ufffd"]


@pytest.mark.parametrize("late", [{"nested": True}, 1.5], ids=["struct", "fraction"])
def test_jsonl_type_conflict_after_sample_is_an_input_error(late: Any, tmp_path: Path) -> None:
    # The schema comes from the first 10,000 rows; a later value that does not fit an int64
    # column must fail loudly, never be truncated (1.5 -> 1) or dropped.
    rows: list[dict[str, Any]] = [{"url": f"http://a/{i}", "n": i} for i in range(10_001)]
    rows.append({"url": "http://a/x", "n": late})
    path = write_bytes(tmp_path / "in.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    with pytest.raises(InputError, match=r"in\.jsonl rows 10001-10002: values of column 'n'"):
        read_all(cfg(path, batch_rows=5000))


def test_jsonl_late_values_that_fit_are_converted(tmp_path: Path, caplog: Any) -> None:
    rows: list[dict[str, Any]] = [
        {"url": f"http://a/{i}", "n": i, "x": 0.5, "s": None} for i in range(10_000)
    ]
    rows.append({"url": "http://a/x", "n": 2.0, "x": 3, "s": "late text", "new_key": 1})
    path = write_bytes(tmp_path / "in.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())
    with caplog.at_level("WARNING", logger="fetchshard.inputs"):
        extras = all_extras(read_all(cfg(path, batch_rows=4000)))
    assert extras.column_names == ["n", "x", "s"]
    assert [f.type for f in extras.schema] == [pa.int64(), pa.float64(), pa.string()]
    assert extras.slice(10_000).to_pylist() == [{"n": 2, "x": 3.0, "s": "late text"}]
    assert "new_key" in caplog.text


def test_parquet_extras_keep_types_and_cast_temporal(tmp_path: Path) -> None:
    table = pa.table(
        {
            "url": pa.array([b"http://a/1", b"http://a/\xff", None], type=pa.binary()),
            "n": pa.array([1, 2, 3], type=pa.int32()),
            "score": [0.5, 1.5, 2.5],
            "tags": [["a"], [], ["b", "c"]],
            "when": pa.array([datetime.datetime(2024, 1, 2, 3, 4, 5)] * 3, pa.timestamp("s")),
            "price": pa.array([decimal.Decimal("1.50")] * 3, pa.decimal128(5, 2)),
            "kind": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    path = tmp_path / "in.parquet"
    pq.write_table(table, path)
    batches = read_all(cfg(path))
    assert all_urls(batches) == ["http://a/1", None, None]
    extras = all_extras(batches)
    types = {f.name: f.type for f in extras.schema}
    assert types == {
        "n": pa.int32(),
        "score": pa.float64(),
        "tags": pa.list_(pa.string()),
        "when": pa.string(),
        "price": pa.string(),
        "kind": pa.string(),
    }
    assert extras.column("tags").to_pylist() == [["a"], [], ["b", "c"]]
    assert extras.column("when").to_pylist()[0].startswith("2024-01-02 03:04:05")
    assert extras.column("price").to_pylist() == ["1.50"] * 3
    assert extras.column("kind").to_pylist() == ["x", "y", "x"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_id_column(fmt: str, tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"url": u, "doc": i * 10, "caption": "c"} for i, u in enumerate(URLS)
    ]
    rows[2]["doc"] = None
    path = write_format(fmt, tmp_path / f"in.{fmt}", rows)
    batches = read_all(cfg(path, id_column="doc", batch_rows=3))
    ids = [i for b in batches for i in (b.ids or [])]
    expected: list[str | None] = [str(i * 10) for i in range(len(URLS))]
    expected[2] = "" if fmt == "csv" else None  # an empty CSV field is an empty id
    assert ids == expected
    assert all(b.extras is not None and b.extras.column_names == ["caption"] for b in batches)


def test_batch_rows_bound_and_first_row(tmp_path: Path) -> None:
    first = write_format(
        "csv", tmp_path / "a.csv", [{"url": f"http://a/{i}", "k": i} for i in range(95)]
    )
    second = write_format(
        "csv", tmp_path / "b.csv.gz", [{"url": f"http://b/{i}", "k": i} for i in range(13)]
    )
    batches = read_all(cfg(first, second, batch_rows=10))
    sizes = [len(b.urls) for b in batches]
    assert max(sizes) <= 10
    assert sum(sizes) == 108
    expected_first = 0
    for batch in batches:
        assert batch.first_row == expected_first
        assert batch.extras is not None and batch.extras.num_rows == len(batch.urls)
        expected_first += len(batch.urls)
    urls = all_urls(batches)
    assert urls[:95] == [f"http://a/{i}" for i in range(95)]
    assert urls[95:] == [f"http://b/{i}" for i in range(13)]
    assert batches[0].urls.to_pylist() == [f"http://a/{i}" for i in range(10)]


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "parquet", "tsv"])
def test_batch_rows_bound_other_formats(fmt: str, tmp_path: Path) -> None:
    rows = [{"url": f"http://a/{i}", "k": i} for i in range(95)]
    path = tmp_path / f"in.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=7)
    else:
        write_format(fmt, path, rows)
    batches = read_all(cfg(path, batch_rows=10))
    assert [len(b.urls) for b in batches] == [10] * 9 + [5]
    assert [b.first_row for b in batches] == list(range(0, 95, 10))
    assert all_urls(batches) == [r["url"] for r in rows]


def test_streaming_memory_stays_bounded(tmp_path: Path) -> None:
    lines = 200_000
    text = "".join(
        f"https://host{i % 97}.example.org/some/path/item-{i:08d}\n" for i in range(lines)
    )
    raw = text.encode()
    path = tmp_path / "big.txt.gz"
    path.write_bytes(gzip.compress(raw, compresslevel=1))
    del text

    arrow_before = pa.total_allocated_bytes()
    arrow_peak = 0
    count = 0
    batches = 0
    tracemalloc.start()
    try:
        for batch in iter_batches(cfg(path, batch_rows=1000)):
            assert len(batch.urls) <= 1000
            count += len(batch.urls)
            batches += 1
            arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - arrow_before)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == lines
    assert batches == lines // 1000
    assert peak < len(raw) / 4, (peak, len(raw))  # reading it whole peaks at ~2x
    assert arrow_peak < len(raw) / 4, (arrow_peak, len(raw))


def test_parquet_streaming_does_not_keep_the_row_groups_it_read(tmp_path: Path) -> None:
    # Random URLs do not compress: the file is about as big in memory as on disk.
    path = tmp_path / "big.parquet"
    groups, rows = 24, 10_000
    with pq.ParquetWriter(path, pa.schema([("url", pa.string())])) as writer:
        for _ in range(groups):
            urls = [f"http://h{i % 7}.example/{os.urandom(48).hex()}" for i in range(rows)]
            writer.write_table(pa.table({"url": urls}))
    size = path.stat().st_size
    assert size > 20_000_000
    arrow_before = pa.total_allocated_bytes()
    arrow_peak = count = 0
    for batch in iter_batches(cfg(path, batch_rows=2000)):
        count += len(batch.urls)
        arrow_peak = max(arrow_peak, pa.total_allocated_bytes() - arrow_before)
    assert count == groups * rows
    # pyarrow's pre_buffer would keep every row group read so far: the whole file at the end
    assert arrow_peak < size / 2, (arrow_peak, size)


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bad.parquet", b"this is not parquet at all"),
        ("bad.txt.gz", b"\x1f\x8b\x08\x00garbage-garbage-garbage"),
        ("bad.csv", b"url,a\nhttp://a/1,1\nhttp://a/2,2,3\n"),
        ("bad.csv.zst", b"\x28\xb5\x2f\xfdnot really zstd"),
    ],
)
def test_corrupt_file_is_an_input_error(name: str, data: bytes, tmp_path: Path) -> None:
    path = touch(tmp_path / name, data)
    with pytest.raises(InputError) as info:
        read_all(cfg(path))
    assert str(path.resolve()) in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is not None


def test_validate_returns_resolved_paths(tmp_path: Path) -> None:
    writers: dict[str, Callable[[Path], Path]] = {
        "a.csv": lambda p: write_format("csv", p, records()),
        "b.tsv.gz": lambda p: write_format("tsv", p, records()),
    }
    paths = [make(tmp_path / name) for name, make in writers.items()]
    assert validate_inputs(cfg(tmp_path)) == [p.resolve() for p in paths]


def test_read_ahead_keeps_order_raises_errors_and_stops_early() -> None:
    assert list(read_ahead(iter(range(100)), depth=3)) == list(range(100))

    def failing() -> Iterator[int]:
        yield 1
        raise InputError("cannot read input x: broken")

    got: list[int] = []
    with pytest.raises(InputError, match="broken"):
        for item in read_ahead(failing()):
            got.append(item)
    assert got == [1]

    closed: list[bool] = []

    def endless() -> Iterator[int]:
        try:
            yield from itertools.count()
        finally:
            closed.append(True)

    ahead = read_ahead(endless(), depth=2)
    assert [next(ahead) for _ in range(5)] == [0, 1, 2, 3, 4]
    ahead.close()  # leaving a loop early: the producer stops and closes its source
    assert closed == [True]
    assert not [t for t in threading.enumerate() if t.name == "read-ahead"]
