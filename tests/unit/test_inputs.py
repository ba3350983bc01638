"""Input streaming: formats, compression, resolution, extras, ids, errors and bounded memory."""

from __future__ import annotations

import csv
import datetime
import decimal
import gzip
import io
import itertools
import json
import os
import threading
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.config import InputConfig
from fetchshard.errors import InputError
from fetchshard.inputs import (
    FORMATS,
    RESERVED_COLUMNS,
    InputBatch,
    detect_format,
    fingerprint_files,
    iter_batches,
    read_ahead,
    resolve_inputs,
    validate_inputs,
)
from fetchshard.inputs.values import clean_url, urls_from_column

URLS = [f"http://host{i % 3}.example/page/{i}" for i in range(7)]


# --------------------------------------------------------------------------- helpers


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, compressed according to its .gz / .zst suffix."""
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif path.name.endswith((".zst", ".zstd")):
        with pa.output_stream(str(path), compression="zstd") as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path


def records() -> list[dict[str, Any]]:
    return [{"url": u, "n": i, "caption": f"caption {i}, with comma"} for i, u in enumerate(URLS)]


def write_format(fmt: str, path: Path, rows: list[dict[str, Any]]) -> Path:
    if fmt == "txt":
        return write_bytes(path, "".join(f"{r['url']}\n" for r in rows).encode())
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]), delimiter="," if fmt == "csv" else "\t"
        )
        writer.writeheader()
        writer.writerows(rows)
        return write_bytes(path, buf.getvalue().encode())
    if fmt == "jsonl":
        return write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    raise AssertionError(fmt)


def read_all(config: InputConfig) -> list[InputBatch]:
    return list(iter_batches(config))


def all_urls(batches: Sequence[InputBatch]) -> list[str | None]:
    return [u for b in batches for u in b.urls.to_pylist()]


def all_extras(batches: Sequence[InputBatch]) -> pa.Table:
    tables = [b.extras for b in batches if b.extras is not None]
    assert len(tables) == len(batches)
    return pa.concat_tables(tables)


def cfg(*paths: Path | str, **kwargs: Any) -> InputConfig:
    return InputConfig(paths=tuple(str(p) for p in paths), **kwargs)


# --------------------------------------------------------------------------- formats


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


def test_configured_format_overrides_suffix(tmp_path: Path) -> None:
    path = write_format("csv", tmp_path / "data.dat", records())
    with pytest.raises(InputError, match=r"data\.dat"):
        read_all(cfg(path))
    assert all_urls(read_all(cfg(path, format="csv"))) == URLS


def test_detect_format_table(tmp_path: Path) -> None:
    cases = {
        "a.txt": "txt",
        "a.lst": "txt",
        "a.urls": "txt",
        "urls": "txt",
        "urls.gz": "txt",
        "A.CSV": "csv",
        "a.csv.zst": "csv",
        "a.tsv": "tsv",
        "a.tab.zstd": "tsv",
        "a.jsonl": "jsonl",
        "a.ndjson": "jsonl",
        "a.json.gz": "jsonl",
        "a.parquet": "parquet",
        "a.pq": "parquet",
    }
    for name, fmt in cases.items():
        assert detect_format(tmp_path / name, "auto") == fmt, name
    assert detect_format(tmp_path / "a.xyz", "tsv") == "tsv"
    with pytest.raises(InputError, match=r"a\.xlsx"):
        detect_format(tmp_path / "a.xlsx", "auto")
    assert FORMATS == ("txt", "csv", "tsv", "jsonl", "parquet")


# --------------------------------------------------------------------------- txt rules


def test_txt_blank_lines_and_whitespace(tmp_path: Path) -> None:
    data = b"\n  http://a.example/1  \r\n\t\n\r\nhttp://a.example/2\n   \nhttp://a.example/3"
    path = write_bytes(tmp_path / "in.txt", data)
    batches = read_all(cfg(path))
    assert all_urls(batches) == ["http://a.example/1", "http://a.example/2", "http://a.example/3"]


def test_txt_invalid_utf8_line_is_none(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "in.txt.gz", b"http://a/1\nhttp://a/\xff\xfe\nhttp://a/\xc3\xa9\n"
    )
    assert all_urls(read_all(cfg(path))) == ["http://a/1", None, "http://a/é"]


def test_txt_over_long_line_is_truncated(tmp_path: Path) -> None:
    long_line = b"http://long.example/" + b"x" * 3_000_000  # far more than one read chunk
    path = write_bytes(tmp_path / "in.txt", b"http://a/1\n" + long_line + b"\nhttp://a/2\n")
    urls = all_urls(read_all(cfg(path, max_url_length=100)))
    assert len(urls) == 3
    assert urls[0] == "http://a/1"
    assert urls[1] is not None and len(urls[1]) == 101
    assert urls[1].startswith("http://long.example/xxx")
    assert urls[2] == "http://a/2"


def test_txt_over_long_line_with_spaces_is_not_shortened(tmp_path: Path) -> None:
    # Internal whitespace must not let a cut-off line pass as a short, valid URL.
    line = b"  http://a.example/" + b" " * 1000 + b"tail"
    urls = all_urls(
        read_all(cfg(write_bytes(tmp_path / "in.txt", line + b"\n"), max_url_length=30))
    )
    assert urls[0] is not None and len(urls[0]) == 31
    assert urls[0].startswith("http://a.example/ ")


def test_txt_rejects_id_and_extra_columns(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.txt", b"http://a/1\n")
    with pytest.raises(InputError, match="id_column"):
        read_all(cfg(path, id_column="id"))
    with pytest.raises(InputError, match="extra_columns"):
        validate_inputs(cfg(path, extra_columns=("caption",)))
    assert all_urls(read_all(cfg(path, extra_columns=()))) == ["http://a/1"]


# --------------------------------------------------------------------------- csv rules


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


def test_missing_column_error_names_column_file_and_columns(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.csv", b"link,caption\nhttp://a/1,x\n")
    with pytest.raises(InputError) as info:
        validate_inputs(cfg(path))
    message = str(info.value)
    assert "'url'" in message and str(path) in message and "link, caption" in message
    assert "\n" not in message
    with pytest.raises(InputError, match=r"'nope'.*input\.id_column"):
        read_all(cfg(path, url_column="link", id_column="nope"))
    with pytest.raises(InputError, match=r"'other'.*input\.extra_columns"):
        validate_inputs(cfg(path, url_column="link", extra_columns=("caption", "other")))
    assert all_urls(read_all(cfg(path, url_column="link"))) == ["http://a/1"]


def test_csv_without_header_rows_and_empty_file(tmp_path: Path) -> None:
    header_only = write_bytes(tmp_path / "a.csv", b"url,caption\n")
    empty = write_bytes(tmp_path / "b.csv.gz", b"")
    assert read_all(cfg(header_only, empty)) == []
    assert validate_inputs(cfg(header_only, empty)) == sorted([header_only, empty])


# --------------------------------------------------------------------------- jsonl rules


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


def test_jsonl_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl", b'{"url": "http://a/1"}\n\n{"url": \n')
    with pytest.raises(InputError, match=r"in\.jsonl line 3"):
        read_all(cfg(path))


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


def test_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    txt = write_bytes(tmp_path / "a.txt.gz", bom + b"http://a/1\nhttp://a/2\n")
    jsonl = write_bytes(tmp_path / "b.jsonl", bom + b'{"url": "http://a/3"}\n')
    csv_file = write_bytes(tmp_path / "c.csv", bom + b"url\nhttp://a/4\n")
    assert all_urls(read_all(cfg(txt))) == ["http://a/1", "http://a/2"]
    assert all_urls(read_all(cfg(jsonl, csv_file))) == ["http://a/3", "http://a/4"]


# --------------------------------------------------------------------------- parquet rules


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


def test_parquet_non_text_url_column_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"url": [1, 2]}), path)
    with pytest.raises(InputError, match="int64"):
        validate_inputs(cfg(path))


# --------------------------------------------------------------------------- extras and ids


def test_reserved_names_are_renamed(tmp_path: Path) -> None:
    assert {"item_id", "url", "status", "body", "fetched_at", "sha256"} <= RESERVED_COLUMNS
    assert len(RESERVED_COLUMNS) == 15 and "path" in RESERVED_COLUMNS  # 14 base + path
    data = b"url,status,item_id,input_size,size,title\nhttp://a/1,s,7,is,z,t\n"
    extras = all_extras(read_all(cfg(write_bytes(tmp_path / "in.csv", data))))
    assert extras.column_names == [
        "input_status",
        "input_item_id",
        "input_size",
        "input_input_size",
        "title",
    ]
    assert extras.to_pylist() == [
        {
            "input_status": "s",
            "input_item_id": "7",
            "input_size": "is",
            "input_input_size": "z",
            "title": "t",
        }
    ]


def test_extra_columns_selection(tmp_path: Path) -> None:
    path = write_format("jsonl", tmp_path / "in.jsonl", records())
    assert all(b.extras is None for b in read_all(cfg(path, extra_columns=())))
    extras = all_extras(read_all(cfg(path, extra_columns=("caption",))))
    assert extras.column_names == ["caption"]
    with pytest.raises(InputError, match="'missing'"):
        read_all(cfg(path, extra_columns=("caption", "missing")))


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


# A mix of URL texts that clean_url changes (whitespace of every kind, over-long values,
# non-ASCII) and ones it keeps.
_DIRTY = [
    "http://a/x",
    " http://a/lead",
    "http://a/trail ",
    "\thttp://a/tab\t",
    "\u3000http://a/ideographic\u3000",
    "\xa0http://a/nbsp\xa0",
    "\x1chttp://a/fs\x1f",
    "\x85http://a/nel",
    "http://a/in side",
    "http://a/\x00",
    "http://a/\x7f",
    "http://a/ü",
    "",
    "   ",
    None,
    "h" * 19,
    "h" * 20,
    "h" * 21,
    "h" * 30,
    " " + "h" * 20 + " ",
    "ü" * 20,
    "ü" * 21,
    "http://a/" + "\U0001f600" * 12,
]


@pytest.mark.parametrize(
    "kind", ["string", "large_string", "binary", "chunked", "sliced", "clean", "empty"]
)
def test_vectorized_url_cleaning_matches_clean_url(kind: str) -> None:
    max_length = 19
    values: list[Any] = list(_DIRTY)
    if kind == "clean":
        values = [f"http://a/{i}" for i in range(9)] + [None]
    elif kind == "empty":
        values = []
    expected = [clean_url(v, max_length) if v is not None else None for v in values]
    if kind == "binary":
        values = [v.encode() if v is not None else None for v in values] + [b"http://a/\xff"]
        expected.append(None)  # not valid UTF-8
        column = pa.chunked_array([pa.array(values, type=pa.binary())])
    elif kind == "large_string":
        column = pa.chunked_array([pa.array(values, type=pa.large_string())])
    elif kind == "chunked":
        column = pa.chunked_array(
            [pa.array(values[:7], type=pa.string()), pa.array(values[7:], type=pa.string())]
        )
    elif kind == "sliced":
        column = pa.chunked_array([pa.array(["x", *values, "y"], type=pa.string()).slice(1)])
        column = column.slice(0, len(values))
    else:
        column = pa.chunked_array([pa.array(values, type=pa.string())], type=pa.string())
    got = urls_from_column(column, max_length)
    assert got.type == pa.string()
    assert got.to_pylist() == expected


# --------------------------------------------------------------------------- batching


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


# --------------------------------------------------------------------------- resolution


def touch(path: Path, data: bytes = b"http://a/1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folder_resolution(tmp_path: Path) -> None:
    root = tmp_path / "in"
    keep = [
        touch(root / "b.txt"),
        touch(root / "a.csv.gz", gzip.compress(b"url\nhttp://a/1\n")),
        touch(root / "sub" / "c.jsonl", b'{"url": "http://a/1"}\n'),
        touch(root / "sub" / "urls"),
    ]
    touch(root / ".hidden.txt")
    touch(root / "partial.txt.tmp")
    touch(root / "_SUCCESS")
    touch(root / "README.md")
    touch(root / ".git" / "x.txt")
    touch(root / "_temporary" / "y.txt")
    assert resolve_inputs([str(root)]) == sorted(p.resolve() for p in keep)


def test_glob_resolution_sorted_and_deduplicated(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.txt")
    b = touch(tmp_path / "b.txt")
    touch(tmp_path / "c.csv", b"url\nhttp://a/1\n")
    touch(tmp_path / "d.txt.tmp")
    result = resolve_inputs([str(tmp_path / "*.txt"), str(b), str(tmp_path / "?.txt")])
    assert result == [a.resolve(), b.resolve()]
    assert resolve_inputs([str(tmp_path / "[ab].txt")]) == [a.resolve(), b.resolve()]
    assert len(resolve_inputs([str(tmp_path / "*")])) == 3  # .tmp skipped


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ("missing.txt", r"not found: .*missing\.txt"),
        ("*.nothing", r"glob matches no files: .*\*\.nothing"),
        ("emptydir", r"folder holds no input files: .*emptydir"),
    ],
)
def test_resolution_errors(entry: str, pattern: str, tmp_path: Path) -> None:
    (tmp_path / "emptydir").mkdir()
    touch(tmp_path / "emptydir" / "notes.md")
    with pytest.raises(InputError, match=pattern) as info:
        resolve_inputs([str(tmp_path / entry)])
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=pattern):
        read_all(cfg(tmp_path / entry))


def test_no_paths_is_an_error() -> None:
    with pytest.raises(InputError, match="no input paths"):
        resolve_inputs([])
    with pytest.raises(InputError):
        validate_inputs(InputConfig())


def test_fingerprint_files(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.txt", b"http://a/1\nhttp://a/2\n")
    os.utime(path, ns=(1_000_000_000, 1_234_567_890_123))
    relative = Path(os.path.relpath(path))
    assert fingerprint_files([relative]) == [
        {"path": str(path.resolve()), "size": 22, "mtime_ns": 1_234_567_890_123}
    ]
    with pytest.raises(InputError, match="nope"):
        fingerprint_files([tmp_path / "nope.txt"])


# --------------------------------------------------------------------------- mixing and errors


def test_mixed_formats_with_same_extras(tmp_path: Path) -> None:
    rows = [{"url": u, "n": i} for i, u in enumerate(URLS)]
    a = write_format("jsonl", tmp_path / "a.jsonl", rows[:3])
    b = write_format("parquet", tmp_path / "b.parquet", rows[3:])
    batches = read_all(cfg(a, b))
    assert all_urls(batches) == URLS
    assert all_extras(batches).column("n").to_pylist() == list(range(len(URLS)))
    assert validate_inputs(cfg(a, b)) == [a.resolve(), b.resolve()]


def test_mixed_extras_schemas_name_both_files(tmp_path: Path) -> None:
    a = write_format("jsonl", tmp_path / "a.jsonl", records())
    b = write_format("csv", tmp_path / "b.csv", records())
    calls: list[Callable[[InputConfig], object]] = [validate_inputs, read_all]
    for call in calls:
        with pytest.raises(InputError) as info:
            call(cfg(a, b))
        assert str(a.resolve()) in str(info.value) and str(b.resolve()) in str(info.value)
    txt = write_format("txt", tmp_path / "c.txt", records())
    with pytest.raises(InputError, match=r"c\.txt"):
        validate_inputs(cfg(a, txt))
    # Choosing no extras makes them compatible.
    assert len(all_urls(read_all(cfg(a, b, txt, extra_columns=())))) == 3 * len(URLS)


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


def test_compressed_parquet_is_rejected(tmp_path: Path) -> None:
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"url": ["http://a/1"]}), buf)
    path = write_bytes(tmp_path / "in.parquet.gz", buf.getvalue().to_pybytes())
    with pytest.raises(InputError, match="compressed Parquet"):
        validate_inputs(cfg(path))


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
