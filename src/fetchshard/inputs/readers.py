"""The readers of each format, and the run's inputs as one set resolved once (InputSet)."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fetchshard.config import InputConfig
from fetchshard.errors import InputError
from fetchshard.inputs.files import one_line, resolve_inputs
from fetchshard.inputs.lines import decode_prefix, iter_json_rows, iter_lines, open_stream
from fetchshard.inputs.slices import (
    LineRange,
    Piece,
    header_line,
    needed_columns,
    row_group_bytes,
    slice_of,
)
from fetchshard.inputs.specs import (
    CONVERT_ERRORS,
    CSV_BLOCK,
    JSONL_SAMPLE_ROWS,
    READ_ERRORS,
    RESERVED_COLUMNS,
    FileSpec,
    check_compatible,
    csv_parse_options,
    inspect_file,
    parquet_footer,
)
from fetchshard.inputs.values import (
    clean_url,
    id_text,
    ids_from_column,
    json_text,
    sanitize,
    text_values,
    url_array,
    urls_from_column,
)

_T = TypeVar("_T")


log = logging.getLogger(__name__)


# Column chunks are streamed through a buffer this big instead of read whole: a row group of
# a big file can hold hundreds of MB of URLs.
_PARQUET_BUFFER = 1 << 20


_Chunk = tuple[pa.Array, list[str | None] | None, pa.Table | None]


@dataclass(frozen=True, slots=True)
class InputBatch:
    """At most ``input.batch_rows`` consecutive input rows."""

    urls: pa.Array  # pa.string(); null: the URL was null, not a string, or not valid UTF-8
    ids: list[str | None] | None  # the id column as text; None when no id column is configured
    extras: pa.Table | None  # the extra columns of exactly these rows; None when there are none
    first_row: int  # 0-based index of the first row in the whole input (all files, in order)
    # A plan slice's batch: where its rows come from, and the first one's row in that piece
    # (first_row is then an order key, not a row number).
    origin: str | None = None
    origin_row: int = 0

    def where(self, index: int) -> str:
        """Where row ``index`` of the batch is in the input, for messages."""
        if self.origin is None:
            return f"input row {self.first_row + index}"
        return f"{self.origin}, row {self.origin_row + index}"


@dataclass(frozen=True)
class InputSet:
    """A run's inputs, resolved and inspected once: the files it fingerprints are the files
    it reads, with the columns it checked."""

    config: InputConfig
    specs: tuple[FileSpec, ...]

    @property
    def files(self) -> list[Path]:
        return [spec.path for spec in self.specs]

    def batches(self) -> Iterator[InputBatch]:
        """Every input row, file by file in :func:`resolve_inputs` order, in bounded batches."""
        row = 0
        for spec in self.specs:
            for urls, ids, extras in _read_file(spec, self.config):
                yield InputBatch(urls=urls, ids=ids, extras=extras, first_row=row)
                row += len(urls)

    def slice(self, rank: int, world_size: int) -> InputSlice:
        """The rows rank ``rank`` of ``world_size`` reads in the plan step (inputs/slices.py)."""
        return InputSlice(self, rank, world_size, tuple(slice_of(self.specs, rank, world_size)))


# A plan slice's rows are ordered by (file, slice, row in the slice) in one int64.
_ROW_BITS = 36
MAX_SLICE_ROWS = 1 << _ROW_BITS


@dataclass
class InputSlice:
    """The input rows one rank of the plan step reads, and how many bytes it read for them."""

    inputs: InputSet
    rank: int
    world_size: int
    pieces: tuple[Piece, ...]
    bytes_read: int = 0

    def batches(self) -> Iterator[InputBatch]:
        """The slice's rows in bounded batches; ``first_row`` orders rows as the input does."""
        for piece in self.pieces:
            spec = self.inputs.specs[piece.file]
            base = (piece.file * self.world_size + self.rank) << _ROW_BITS
            origin = f"input {spec.path}" + (
                f" from byte {piece.start}" if piece.kind == "bytes" and piece.start else ""
            )
            row = 0
            source, chunks = self._open(spec, piece)
            try:
                for urls, ids, extras in chunks:
                    if row + len(urls) > MAX_SLICE_ROWS:
                        raise InputError(f"{origin}: more than {MAX_SLICE_ROWS} rows in one slice")
                    yield InputBatch(urls, ids, extras, base + row, origin=origin, origin_row=row)
                    row += len(urls)
            finally:
                if source is not None:
                    self.bytes_read += source.bytes_read
                    source.close()

    def _open(self, spec: FileSpec, piece: Piece) -> tuple[LineRange | None, Iterator[_Chunk]]:
        config = self.inputs.config
        if piece.kind == "row_groups":
            self.bytes_read += _row_group_bytes(spec, piece.start, piece.stop)
            groups = range(piece.start, piece.stop)
            return None, _read_file(spec, config, row_groups=groups)
        if piece.kind == "whole":
            self.bytes_read += spec.path.stat().st_size
            return None, _read_file(spec, config)
        header = b""
        if spec.fmt in ("csv", "tsv") and piece.start > 0:
            header = header_line(spec.path)
            self.bytes_read += len(header)
        source = LineRange(spec.path, piece.start, piece.stop, header=header)
        return source, _read_file(spec, config, source=source)


def _row_group_bytes(spec: FileSpec, start: int, stop: int) -> int:
    """What reading the needed columns of row groups ``start .. stop-1`` reads: their column
    chunks and the footer."""
    footer = int(parquet_footer(spec.path).serialized_size) + 8
    return footer + sum(row_group_bytes(spec, g) for g in range(start, stop))


def open_inputs(config: InputConfig, *, reserved: frozenset[str] = RESERVED_COLUMNS) -> InputSet:
    """Resolve the inputs and check every file's columns, cheaply, before any work starts.

    ``reserved``: the output's column names, which extra input columns must not take.
    """
    specs: list[FileSpec] = []
    first: FileSpec | None = None
    for path in resolve_inputs(config.paths):
        spec = inspect_file(path, config, reserved)
        first = check_compatible(first, spec)
        specs.append(spec)
    return InputSet(config, tuple(specs))


def validate_inputs(config: InputConfig) -> list[Path]:
    """The resolved input files, every file's columns checked (:func:`open_inputs`)."""
    return open_inputs(config).files


def _rechunk(batches: Iterable[pa.RecordBatch], size: int) -> Iterator[pa.Table]:
    """Regroup record batches into tables of at most ``size`` rows (only the last smaller)."""
    buffered: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        buffered.append(batch)
        count += batch.num_rows
        while count >= size:
            table = pa.Table.from_batches(buffered)
            yield table.slice(0, size)
            rest = table.slice(size)
            buffered = rest.to_batches()
            count = rest.num_rows
    if count:
        yield pa.Table.from_batches(buffered)


def _stream(spec: FileSpec, source: Any) -> Any:
    """The file's (decompressing) stream, or the given slice of it."""
    return open_stream(spec.path, spec.compression) if source is None else source


def _read_txt(spec: FileSpec, config: InputConfig, source: Any = None) -> Iterator[_Chunk]:
    max_length = config.max_url_length
    cap = 4 * (max_length + 1)  # enough bytes for max_length + 1 characters of any width
    urls: list[str | None] = []
    with _stream(spec, source) as stream:
        for line, truncated in iter_lines(stream, cap):
            url: str | None
            if truncated:
                text = decode_prefix(line)
                url = None if text is None else text.lstrip()[: max_length + 1]
            else:
                raw = line.strip()
                if not raw:
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    url = None
                else:
                    if not text.strip():
                        continue
                    url = clean_url(text, max_length)
            urls.append(url)
            if len(urls) >= config.batch_rows:
                yield url_array(urls), None, None
                urls = []
    if urls:
        yield url_array(urls), None, None


def _table_chunk(
    spec: FileSpec, table: pa.Table, config: InputConfig, extras: list[pa.ChunkedArray]
) -> _Chunk:
    assert spec.url_column is not None
    urls = urls_from_column(table.column(spec.url_column), config.max_url_length)
    ids = ids_from_column(table.column(spec.id_column)) if spec.id_column is not None else None
    extras_table = (
        pa.Table.from_arrays(extras, schema=spec.extras_schema)
        if spec.extras_schema is not None
        else None
    )
    return urls, ids, extras_table


def _csv_extra(column: pa.ChunkedArray) -> pa.ChunkedArray:
    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:  # invalid UTF-8: decode with U+FFFD replacement
        return pa.chunked_array([pa.array(text_values(column, "replace"), type=pa.string())])


def _read_csv(spec: FileSpec, config: InputConfig, source: Any = None) -> Iterator[_Chunk]:
    if not spec.known:
        return
    assert spec.url_column is not None
    columns = needed_columns(spec)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.binary() for name in columns},
        include_columns=columns,
        strings_can_be_null=False,
    )
    with _stream(spec, source) as stream:
        reader = pacsv.open_csv(
            stream if source is None else pa.PythonFile(stream, mode="r"),
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK),
            parse_options=csv_parse_options(spec.fmt),
            convert_options=convert,
        )
        for table in _rechunk(reader, config.batch_rows):
            extras = [_csv_extra(table.column(name)) for name in spec.extra_sources]
            yield _table_chunk(spec, table, config, extras)


def _read_parquet(
    spec: FileSpec, config: InputConfig, row_groups: range | None = None
) -> Iterator[_Chunk]:
    assert spec.url_column is not None
    columns = needed_columns(spec)
    schema = spec.extras_schema
    # pre_buffer (pyarrow's default) caches every row group it reads until the file is
    # closed: the whole compressed file ends up in memory (381 MB for a 30 M-row input)
    footer = parquet_footer(spec.path)
    with pq.ParquetFile(
        str(spec.path), metadata=footer, buffer_size=_PARQUET_BUFFER, pre_buffer=False
    ) as pf:
        batches = pf.iter_batches(
            batch_size=config.batch_rows, columns=columns, row_groups=row_groups
        )
        for table in _rechunk(batches, config.batch_rows):
            extras: list[pa.ChunkedArray] = []
            if schema is not None:
                for name, field in zip(spec.extra_sources, schema, strict=True):
                    column = table.column(name)
                    if column.type != field.type:
                        column = column.cast(field.type)
                    extras.append(column)
            yield _table_chunk(spec, table, config, extras)


def _json_column(values: list[Any], tp: pa.DataType, name: str, where: str) -> pa.Array:
    """Convert one jsonl column of a batch to the file's inferred type ``tp``.

    Values are inferred first and then *safely* cast (a direct ``pa.array(values, type=int64)``
    would silently truncate 1.5 to 1); the direct typed conversion is the second try (it fills
    missing struct fields). Lone surrogates are replaced, and a string column keeps any
    non-string value as its JSON text.
    """
    error: BaseException | None = None
    for sanitized in (False, True):
        if sanitized:
            values = [sanitize(v) for v in values]
        try:
            inferred = pa.array(values)
            return inferred if inferred.type == tp else inferred.cast(tp)
        except CONVERT_ERRORS as exc:
            error = exc
        if not pa.types.is_integer(tp):
            try:
                return pa.array(values, type=tp)
            except CONVERT_ERRORS as exc:
                error = exc
    if tp == pa.string():
        return pa.array(
            [v if v is None or isinstance(v, str) else json_text(v) for v in values],
            type=pa.string(),
        )
    raise InputError(
        f"{where}: values of column {name!r} do not fit its type {tp} (inferred from the "
        f"first {JSONL_SAMPLE_ROWS} rows): {one_line(error or ValueError())}"
    ) from error


def _read_jsonl(spec: FileSpec, config: InputConfig, source: Any = None) -> Iterator[_Chunk]:
    if not spec.known:
        return
    url_column = spec.url_column
    assert url_column is not None
    schema = spec.extras_schema
    known = {url_column, spec.id_column, *spec.extra_sources}
    warned: set[str] = set()
    watch = config.extra_columns is None  # only then can a late key be a lost column
    row_no = 0

    def chunk(rows: list[dict[str, Any]]) -> _Chunk:
        urls: list[str | None] = []
        for row in rows:
            value = row.get(url_column)
            urls.append(clean_url(value, config.max_url_length) if isinstance(value, str) else None)
        ids = (
            [id_text(row.get(spec.id_column)) for row in rows]
            if spec.id_column is not None
            else None
        )
        extras = None
        if schema is not None:
            where = f"input {spec.path} rows {row_no - len(rows) + 1}-{row_no}"
            arrays = [
                _json_column([row.get(src) for row in rows], field.type, src, where)
                for src, field in zip(spec.extra_sources, schema, strict=True)
            ]
            extras = pa.Table.from_arrays(arrays, schema=schema)
        if watch:
            late = set().union(*(row.keys() for row in rows)) - known - warned
            for key in sorted(late):
                log.warning(
                    "input %s: key %r first appears after the first %d rows and is ignored; "
                    "list it in input.extra_columns to keep it",
                    spec.path,
                    key,
                    JSONL_SAMPLE_ROWS,
                )
            warned.update(late)
        return url_array(urls), ids, extras

    rows: list[dict[str, Any]] = []
    for row, _ in iter_json_rows(spec.path, spec.compression, stream=source):
        rows.append(row)
        row_no += 1
        if len(rows) >= config.batch_rows:
            yield chunk(rows)
            rows = []
    if rows:
        yield chunk(rows)


_READERS: dict[str, Any] = {
    "txt": _read_txt,
    "csv": _read_csv,
    "tsv": _read_csv,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def _read_file(spec: FileSpec, config: InputConfig, **part: Any) -> Iterator[_Chunk]:
    """The file's rows; ``part``: ``source=`` a slice of a text file, ``row_groups=`` some
    row groups of a Parquet file."""
    try:
        yield from _READERS[spec.fmt](spec, config, **part)
    except READ_ERRORS as exc:
        raise InputError(f"cannot read input {spec.path}: {one_line(exc)}") from exc


def read_ahead(items: Iterator[_T], depth: int = 2) -> Iterator[_T]:
    """``items``, produced by a helper thread up to ``depth`` ahead of the consumer.

    Arrow's readers and kernels release the GIL, so decoding the next batch overlaps the
    work on this one (planning at world size 1: ~0.25 of 1.5 s). An error of the producer is
    raised here; leaving the loop early stops the producer and closes ``items``.
    """
    slots: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((end, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((end, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if item is end:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def iter_batches(config: InputConfig) -> Iterator[InputBatch]:
    """Every input row of ``config``'s inputs, in bounded batches (:meth:`InputSet.batches`)."""
    return open_inputs(config).batches()
