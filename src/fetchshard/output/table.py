"""Result rows to an Arrow table in the part schema, by the run's :class:`ColumnTable`."""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any

import pyarrow as pa

from fetchshard.output.columns import Column, ColumnTable, ResultRow
from fetchshard.output.extras import decode_extras

_PAIR = struct.Struct("<ii")  # the offsets (0, size) of a one-value binary array
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


def _ms(seconds: float | None) -> int | None:
    return int(seconds * 1000) if seconds is not None else None


# How a column's values are taken from the rows when not as they are.
_CONVERT: dict[str, Callable[[Any], Any]] = {"fetched_at": _ms}


def _array(column: Column, rows: Sequence[ResultRow], store_body: bool) -> Any:
    name = column.name
    if name == "body":
        if not store_body:
            return pa.nulls(len(rows), pa.binary())
        return body_column([r.body for r in rows])
    if column.stage:
        values = [r.more.get(name) if r.more is not None else None for r in rows]
    else:
        values = list(map(attrgetter(name), rows))
    convert = _CONVERT.get(name)
    if convert is not None:
        values = [convert(v) for v in values]
    return pa.array(values, type=column.type)


def rows_to_table(
    rows: Sequence[ResultRow],
    columns: ColumnTable,
    schema: pa.Schema,
    extras: pa.Schema | None,
    store_body: bool,
) -> pa.Table:
    """A table of ``schema`` (``columns.schema(extras)``) from result rows."""
    head = [_array(c, rows, store_body) for c in columns.head]
    extra_arrays = decode_extras([r.extras for r in rows], extras) if extras is not None else []
    tail = [_array(c, rows, store_body) for c in columns.tail]
    return pa.Table.from_arrays([*head, *extra_arrays, *tail], schema=schema)
