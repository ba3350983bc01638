"""The column table: declared once by ResultRow, extended by stages, reserved against inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest

from fetchshard.config import InputConfig
from fetchshard.inputs import RESERVED_COLUMNS, open_inputs
from fetchshard.output.columns import BASE_COLUMNS, PATH_COLUMN, Column, ResultRow
from fetchshard.output.table import rows_to_table
from util import ok_row

PART_COLUMNS = [
    ("item_id", pa.int64()),
    ("url", pa.string()),
    ("status", pa.string()),
    ("error_kind", pa.string()),
    ("error_message", pa.string()),
    ("http_status", pa.int32()),
    ("final_url", pa.string()),
    ("content_type", pa.string()),
    ("size", pa.int64()),
    ("sha256", pa.string()),
    ("attempts", pa.int32()),
    ("fetched_at", pa.timestamp("ms", tz="UTC")),
    ("elapsed_ms", pa.float64()),
    ("body", pa.binary()),
]


def row(i: int, **more: object) -> ResultRow:
    return ok_row(
        i,
        url=f"http://h.test/{i}",
        content_type="image/jpeg",
        sha256="ab",
        fetched_at=1.7e9 + i,
        elapsed_ms=2.5,
        more=dict(more) or None,
    )


def test_the_part_schema_is_the_row_s_fields_in_order() -> None:
    schema = BASE_COLUMNS.schema(None)
    assert [(f.name, f.type) for f in schema] == PART_COLUMNS
    assert not schema.field("item_id").nullable and not schema.field("status").nullable
    own = [f.name for f in dataclasses.fields(ResultRow) if f.name not in ("extras", "more")]
    assert own == [name for name, _ in PART_COLUMNS]


def test_extra_input_columns_go_after_url() -> None:
    extras = pa.schema([("caption", pa.string()), ("n", pa.int64())])
    names = BASE_COLUMNS.schema(extras).names
    assert names[:4] == ["item_id", "url", "caption", "n"] and names[-1] == "body"
    assert BASE_COLUMNS.dictionary_columns(extras) == [
        "status",
        "error_kind",
        "content_type",
        "caption",
        "n",
    ]
    no_stats = set(BASE_COLUMNS.schema(extras).names) - set(BASE_COLUMNS.statistics_columns(extras))
    assert no_stats == {"url", "final_url", "error_message", "sha256", "body"}


def test_the_reserved_input_names_are_the_table_s() -> None:
    assert BASE_COLUMNS.names == {name for name, _ in PART_COLUMNS}
    assert BASE_COLUMNS.names | {PATH_COLUMN} == RESERVED_COLUMNS  # the files' column too


def test_a_stage_s_columns_go_before_the_body_and_are_reserved() -> None:
    table = BASE_COLUMNS.extended([Column("width", pa.int32()), Column("height", pa.int32())])
    names = table.schema(None).names
    assert names[-3:] == ["width", "height", "body"]
    assert {"width", "height"} <= table.names
    with pytest.raises(ValueError, match="declared twice"):
        table.extended([Column("width", pa.int64())])
    with pytest.raises(ValueError, match="declared twice"):
        BASE_COLUMNS.extended([Column("sha256", pa.string())])


def test_rows_carry_stage_values_into_the_table() -> None:
    table = BASE_COLUMNS.extended([Column("width", pa.int32())])
    schema = table.schema(None)
    out = rows_to_table([row(1, width=640), row(2)], table, schema, None, store_body=True)
    assert out.column("width").to_pylist() == [640, None]
    assert out.column("body").to_pylist() == [b"abc", b"abc"]
    assert out.column("fetched_at")[0].value == int((1.7e9 + 1) * 1000)
    without = rows_to_table([row(1)], table, schema, None, store_body=False)
    assert without.column("body").to_pylist() == [None]


def test_an_input_column_named_like_a_stage_column_is_renamed(tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_text("url,width,status\nhttp://h.test/1,3,x\n", encoding="utf-8")
    config = InputConfig(paths=(str(path),))
    plain = open_inputs(config)
    assert plain.specs[0].extras_schema.names == ["width", "input_status"]  # type: ignore[union-attr]
    table = BASE_COLUMNS.extended([Column("width", pa.int32())])
    staged = open_inputs(config, reserved=table.names)
    assert staged.specs[0].extras_schema.names == ["input_width", "input_status"]  # type: ignore[union-attr]
    assert staged.files == [path.resolve()]
