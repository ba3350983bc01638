"""The output rows: the Parquet schema of a part, and how extra input columns travel.

Extra input columns ride through the ledger as one compact JSON array per item (values in
the order of the extras schema, which the ledger stores once); the writer turns them back into
Arrow columns of their original types.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"
_PAIR = struct.Struct("<ii")  # the offsets (0, size) of a one-value binary array

# The columns fetchshard owns, in order; the input's extra columns go after ``url``.
_HEAD = [pa.field("item_id", pa.int64(), nullable=False), pa.field("url", pa.string())]
_TAIL = [
    pa.field("status", pa.string(), nullable=False),
    pa.field("error_kind", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("http_status", pa.int32()),
    pa.field("final_url", pa.string()),
    pa.field("content_type", pa.string()),
    pa.field("size", pa.int64()),
    pa.field("sha256", pa.string()),
    pa.field("attempts", pa.int32(), nullable=False),
    pa.field("fetched_at", pa.timestamp("ms", tz="UTC")),
    pa.field("elapsed_ms", pa.float64()),
    pa.field("body", pa.binary()),
]
OWN_COLUMNS = frozenset(f.name for f in (*_HEAD, *_TAIL))


@dataclass(slots=True)  # not frozen: made once per URL on the event loop (see FetchResult)
class ResultRow:
    """The terminal record of one item: what a part file holds for it."""

    item_id: int
    url: str
    extras: str | None
    status: str
    error_kind: str | None
    error_message: str | None
    http_status: int | None
    final_url: str | None
    content_type: str | None
    size: int | None
    attempts: int
    fetched_at: float | None  # seconds since the epoch
    elapsed_ms: float | None
    body: bytes | None  # of a successful fetch (stored if configured)
    sha256: str | None = None  # of ``body``


def output_schema(extras: pa.Schema | None) -> pa.Schema:
    extra_fields = list(extras) if extras is not None else []
    return pa.schema([*_HEAD, *extra_fields, *_TAIL])


def _is_binary(tp: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(tp) or pa.types.is_large_binary(tp) or pa.types.is_fixed_size_binary(tp)
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    return str(value)


def encode_extras(table: pa.Table) -> list[str]:
    """One JSON array per row of ``table`` (the extra columns of kept input rows)."""
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    dumps = json.JSONEncoder(separators=(",", ":"), default=_json_default).encode
    return [dumps(list(values)) for values in zip(*columns, strict=True)]


def decode_extras(values: Sequence[str | None], schema: pa.Schema) -> list[pa.Array]:
    """Arrow columns (one per schema field) from the JSON arrays :func:`encode_extras` made."""
    rows = [json.loads(v) if v is not None else None for v in values]
    arrays = []
    for index, field in enumerate(schema):
        column = [row[index] if row is not None else None for row in rows]
        if _is_binary(field.type):
            column = [base64.b64decode(v) if v is not None else None for v in column]
        arrays.append(pa.array(column, type=field.type))
    return arrays


def rows_to_table(
    rows: Sequence[ResultRow], schema: pa.Schema, extras: pa.Schema | None, store_body: bool
) -> pa.Table:
    """A table in the part schema from result rows."""
    head = [
        pa.array([r.item_id for r in rows], type=pa.int64()),
        pa.array([r.url for r in rows], type=pa.string()),
    ]
    extra_arrays = decode_extras([r.extras for r in rows], extras) if extras is not None else []
    tail = [
        pa.array([r.status for r in rows], type=pa.string()),
        pa.array([r.error_kind for r in rows], type=pa.string()),
        pa.array([r.error_message for r in rows], type=pa.string()),
        pa.array([r.http_status for r in rows], type=pa.int32()),
        pa.array([r.final_url for r in rows], type=pa.string()),
        pa.array([r.content_type for r in rows], type=pa.string()),
        pa.array([r.size for r in rows], type=pa.int64()),
        pa.array([r.sha256 for r in rows], type=pa.string()),
        pa.array([r.attempts for r in rows], type=pa.int32()),
        pa.array(
            [int(r.fetched_at * 1000) if r.fetched_at is not None else None for r in rows],
            type=pa.timestamp("ms", tz="UTC"),
        ),
        pa.array([r.elapsed_ms for r in rows], type=pa.float64()),
        body_column([r.body for r in rows]) if store_body else pa.nulls(len(rows), pa.binary()),
    ]
    return pa.Table.from_arrays([*head, *extra_arrays, *tail], schema=schema)


_NULL_BODY = pa.nulls(1, pa.binary())


def body_column(bodies: Sequence[bytes | None]) -> pa.ChunkedArray:
    """The bodies as a binary column that shares their memory (one chunk per row).

    ``pa.array(bodies)`` would copy every body while holding the GIL (~4 ms per 8 MB row
    group, during which the event loop stands still); the Parquet encoder reads the chunks
    without the GIL and copies each body once, into its pages.
    """
    chunks = [
        _NULL_BODY
        if body is None
        else pa.Array.from_buffers(
            pa.binary(), 1, [None, pa.py_buffer(_PAIR.pack(0, len(body))), pa.py_buffer(body)]
        )
        for body in bodies
    ]
    return pa.chunked_array(chunks, type=pa.binary())


def serialize_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def deserialize_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))
