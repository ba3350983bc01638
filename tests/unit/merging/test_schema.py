"""The merged files' columns: data and errors schemas, and the parts' rows converted to them."""

from __future__ import annotations

import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.merging.plan import BODY_BINARY, BODY_IMAGE
from fetchshard.merging.schema import (
    IMAGE_TYPE,
    data_schema,
    errors_schema,
    features,
    to_data,
    to_errors,
)
from fetchshard.output.columns import BASE_COLUMNS

PARTS = BASE_COLUMNS.schema(None)
EXTRAS = pa.schema([("caption", pa.string())])


def _features_of(schema: pa.Schema) -> dict[str, Any]:
    assert schema.metadata is not None
    meta = json.loads(schema.metadata[b"huggingface"])
    found: dict[str, Any] = meta["info"]["features"]
    return found


def _parts_table(rows: list[dict[str, Any]], schema: pa.Schema = PARTS) -> pa.Table:
    """Rows of a part: every column of ``schema``, what ``rows`` leave out null (or 1)."""
    defaults = {"attempts": 1}
    columns = {
        f.name: pa.array([r.get(f.name, defaults.get(f.name)) for r in rows], f.type)
        for f in schema
    }
    return pa.table(columns, schema=schema)


def _roundtrip(table: pa.Table) -> pa.Table:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return pq.read_table(pa.BufferReader(sink.getvalue()))


# ---------------------------------------------------------------------------- data


def test_data_drops_the_error_columns_and_keeps_the_rest_in_order() -> None:
    schema = data_schema(PARTS, BODY_BINARY)
    assert schema.names == [n for n in PARTS.names if n not in ("error_kind", "error_message")]
    assert schema.field("body").type == pa.binary()
    assert "image" not in schema.names


def test_image_mode_turns_the_body_into_the_image_struct_in_its_place() -> None:
    schema = data_schema(PARTS, BODY_IMAGE)
    binary = data_schema(PARTS, BODY_BINARY)
    assert "body" not in schema.names
    assert schema.names == ["image" if n == "body" else n for n in binary.names]
    image = schema.field("image").type
    assert image == IMAGE_TYPE
    assert [(f.name, f.type) for f in image] == [("bytes", pa.binary()), ("path", pa.string())]


def test_the_huggingface_metadata_names_the_image_feature_and_the_values() -> None:
    named = _features_of(data_schema(PARTS, BODY_IMAGE))
    assert named["image"] == {"_type": "Image"}
    assert named["item_id"] == {"dtype": "int64", "_type": "Value"}
    assert named["url"] == {"dtype": "string", "_type": "Value"}
    assert named["http_status"] == {"dtype": "int32", "_type": "Value"}
    assert named["fetched_at"] == {"dtype": "timestamp[ms, tz=UTC]", "_type": "Value"}
    assert list(named) == sorted(named)  # written with sorted keys
    assert set(named) == set(data_schema(PARTS, BODY_IMAGE).names)


def test_binary_mode_names_the_body_as_binary() -> None:
    named = _features_of(data_schema(PARTS, BODY_BINARY))
    assert named["body"] == {"dtype": "binary", "_type": "Value"}
    assert "image" not in named


def test_an_input_column_named_image_is_left_alone_and_the_body_stays() -> None:
    parts = BASE_COLUMNS.schema(pa.schema([("image", pa.string())]))
    schema = data_schema(parts, BODY_IMAGE)
    assert schema.field("image").type == pa.string()
    assert schema.field("body").type == pa.binary()
    assert schema.names.count("image") == 1
    named = _features_of(schema)
    assert named["image"] == {"dtype": "string", "_type": "Value"}


def test_a_column_without_a_simple_feature_is_left_out_of_the_metadata() -> None:
    parts = BASE_COLUMNS.schema(pa.schema([("tags", pa.list_(pa.string()))]))
    schema = data_schema(parts, BODY_BINARY)
    named = _features_of(schema)
    assert "tags" in schema.names and "tags" not in named
    assert "item_id" in named
    assert features(schema) is None  # not every column has one: the card names none


def test_to_data_makes_image_structs_and_null_bodies_null_structs() -> None:
    table = _parts_table(
        [
            {"item_id": 1, "url": "http://a.test/1", "status": "ok", "size": 3, "body": b"abc"},
            {"item_id": 2, "url": "http://a.test/2", "status": "ok", "size": 0, "body": None},
            {"item_id": 3, "url": "http://a.test/3", "status": "ok", "size": 2, "body": b"de"},
        ]
    )
    schema = data_schema(PARTS, BODY_IMAGE)
    data = to_data(table, schema)
    assert data.schema == schema
    assert data.column("image").to_pylist() == [
        {"bytes": b"abc", "path": None},
        None,
        {"bytes": b"de", "path": None},
    ]
    assert data.column("item_id").to_pylist() == [1, 2, 3]
    assert _roundtrip(data).column("image").to_pylist() == data.column("image").to_pylist()


def test_to_data_in_binary_mode_keeps_the_bodies() -> None:
    table = _parts_table([{"item_id": 1, "url": "u", "status": "ok", "body": b"\x00\xff"}])
    data = to_data(table, data_schema(PARTS, BODY_BINARY))
    assert data.column("body").to_pylist() == [b"\x00\xff"]
    assert "error_kind" not in data.column_names


def test_to_data_over_several_chunks() -> None:
    one = _parts_table([{"item_id": 1, "url": "u", "status": "ok", "body": b"x"}])
    two = _parts_table([{"item_id": 2, "url": "v", "status": "ok", "body": None}])
    data = to_data(pa.concat_tables([one, two]), data_schema(PARTS, BODY_IMAGE))
    assert data.column("image").to_pylist() == [{"bytes": b"x", "path": None}, None]


def test_a_part_lacking_a_column_gets_nulls() -> None:
    older = pa.schema([f for f in PARTS if f.name != "sha256"])
    table = _parts_table(
        [
            {"item_id": 1, "url": "u", "status": "ok", "body": b"x"},
            {"item_id": 2, "url": "v", "status": "ok", "body": b"y"},
        ],
        older,
    )
    data = to_data(table, data_schema(PARTS, BODY_IMAGE))
    assert data.column("sha256").type == pa.string()
    assert data.column("sha256").to_pylist() == [None, None]
    errors = to_errors(table, errors_schema(PARTS))
    assert errors.num_rows == 2 and errors.schema == errors_schema(PARTS)


def test_a_column_of_another_type_is_cast() -> None:
    table = _parts_table([{"item_id": 1, "url": "u", "status": "ok", "http_status": 200}])
    table = table.set_column(
        table.schema.get_field_index("http_status"), "http_status", pa.array([200], pa.int64())
    )
    data = to_data(table, data_schema(PARTS, BODY_BINARY))
    assert data.schema.field("http_status").type == pa.int32()
    assert data.column("http_status").to_pylist() == [200]


# -------------------------------------------------------------------------- errors


def test_errors_drop_the_body_and_its_description_and_gain_the_host_after_the_url() -> None:
    schema = errors_schema(BASE_COLUMNS.schema(EXTRAS))
    dropped = {"body", "content_type", "size", "sha256", "elapsed_ms"}
    expected = [n for n in BASE_COLUMNS.schema(EXTRAS).names if n not in dropped]
    expected.insert(expected.index("url") + 1, "host")
    assert schema.names == expected
    assert schema.field("host").type == pa.string()
    assert "error_kind" in schema.names and "caption" in schema.names
    named = _features_of(schema)
    assert named["host"] == {"dtype": "string", "_type": "Value"}
    assert "body" not in named


def test_to_errors_gives_each_row_its_urls_host() -> None:
    urls = [
        "http://Example.COM/a",
        "https://b.test:8443/x?y=1",
        "http://c.test:80/",
        "not a url",
        "ftp://d.test/file",
        "http://[::1/",
        None,
    ]
    table = _parts_table(
        [
            {"item_id": i, "url": u, "status": "failed", "error_kind": "dns", "size": 5}
            for i, u in enumerate(urls)
        ]
    )
    schema = errors_schema(PARTS)
    errors = to_errors(table, schema)
    assert errors.schema == schema
    assert errors.column("host").to_pylist() == [
        "example.com",
        "b.test:8443",
        "c.test",
        None,
        None,
        None,
        None,
    ]
    assert errors.column("url").to_pylist() == urls
    assert errors.column("error_kind").to_pylist() == ["dns"] * len(urls)
    assert "size" not in errors.column_names


def test_to_errors_of_no_rows() -> None:
    errors = to_errors(_parts_table([]), errors_schema(PARTS))
    assert errors.num_rows == 0 and "host" in errors.column_names


def test_an_input_column_named_host_gives_one_host_column_in_a_readable_file() -> None:
    # A URL list may well carry a "host" column: it is not a reserved name, so it is kept.
    parts = BASE_COLUMNS.schema(pa.schema([("host", pa.string())]))
    schema = errors_schema(parts)
    assert schema.names.count("host") == 1, schema.names
    table = _parts_table(
        [{"item_id": 1, "url": "http://a.test/", "status": "failed", "host": "mine"}], parts
    )
    errors = to_errors(table, schema)
    assert _roundtrip(errors).num_rows == 1
    found = features(schema)
    assert found is not None and len(found) == len(schema)


@pytest.mark.parametrize("body_as", [BODY_IMAGE, BODY_BINARY])
def test_every_column_of_the_base_parts_has_a_feature(body_as: str) -> None:
    data = data_schema(PARTS, body_as)
    found = features(data)
    assert found is not None and list(found) == data.names
    errors = features(errors_schema(PARTS))
    assert errors is not None and list(errors) == errors_schema(PARTS).names
