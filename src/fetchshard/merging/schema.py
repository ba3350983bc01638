"""The merged files' columns: parts' rows as the data and errors configs hold them.

Data rows lose the error columns (always null there); in image mode the body becomes
``image``, the struct of ``bytes`` and ``path`` that `datasets`' Image feature decodes, named
as such in the ``huggingface`` schema metadata (of every file: `datasets` reads the first).
Error rows lose the body and its description and gain the URL's ``host``. A webdataset
shard's sidecar holds its samples' data rows without the body, keyed by the sample's ``key``.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from fetchshard.merging.plan import BODY_IMAGE
from fetchshard.urls import BadUrl, normalize_url

BODY = "body"
IMAGE = "image"
IMAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])
_NOT_IN_DATA = ("error_kind", "error_message")
_NOT_IN_ERRORS = (BODY, "content_type", "size", "sha256", "elapsed_ms")
HOST = "host"
KEY = "key"
INPUT_KEY = "input_key"
_HF_KEY = b"huggingface"


def data_schema(parts: pa.Schema, body_as: str) -> pa.Schema:
    fields = [f for f in parts if f.name not in _NOT_IN_DATA]
    if body_as == BODY_IMAGE and IMAGE not in parts.names:  # else an input column has it
        fields = [pa.field(IMAGE, IMAGE_TYPE) if f.name == BODY else f for f in fields]
    return _with_features(pa.schema(fields))


def errors_schema(parts: pa.Schema) -> pa.Schema:
    fields = [f for f in parts if f.name not in _NOT_IN_ERRORS]
    if HOST not in parts.names:  # else an input column has it
        at = [f.name for f in fields].index("url") + 1
        fields.insert(at, pa.field(HOST, pa.string()))
    return _with_features(pa.schema(fields))


def sidecar_schema(parts: pa.Schema) -> pa.Schema:
    """A webdataset shard's metadata rows (the samples' ``.json`` members hold the same)."""
    fields = [
        f.with_name(INPUT_KEY) if f.name == KEY else f  # an input column "key" stays, renamed
        for f in parts
        if f.name not in (*_NOT_IN_DATA, BODY)
    ]
    return pa.schema([pa.field(KEY, pa.string(), nullable=False), *fields])


def to_sidecar(table: pa.Table, schema: pa.Schema, keys: list[str]) -> pa.Table:
    columns = [pa.array(keys, pa.string())]
    for f in schema:
        if f.name != KEY:
            name = KEY if f.name == INPUT_KEY and INPUT_KEY not in table.column_names else f.name
            columns.append(_column(table, f.with_name(name)))
    return pa.Table.from_arrays(columns, schema=schema)


def to_data(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Data rows of ``table`` (the parts' schema) in the data file's ``schema``."""
    columns = []
    for f in schema:
        if f.name == IMAGE and f.type == IMAGE_TYPE and IMAGE not in table.column_names:
            body = table.column(BODY).combine_chunks()
            paths = pa.nulls(len(body), pa.string())
            columns.append(
                pa.StructArray.from_arrays(
                    [body, paths], fields=list(IMAGE_TYPE), mask=body.is_null()
                )
            )
        else:
            columns.append(_column(table, f))
    return pa.Table.from_arrays(columns, schema=schema)


def to_errors(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for f in schema:
        if f.name == HOST and HOST not in table.column_names:
            columns.append(pa.array([_host(u) for u in table.column("url").to_pylist()]))
        else:
            columns.append(_column(table, f))
    return pa.Table.from_arrays(columns, schema=schema)


def _column(table: pa.Table, f: pa.Field) -> pa.ChunkedArray | pa.Array:
    if f.name not in table.column_names:  # a part written before a column existed
        return pa.nulls(table.num_rows, f.type)
    column = table.column(f.name)
    return column if column.type == f.type else column.cast(f.type)


def _host(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        return normalize_url(url).host
    except BadUrl:
        return None


# -------------------------------------------------------------- datasets' features


def feature(tp: pa.DataType) -> dict[str, Any] | None:
    """The `datasets` feature of an Arrow type (as its JSON), or None where we have none."""
    if tp == IMAGE_TYPE:
        return {"_type": "Image"}
    if pa.types.is_timestamp(tp):
        unit = tp.unit
        dtype = f"timestamp[{unit}, tz={tp.tz}]" if tp.tz else f"timestamp[{unit}]"
        return {"dtype": dtype, "_type": "Value"}
    name = _VALUE_TYPES.get(tp)
    return None if name is None else {"dtype": name, "_type": "Value"}


_VALUE_TYPES = {
    pa.bool_(): "bool",
    pa.int8(): "int8",
    pa.int16(): "int16",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.uint8(): "uint8",
    pa.uint16(): "uint16",
    pa.uint32(): "uint32",
    pa.uint64(): "uint64",
    pa.float16(): "float16",
    pa.float32(): "float32",
    pa.float64(): "float64",
    pa.string(): "string",
    pa.large_string(): "large_string",
    pa.binary(): "binary",
    pa.large_binary(): "large_binary",
    pa.date32(): "date32",
}


def features(schema: pa.Schema) -> dict[str, dict[str, Any]] | None:
    """Every column's feature, or None when some column has no simple one."""
    out = {}
    for f in schema:
        found = feature(f.type)
        if found is None:
            return None
        out[f.name] = found
    return out


def _with_features(schema: pa.Schema) -> pa.Schema:
    """The schema with the metadata `datasets` reads: the columns it can name (each is
    matched on its own), so the image column decodes to pictures."""
    named = {f.name: found for f in schema if (found := feature(f.type)) is not None}
    meta = json.dumps({"info": {"features": named}}, sort_keys=True).encode()
    return schema.with_metadata({_HF_KEY: meta})
