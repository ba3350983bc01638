"""URL, id and extra values as the readers clean them (vectorized where they can be)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fetchshard.strings import rows_with_bytes, string_buffers

RENAME_PREFIX = "input_"


_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_url(text: str, max_length: int) -> str | None:
    text = text.strip()
    if len(text) > max_length:
        text = text[: max_length + 1]
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (e.g. a JSON "\ud800" escape)
            return None
    return text


def sanitize(value: Any) -> Any:
    """Replace lone surrogates (which Arrow cannot store) with U+FFFD, recursively."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [sanitize(v) for v in value]
    if isinstance(value, dict):
        return {k: sanitize(v) for k, v in value.items()}
    return value


def json_text(value: Any) -> str:
    text: str = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return _SURROGATES.sub("\ufffd", text)


def id_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool | list | dict):
        return json_text(value)
    return str(value)


def is_string_type(tp: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(tp) or pa.types.is_large_string(tp) or pa.types.is_string_view(tp)
    )


def is_binary_type(tp: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(tp)
        or pa.types.is_large_binary(tp)
        or pa.types.is_binary_view(tp)
        or pa.types.is_fixed_size_binary(tp)
    )


def text_values(column: pa.ChunkedArray, errors: str) -> list[str | None]:
    """A string or binary column as Python text; ``errors="strict"`` maps bad UTF-8 to None."""
    if is_string_type(column.type):
        values: list[str | None] = column.to_pylist()
        return values
    try:
        values = column.cast(pa.string()).to_pylist()  # validates UTF-8 in C++
        return values
    except pa.ArrowInvalid:
        pass
    out: list[str | None] = []
    for raw in column.to_pylist():
        if raw is None:
            out.append(None)
            continue
        try:
            out.append(raw.decode("utf-8", errors))
        except UnicodeDecodeError:
            out.append(None)
    return out


def url_array(urls: list[str | None]) -> pa.Array:
    return pa.array(urls, type=pa.string())


def _not_graphic(data: np.ndarray) -> np.ndarray:
    """Whitespace, control characters and any byte of a non-ASCII character."""
    return (data <= 0x20) | (data >= 0x7F)


def urls_from_column(column: pa.ChunkedArray, max_length: int) -> pa.Array:
    """The cleaned URLs of a string or binary column, as :func:`clean_url` per value.

    Vectorized: only values that are not printable ASCII without whitespace, or that are
    longer than ``max_length + 1``, are cleaned one by one in Python.
    """
    arr: pa.Array | None = None
    try:
        if column.type != pa.string():
            column = column.cast(pa.string())  # validates UTF-8 of a binary column in C++
        arr = column.combine_chunks()
    except pa.ArrowException:  # invalid UTF-8 (becomes None) or too large for one array
        pass
    if arr is None:
        return url_array(
            [
                clean_url(v, max_length) if v is not None else None
                for v in text_values(column, "strict")
            ]
        )
    # Printable ASCII without whitespace, at most max_length + 1 long: clean_url keeps it.
    offsets, data = string_buffers(arr)
    dirty = np.diff(offsets) > max_length + 1
    dirty[rows_with_bytes(offsets, data, _not_graphic)] = True
    if arr.null_count:
        dirty &= arr.is_valid().to_numpy(zero_copy_only=False)
    if not dirty.any():
        return arr
    mask = pa.array(dirty)
    cleaned = url_array([clean_url(v, max_length) for v in arr.filter(mask).to_pylist()])
    return pc.replace_with_mask(arr, mask, cleaned)


def ids_from_column(column: pa.ChunkedArray) -> list[str | None]:
    if is_string_type(column.type) or is_binary_type(column.type):
        return text_values(column, "replace")
    return [id_text(v) for v in column.to_pylist()]


def output_type(tp: pa.DataType) -> pa.DataType:
    """The extras type a Parquet column becomes (stable, JSON-round-trippable)."""
    if pa.types.is_dictionary(tp):
        return output_type(tp.value_type)
    if pa.types.is_temporal(tp) or pa.types.is_decimal(tp):
        return pa.string()
    return tp


def denull(tp: pa.DataType) -> pa.DataType:
    """Replace null types (a JSON column or list that was always null/empty) with string."""
    if pa.types.is_null(tp):
        return pa.string()
    if pa.types.is_list(tp):
        return pa.list_(denull(tp.value_type))
    if pa.types.is_large_list(tp):
        return pa.large_list(denull(tp.value_type))
    if pa.types.is_struct(tp):
        return pa.struct([pa.field(f.name, denull(f.type)) for f in tp])
    return tp


def output_names(sources: Sequence[str], reserved: frozenset[str]) -> list[str]:
    """Rename extras that collide with a ``reserved`` name (``status`` -> ``input_status``)."""
    used = {name for name in sources if name not in reserved}
    out: list[str] = []
    for name in sources:
        if name in reserved:
            new = RENAME_PREFIX + name
            while new in reserved or new in used:
                new = RENAME_PREFIX + new
            used.add(new)
            name = new
        out.append(name)
    return out
