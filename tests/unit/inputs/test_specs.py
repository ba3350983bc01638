"""What a file holds, checked before any work (inputs/specs.py): the columns asked for, a
txt file's none, headers, types, compression, and files whose extras must agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.config import InputConfig
from fetchshard.errors import InputError
from fetchshard.inputs import validate_inputs
from input_files import (
    URLS,
    all_extras,
    all_urls,
    cfg,
    read_all,
    records,
    write_bytes,
    write_format,
)


def test_txt_rejects_id_and_extra_columns(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.txt", b"http://a/1\n")
    with pytest.raises(InputError, match="id_column"):
        read_all(cfg(path, id_column="id"))
    with pytest.raises(InputError, match="extra_columns"):
        validate_inputs(cfg(path, extra_columns=("caption",)))
    assert all_urls(read_all(cfg(path, extra_columns=()))) == ["http://a/1"]


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


def test_extra_columns_selection(tmp_path: Path) -> None:
    path = write_format("jsonl", tmp_path / "in.jsonl", records())
    assert all(b.extras is None for b in read_all(cfg(path, extra_columns=())))
    extras = all_extras(read_all(cfg(path, extra_columns=("caption",))))
    assert extras.column_names == ["caption"]
    with pytest.raises(InputError, match="'missing'"):
        read_all(cfg(path, extra_columns=("caption", "missing")))


def test_parquet_non_text_url_column_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"url": [1, 2]}), path)
    with pytest.raises(InputError, match="int64"):
        validate_inputs(cfg(path))


def test_compressed_parquet_is_rejected(tmp_path: Path) -> None:
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"url": ["http://a/1"]}), buf)
    path = write_bytes(tmp_path / "in.parquet.gz", buf.getvalue().to_pybytes())
    with pytest.raises(InputError, match="compressed Parquet"):
        validate_inputs(cfg(path))


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
