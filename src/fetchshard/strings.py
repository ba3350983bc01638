"""Numpy views of Arrow string arrays, and byte scans over them (planning's vectorized paths)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa

_SCAN_CHUNK = 64 * 1024  # bytes of string data checked at a time (rows_with_bytes)


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The offsets (``len(arr) + 1`` of them, int64) and the UTF-8 bytes of a ``pa.string()``
    array, as numpy views of its buffers (value ``i`` is ``data[offsets[i]:offsets[i + 1]]``;
    null values may hold any bytes)."""
    buffers = arr.buffers()
    offsets = np.frombuffer(
        buffers[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4
    ).astype(np.int64)
    data = buffers[2]
    if data is None:
        return offsets, np.zeros(0, dtype=np.uint8)
    return offsets, np.frombuffer(data, dtype=np.uint8)


def byte_positions(
    offsets: np.ndarray, data: np.ndarray, test: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The positions in ``data`` (sorted) of the array's bytes for which ``test`` (bytes ->
    bool mask) is true."""
    start, stop = int(offsets[0]), int(offsets[-1])
    found = [np.zeros(0, dtype=np.int64)]
    # In 64 KiB pieces: the temporaries stay in cache, which is several times faster.
    for lo in range(start, stop, _SCAN_CHUNK):
        hits = np.flatnonzero(test(data[lo : min(lo + _SCAN_CHUNK, stop)]))
        if len(hits):
            found.append(hits + lo)
    return np.concatenate(found)


def rows_with_bytes(
    offsets: np.ndarray, data: np.ndarray, test: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """The rows (sorted) holding a byte for which ``test`` (bytes -> bool mask) is true."""
    positions = byte_positions(offsets, data, test)
    return np.unique(np.searchsorted(offsets, positions, side="right") - 1)
