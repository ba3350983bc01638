"""The extra input columns on their way through the ledger: one JSON array per item.

Values are in the order of the extras schema, which the ledger stores once (serialized); the
writer turns them back into Arrow columns of their original types. Planning encodes with
:func:`encode_extras_fast` (vectorized), which gives exactly :func:`encode_extras`'s text.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fetchshard.strings import rows_with_bytes, string_buffers


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


def serialize_schema(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def deserialize_schema(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def encode_extras_fast(table: pa.Table) -> list[str]:
    """:func:`schema.encode_extras`, vectorized for string, integer and boolean columns (the
    JSON text of other columns comes from encode_extras itself, column by column)."""
    if table.num_rows == 0:
        return []
    texts: list[str] = extras_json(table).to_pylist()
    return texts


def extras_json(table: pa.Table) -> pa.Array:
    pieces: list[Any] = ["["]
    for index, column in enumerate(table.columns):
        if index:
            pieces.append(",")
        pieces.append(_json_values(column.combine_chunks()))
    pieces.append("]")
    return pc.binary_join_element_wise(*pieces, "")


def _json_values(values: pa.Array) -> pa.Array:
    """The JSON text of each value, as encode_extras writes it inside its arrays."""
    tp = values.type
    if pa.types.is_integer(tp) or pa.types.is_boolean(tp):
        out = values.cast(pa.string())  # 42, -7, true, false: as json writes them
    elif pa.types.is_string(tp) or pa.types.is_large_string(tp):
        text = values.cast(pa.string())
        out = pc.binary_join_element_wise('"', text, '"', "")
        # Everything but printable ASCII without '"' and '\\' is escaped: let json do those.
        offsets, data = string_buffers(text)
        escaped = np.zeros(len(text), dtype=bool)
        escaped[rows_with_bytes(offsets, data, _json_escaped)] = True
        if text.null_count:
            escaped &= text.is_valid().to_numpy(zero_copy_only=False)
        if escaped.any():
            mask = pa.array(escaped)
            out = pc.replace_with_mask(out, mask, _json_values_slow(text.filter(mask)))
    else:
        out = _json_values_slow(values)
    return out.fill_null("null")


def _json_values_slow(values: pa.Array) -> pa.Array:
    encoded = encode_extras(pa.table({"v": values}))  # "[<value>]" per row
    return pa.array([text[1:-1] for text in encoded], type=pa.string())


def _json_escaped(data: np.ndarray) -> np.ndarray:
    return (data < 0x20) | (data >= 0x7F) | (data == 0x22) | (data == 0x5C)  # type: ignore[no-any-return]
