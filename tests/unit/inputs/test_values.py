"""Values as the readers clean them (inputs/values.py): URLs vectorized as clean_url does one,
extra columns named like the writer's renamed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from fetchshard.inputs import RESERVED_COLUMNS
from fetchshard.inputs.values import clean_url, urls_from_column
from input_files import all_extras, cfg, read_all, write_bytes

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
