"""The 1/W of the input one rank of the plan step reads, and the readers of such a slice.

The input is laid out as one line of bytes, file after file: a plain text file (txt, csv, tsv,
jsonl) by its size, a Parquet file by the compressed size of its row groups' needed columns,
a compressed text file as one unit it cannot be cut in. Rank ``p`` of ``W`` owns the bytes
``[p * T // W, (p + 1) * T // W)`` of the ``T`` in all:

- of a plain text file, the lines that *start* in its bytes (a line is read to its end, even
  past the slice, and a slice starting inside a line skips to the next one): every line is
  read by exactly one rank, and a rank reads its bytes plus at most one line and one byte;
- a row group, or a compressed file, whose first byte is its (at most one ends past it).

A CSV slice also reads the file's header line. A CSV value holding a line break would be cut
(the plan step needs one row per line there; Parquet has no such limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetchshard.inputs.specs import FileSpec, parquet_footer

_SCAN = 64 * 1024  # bytes read at a time (the header)
_TAIL = 4096  # bytes read at a time to find a line's end: where a slice starts and ends


@dataclass(frozen=True, slots=True)
class Piece:
    """What one rank reads of one file: bytes ``[start, stop)`` (the lines starting there) of
    a plain text file, row groups ``[start, stop)`` of a Parquet file, or a whole file."""

    file: int  # index into the input's files
    kind: str  # "bytes", "row_groups" or "whole"
    start: int
    stop: int


def needed_columns(spec: FileSpec) -> list[str]:
    names = [spec.url_column, spec.id_column, *spec.extra_sources]
    return [n for n in dict.fromkeys(names) if n is not None]


def row_group_bytes(spec: FileSpec, group: int) -> int:
    """The compressed bytes of the needed columns of one row group: what reading it reads."""
    wanted = set(needed_columns(spec))
    meta = parquet_footer(spec.path).row_group(group)
    return sum(
        meta.column(c).total_compressed_size
        for c in range(meta.num_columns)
        if meta.column(c).path_in_schema.split(".")[0] in wanted
    )


def _units(index: int, spec: FileSpec) -> list[tuple[str, int, int, int]]:
    """The file's cuttable units: (kind, start, stop, weight in bytes)."""
    size = spec.path.stat().st_size
    if spec.fmt == "parquet":
        groups = parquet_footer(spec.path).num_row_groups
        return [("row_groups", g, g + 1, row_group_bytes(spec, g)) for g in range(groups)]
    if spec.compression is not None:
        return [("whole", 0, size, size)]
    return [("bytes", 0, size, size)]


def slice_of(specs: tuple[FileSpec, ...], rank: int, world_size: int) -> list[Piece]:
    """The pieces rank ``rank`` of ``world_size`` reads, in input order (see the module)."""
    layout = [(i, *unit) for i, spec in enumerate(specs) for unit in _units(i, spec)]
    total = sum(weight for *_, weight in layout)
    lo, hi = rank * total // world_size, (rank + 1) * total // world_size
    pieces: list[Piece] = []
    at = 0
    for index, kind, start, stop, weight in layout:
        begin, end = at, at + weight
        at = end
        if kind == "bytes":
            first, last = max(lo, begin), min(hi, end)
            if first < last:
                pieces.append(Piece(index, kind, start + first - begin, start + last - begin))
        elif weight and lo <= begin < hi:  # (a unit of no bytes holds no rows)
            if pieces and pieces[-1].file == index and pieces[-1].kind == kind == "row_groups":
                pieces[-1] = Piece(index, kind, pieces[-1].start, stop)
            else:
                pieces.append(Piece(index, kind, start, stop))
    return pieces


class LineRange:
    """A read-only binary stream of the lines of ``path`` that start in ``[start, stop)``
    (after ``header``, when given); ``bytes_read`` counts what it read of the file."""

    def __init__(self, path: Path, start: int, stop: int, *, header: bytes = b"") -> None:
        self._file = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by close()
        self._stop = stop
        self._header = header
        self.bytes_read = 0
        self._finishing = False  # past stop, reading the last line to its end
        self._done = False
        self._pos = start
        if start > 0:
            self._skip_to_line_start(start)
        if self._pos >= stop:
            self._done = True

    def _skip_to_line_start(self, start: int) -> None:
        self._file.seek(start - 1)
        pos = start - 1
        while True:
            block = self._file.read(_TAIL)
            self.bytes_read += len(block)
            if not block:
                self._pos = pos
                return
            newline = block.find(b"\n")
            if newline >= 0:
                self._pos = pos + newline + 1
                self._file.seek(self._pos)
                return
            pos += len(block)

    def read(self, size: int = -1) -> bytes:
        if self._header:
            head, self._header = self._header, b""
            return head
        if self._done:
            return b""
        want = size if size is not None and size > 0 else _SCAN
        if not self._finishing:
            data = self._file.read(min(want, self._stop - self._pos))
            self.bytes_read += len(data)
            self._pos += len(data)
            if not data:
                self._done = True
            elif self._pos >= self._stop:
                if data.endswith(b"\n"):
                    self._done = True
                else:
                    self._finishing = True
            return data
        data = self._file.read(min(want, _TAIL))
        self.bytes_read += len(data)
        if not data:
            self._done = True
            return b""
        newline = data.find(b"\n")
        if newline >= 0:
            data = data[: newline + 1]
            self._done = True
        return data

    # What pyarrow and the line readers ask of a file object.
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._file.closed

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> LineRange:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def header_line(path: Path) -> bytes:
    """The first line of a file, with its line break."""
    with open(path, "rb") as f:
        out = bytearray()
        while True:
            block = f.read(_SCAN)
            if not block:
                return bytes(out)
            newline = block.find(b"\n")
            if newline >= 0:
                return bytes(out + block[: newline + 1])
            out += block
