"""Stream URL inputs (txt, csv, tsv, jsonl, parquet; plain, .gz or .zst) in bounded Arrow batches.

Nothing here reads a whole file into memory: text formats go through a decompressing
``pa.input_stream`` read in fixed-size chunks, CSV through pyarrow's streaming reader, Parquet
through ``ParquetFile.iter_batches`` over the needed columns only. Memory is bounded by
``input.batch_rows`` and a few fixed buffers, never by the size of the input.

How each format becomes rows:

* **txt** — one URL per line; surrounding whitespace stripped, blank lines are not rows. A line
  that is not valid UTF-8 gives a ``None`` URL. An over-long line is cut while reading and
  passed on as ``max_url_length + 1`` characters, so validation rejects it as too long.
* **csv / tsv** — a header row is required. Every needed column is read as *binary* and
  decoded here, so invalid UTF-8 never stops the reader: a URL that is not UTF-8 becomes
  ``None``, an extra value is decoded with U+FFFD replacement. CSV extras are strings.
* **jsonl** — parsed line by line with :mod:`json` (pyarrow's streaming JSON reader fixes
  the types from its first block and fails on any later change, on fields that appear late
  and on a non-string URL). The extras schema of a file is inferred from its first
  :data:`JSONL_SAMPLE_ROWS` rows (JSON types kept: int64, double, string, nested; a column
  that is only null there is a string column); later rows are converted to that schema. A
  value of a string column that is not a string is kept as its JSON text; any other value
  that does not fit is an :class:`InputError`. Keys first seen after the sample are ignored
  with a warning (list them in ``input.extra_columns`` to keep them). A URL that is not a
  string is ``None``.
* **parquet** — only the needed columns are read. Extras keep their types, except temporal
  and decimal columns, which become strings, and dictionary columns, which are decoded.

URLs from every format have surrounding whitespace stripped and are cut to
``max_url_length + 1`` characters when longer; a batch holds them as one ``pa.string()``
array (null where the text above says ``None``). Table formats clean them vectorized. Extra
columns named like a column the writer owns (:data:`RESERVED_COLUMNS`) are renamed ``input_<name>``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import queue
import re
import threading
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fetchshard.config import InputConfig
from fetchshard.errors import InputError
from fetchshard.output.columns import BASE_COLUMNS
from fetchshard.strings import byte_positions, rows_with_bytes, string_buffers

_T = TypeVar("_T")

__all__ = [
    "FORMATS",
    "JSONL_SAMPLE_ROWS",
    "RESERVED_COLUMNS",
    "InputBatch",
    "InputSet",
    "byte_positions",
    "detect_format",
    "fingerprint_files",
    "iter_batches",
    "open_inputs",
    "resolve_inputs",
    "rows_with_bytes",
    "string_buffers",
    "validate_inputs",
]

log = logging.getLogger(__name__)

FORMATS = ("txt", "csv", "tsv", "jsonl", "parquet")

# The names fetchshard writes (output/columns.py); a run with stages reserves theirs too.
RESERVED_COLUMNS: frozenset[str] = BASE_COLUMNS.names
RENAME_PREFIX = "input_"

# The jsonl extras schema is inferred from this many rows (or _JSONL_SAMPLE_BYTES of lines).
JSONL_SAMPLE_ROWS = 10_000
_JSONL_SAMPLE_BYTES = 16 * 1024 * 1024
_MAX_JSON_LINE = 64 * 1024 * 1024  # a jsonl record longer than this is an InputError
_READ_CHUNK = 256 * 1024  # bytes per read from a (decompressing) text stream
# Column chunks are streamed through a buffer this big instead of read whole: a row group of
# a big file can hold hundreds of MB of URLs.
_PARQUET_BUFFER = 1 << 20
_CSV_BLOCK = 4 * 1024 * 1024  # pyarrow CSV block; one CSV row must fit in it

_COMPRESSION = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}
_SUFFIX_FORMAT = {
    "": "txt",
    ".txt": "txt",
    ".lst": "txt",
    ".urls": "txt",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_GLOB_CHARS = frozenset("*?[")
_BOM = b"\xef\xbb\xbf"
_SURROGATES = re.compile("[\ud800-\udfff]")
_CONVERT_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)
_READ_ERRORS = (pa.ArrowException, OSError, EOFError)

_Chunk = tuple[pa.Array, list[str | None] | None, pa.Table | None]


@dataclass(frozen=True, slots=True)
class InputBatch:
    """At most ``input.batch_rows`` consecutive input rows."""

    urls: pa.Array  # pa.string(); null: the URL was null, not a string, or not valid UTF-8
    ids: list[str | None] | None  # the id column as text; None when no id column is configured
    extras: pa.Table | None  # the extra columns of exactly these rows; None when there are none
    first_row: int  # 0-based index of the first row in the whole input (all files, in order)


# --------------------------------------------------------------------------- file discovery


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _skipped_name(name: str) -> bool:
    """Hidden files, Hadoop/Spark markers (``_SUCCESS``, ``_temporary``) and partial files."""
    return name.startswith((".", "_")) or name.endswith(".tmp")


def _detectable(path: Path) -> bool:
    try:
        detect_format(path, "auto")
    except InputError:
        return False
    return True


def _folder_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _skipped_name(d))
        for name in sorted(files):
            path = Path(root) / name
            if not _skipped_name(name) and _detectable(path):
                found.append(path)
    return found


def resolve_inputs(paths: Sequence[str]) -> list[Path]:
    """Expand files, globs and folders into a sorted, de-duplicated list of resolved files.

    A folder means every file below it whose format can be detected from its name (hidden
    files, names starting with ``_`` and names ending ``.tmp`` are skipped); the same names
    are skipped among glob matches. A file named explicitly is always taken.
    """
    if not paths:
        raise InputError("no input paths given (set input.paths)")
    found: set[Path] = set()
    for entry in paths:
        expanded = os.path.expanduser(entry)
        files: list[Path] = []
        if any(ch in _GLOB_CHARS for ch in entry):
            for match in sorted(glob.glob(expanded, recursive=True)):
                path = Path(match)
                if path.is_dir():
                    files.extend(_folder_files(path))
                elif path.exists() and not _skipped_name(path.name):
                    files.append(path)
            if not files:
                raise InputError(f"input glob matches no files: {entry}")
        else:
            path = Path(expanded)
            if path.is_dir():
                files = _folder_files(path)
                if not files:
                    raise InputError(f"input folder holds no input files: {entry}")
            elif path.exists():
                files = [path]
            else:
                raise InputError(f"input file not found: {entry}")
        found.update(f.resolve() for f in files)
    return sorted(found)


def _split_compression(path: Path) -> tuple[str, str | None]:
    """``("name.csv", "gzip")`` for ``name.csv.gz``; the name is lower-cased."""
    name = path.name.lower()
    for suffix, codec in _COMPRESSION.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], codec
    return name, None


def detect_format(path: Path, configured: str) -> str:
    """The input format: ``configured`` unless it is ``"auto"``, else from the file name."""
    if configured != "auto":
        if configured not in FORMATS:
            raise InputError(f"unknown input format {configured!r} (known: {', '.join(FORMATS)})")
        return configured
    name, _ = _split_compression(path)
    suffix = Path(name).suffix
    fmt = _SUFFIX_FORMAT.get(suffix)
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path} from its suffix {suffix!r}; "
            f"set input.format to one of {', '.join(FORMATS)}"
        )
    return fmt


def fingerprint_files(paths: Sequence[Path]) -> list[dict[str, object]]:
    """Path, size and modification time of each file (to recognise the same inputs later)."""
    out: list[dict[str, object]] = []
    for path in paths:
        try:
            resolved = path.resolve()
            st = resolved.stat()
        except OSError as exc:
            raise InputError(f"cannot read input file {path}: {_one_line(exc)}") from exc
        out.append({"path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out


# --------------------------------------------------------------------------- value helpers


def _clean_url(text: str, max_length: int) -> str | None:
    text = text.strip()
    if len(text) > max_length:
        text = text[: max_length + 1]
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (e.g. a JSON "\ud800" escape)
            return None
    return text


def _sanitize(value: Any) -> Any:
    """Replace lone surrogates (which Arrow cannot store) with U+FFFD, recursively."""
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, list):
        return [_sanitize(v) for v in value]
    if isinstance(value, dict):
        return {k: _sanitize(v) for k, v in value.items()}
    return value


def _json_text(value: Any) -> str:
    text: str = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return _SURROGATES.sub("\ufffd", text)


def _id_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _SURROGATES.sub("\ufffd", value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool | list | dict):
        return _json_text(value)
    return str(value)


def _is_string_type(tp: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(tp) or pa.types.is_large_string(tp) or pa.types.is_string_view(tp)
    )


def _is_binary_type(tp: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(tp)
        or pa.types.is_large_binary(tp)
        or pa.types.is_binary_view(tp)
        or pa.types.is_fixed_size_binary(tp)
    )


def _text_values(column: pa.ChunkedArray, errors: str) -> list[str | None]:
    """A string or binary column as Python text; ``errors="strict"`` maps bad UTF-8 to None."""
    if _is_string_type(column.type):
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


def _url_array(urls: list[str | None]) -> pa.Array:
    return pa.array(urls, type=pa.string())


def _not_graphic(data: np.ndarray) -> np.ndarray:
    """Whitespace, control characters and any byte of a non-ASCII character."""
    return (data <= 0x20) | (data >= 0x7F)


def _urls_from_column(column: pa.ChunkedArray, max_length: int) -> pa.Array:
    """The cleaned URLs of a string or binary column, as :func:`_clean_url` per value.

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
        return _url_array(
            [
                _clean_url(v, max_length) if v is not None else None
                for v in _text_values(column, "strict")
            ]
        )
    # Printable ASCII without whitespace, at most max_length + 1 long: _clean_url keeps it.
    offsets, data = string_buffers(arr)
    dirty = np.diff(offsets) > max_length + 1
    dirty[rows_with_bytes(offsets, data, _not_graphic)] = True
    if arr.null_count:
        dirty &= arr.is_valid().to_numpy(zero_copy_only=False)
    if not dirty.any():
        return arr
    mask = pa.array(dirty)
    cleaned = _url_array([_clean_url(v, max_length) for v in arr.filter(mask).to_pylist()])
    return pc.replace_with_mask(arr, mask, cleaned)


def _ids_from_column(column: pa.ChunkedArray) -> list[str | None]:
    if _is_string_type(column.type) or _is_binary_type(column.type):
        return _text_values(column, "replace")
    return [_id_text(v) for v in column.to_pylist()]


def _output_type(tp: pa.DataType) -> pa.DataType:
    """The extras type a Parquet column becomes (stable, JSON-round-trippable)."""
    if pa.types.is_dictionary(tp):
        return _output_type(tp.value_type)
    if pa.types.is_temporal(tp) or pa.types.is_decimal(tp):
        return pa.string()
    return tp


def _denull(tp: pa.DataType) -> pa.DataType:
    """Replace null types (a JSON column or list that was always null/empty) with string."""
    if pa.types.is_null(tp):
        return pa.string()
    if pa.types.is_list(tp):
        return pa.list_(_denull(tp.value_type))
    if pa.types.is_large_list(tp):
        return pa.large_list(_denull(tp.value_type))
    if pa.types.is_struct(tp):
        return pa.struct([pa.field(f.name, _denull(f.type)) for f in tp])
    return tp


def _output_names(sources: Sequence[str], reserved: frozenset[str]) -> list[str]:
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


# --------------------------------------------------------------------------- line reading


def _open_stream(path: Path, compression: str | None) -> Any:
    return pa.input_stream(str(path), compression=compression)


def _iter_lines(stream: Any, cap: int) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(line, truncated)`` for every line (``\\n`` removed, blank lines included).

    Memory stays bounded: a line longer than ``cap`` bytes (after dropping leading ASCII
    whitespace) is yielded as its first ``cap`` bytes with ``truncated=True`` as soon as it
    is known to be too long, and the rest of it is skipped.
    """
    pending = bytearray()
    skipping = False
    first = True
    while True:
        chunk: bytes = stream.read(_READ_CHUNK)
        if not chunk:
            break
        if first:
            first = False
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        parts = chunk.split(b"\n")
        tail = parts.pop()
        if parts:
            if skipping:
                parts = parts[1:]  # the end of the over-long line
                skipping = False
            elif pending:
                pending += parts[0]
                parts[0] = bytes(pending)
            pending = bytearray()
            for line in parts:
                if len(line) > cap:
                    line = line.lstrip()
                    if len(line) > cap:
                        yield line[:cap], True
                        continue
                yield line, False
            pending += tail
        elif not skipping:
            pending += tail
        if not skipping and len(pending) > cap:
            stripped = bytes(pending).lstrip()
            if len(stripped) > cap:
                yield stripped[:cap], True
                pending = bytearray()
                skipping = True
            else:
                pending = bytearray(stripped)
    if pending and not skipping:
        yield bytes(pending), False


def _decode_prefix(data: bytes) -> str | None:
    """Decode a cut-off line, allowing the cut to fall inside a multi-byte character."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end == len(data) and exc.reason == "unexpected end of data":
            try:
                return data[: exc.start].decode("utf-8")
            except UnicodeDecodeError:
                return None
        return None


# --------------------------------------------------------------------------- file specs


@dataclass(frozen=True, slots=True)
class _FileSpec:
    path: Path
    fmt: str
    compression: str | None
    url_column: str | None  # None for txt
    id_column: str | None
    extra_sources: tuple[str, ...]
    extras_schema: pa.Schema | None  # output names and types; None when there are no extras
    known: bool  # False for an empty csv/jsonl file, whose columns cannot be known


def _missing(path: Path, column: str, role: str, present: Sequence[str]) -> InputError:
    shown = ", ".join(present) if present else "(none)"
    return InputError(
        f"input {path}: column {column!r} ({role}) not found; columns present: {shown}"
    )


def _select(path: Path, present: Sequence[str], config: InputConfig) -> tuple[str, ...]:
    """Check the url/id/extra columns exist in ``present``; return the extra source columns."""
    if config.url_column not in present:
        raise _missing(path, config.url_column, "input.url_column", present)
    if config.id_column is not None and config.id_column not in present:
        raise _missing(path, config.id_column, "input.id_column", present)
    own = {config.url_column, config.id_column}
    if config.extra_columns is None:
        return tuple(name for name in present if name not in own)
    for name in config.extra_columns:
        if name not in present:
            raise _missing(path, name, "input.extra_columns", present)
    return tuple(dict.fromkeys(name for name in config.extra_columns if name not in own))


def _schema(
    sources: Sequence[str], types: Sequence[pa.DataType], reserved: frozenset[str]
) -> pa.Schema | None:
    if not sources:
        return None
    names = _output_names(sources, reserved)
    return pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])


def _csv_parse_options(fmt: str) -> Any:
    return pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")


def _csv_header(path: Path, fmt: str, compression: str | None) -> list[str] | None:
    """The header of a CSV/TSV file; None for an empty file."""
    with _open_stream(path, compression) as stream:
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
                parse_options=_csv_parse_options(fmt),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return None
            raise
        names: list[str] = list(reader.schema.names)
        return names


def _parse_json_line(line: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        try:
            obj = json.loads(line)
        except UnicodeDecodeError:
            obj = json.loads(line.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise InputError(f"input {path} line {lineno}: invalid JSON: {_one_line(exc)}") from exc
    if not isinstance(obj, dict):
        raise InputError(f"input {path} line {lineno}: expected a JSON object")
    return obj


def _iter_json_rows(
    path: Path, compression: str | None
) -> Generator[tuple[dict[str, Any], int], None, None]:
    """Every JSON object of a jsonl file with its line's size in bytes (blank lines skipped)."""
    with _open_stream(path, compression) as stream:
        for lineno, (line, truncated) in enumerate(_iter_lines(stream, _MAX_JSON_LINE), 1):
            if truncated:
                raise InputError(f"input {path} line {lineno}: longer than {_MAX_JSON_LINE} bytes")
            if line.strip():
                yield _parse_json_line(line, path, lineno), len(line)


def _jsonl_sample(path: Path, compression: str | None) -> list[dict[str, Any]]:
    """The first rows of a jsonl file (at most JSONL_SAMPLE_ROWS rows / _JSONL_SAMPLE_BYTES)."""
    sample: list[dict[str, Any]] = []
    size = 0
    rows = _iter_json_rows(path, compression)
    try:
        for row, nbytes in rows:
            sample.append(row)
            size += nbytes
            if len(sample) >= JSONL_SAMPLE_ROWS or size >= _JSONL_SAMPLE_BYTES:
                break
    finally:
        rows.close()
    return sample


def _infer_json_type(values: list[Any]) -> pa.DataType:
    try:
        tp = pa.array(values).type
    except _CONVERT_ERRORS:
        try:
            tp = pa.array([_sanitize(v) for v in values]).type
        except _CONVERT_ERRORS:
            return pa.string()  # mixed types: kept as JSON text
    return _denull(tp)


def _inspect(path: Path, config: InputConfig, reserved: frozenset[str]) -> _FileSpec:
    """Read only what tells a file's columns (header, footer, jsonl sample); check them."""
    fmt = detect_format(path, config.format)
    _, compression = _split_compression(path)
    try:
        return _inspect_format(path, fmt, compression, config, reserved)
    except _READ_ERRORS as exc:
        raise InputError(f"cannot read input {path}: {_one_line(exc)}") from exc


def _inspect_format(
    path: Path, fmt: str, compression: str | None, config: InputConfig, reserved: frozenset[str]
) -> _FileSpec:
    if fmt == "txt":
        if config.id_column is not None:
            raise InputError(
                f"input {path}: a txt file has no columns, so input.id_column "
                f"{config.id_column!r} cannot be used"
            )
        if config.extra_columns:
            raise InputError(
                f"input {path}: a txt file has no columns, so input.extra_columns "
                f"{', '.join(config.extra_columns)} cannot be used"
            )
        return _FileSpec(path, fmt, compression, None, None, (), None, True)

    if fmt in ("csv", "tsv"):
        names = _csv_header(path, fmt, compression)
        if names is None:
            return _FileSpec(
                path, fmt, compression, config.url_column, config.id_column, (), None, False
            )
        sources = _select(path, names, config)
        schema = _schema(sources, [pa.string()] * len(sources), reserved)
        return _FileSpec(
            path, fmt, compression, config.url_column, config.id_column, sources, schema, True
        )

    if fmt == "jsonl":
        sample = _jsonl_sample(path, compression)
        if not sample:
            return _FileSpec(
                path, fmt, compression, config.url_column, config.id_column, (), None, False
            )
        keys: dict[str, None] = {}
        for row in sample:
            keys.update(dict.fromkeys(row))
        sources = _select(path, list(keys), config)
        types = [_infer_json_type([row.get(name) for row in sample]) for name in sources]
        return _FileSpec(
            path,
            fmt,
            compression,
            config.url_column,
            config.id_column,
            sources,
            _schema(sources, types, reserved),
            True,
        )

    # parquet
    if compression is not None:
        raise InputError(
            f"input {path}: a compressed Parquet file cannot be read in a stream; "
            "decompress it (Parquet compresses its own data)"
        )
    with pq.ParquetFile(str(path)) as pf:
        arrow_schema = pf.schema_arrow
    names = list(arrow_schema.names)
    sources = _select(path, names, config)
    url_type = arrow_schema.field(config.url_column).type
    if not (_is_string_type(url_type) or _is_binary_type(url_type)):
        raise InputError(
            f"input {path}: column {config.url_column!r} (input.url_column) has type "
            f"{url_type}, expected string or binary"
        )
    types = [_output_type(arrow_schema.field(name).type) for name in sources]
    return _FileSpec(
        path,
        fmt,
        compression,
        config.url_column,
        config.id_column,
        sources,
        _schema(sources, types, reserved),
        True,
    )


def _same_extras(a: pa.Schema | None, b: pa.Schema | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return [(f.name, f.type) for f in a] == [(f.name, f.type) for f in b]


def _describe(schema: pa.Schema | None) -> str:
    if schema is None:
        return "no extra columns"
    return "extra columns " + ", ".join(f"{f.name}: {f.type}" for f in schema)


def _check_compatible(first: _FileSpec | None, spec: _FileSpec) -> _FileSpec | None:
    """The reference spec after ``spec``; raise when ``spec``'s extras differ from it."""
    if not spec.known:
        return first
    if first is None:
        return spec
    if not _same_extras(first.extras_schema, spec.extras_schema):
        raise InputError(
            f"input {spec.path} has {_describe(spec.extras_schema)} but {first.path} has "
            f"{_describe(first.extras_schema)}; all inputs of a run need the same extra "
            "columns (set input.extra_columns to choose common ones)"
        )
    return first


@dataclass(frozen=True)
class InputSet:
    """A run's inputs, resolved and inspected once: the files it fingerprints are the files
    it reads, with the columns it checked."""

    config: InputConfig
    specs: tuple[_FileSpec, ...]

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


def open_inputs(config: InputConfig, *, reserved: frozenset[str] = RESERVED_COLUMNS) -> InputSet:
    """Resolve the inputs and check every file's columns, cheaply, before any work starts.

    ``reserved``: the output's column names, which extra input columns must not take.
    """
    specs: list[_FileSpec] = []
    first: _FileSpec | None = None
    for path in resolve_inputs(config.paths):
        spec = _inspect(path, config, reserved)
        first = _check_compatible(first, spec)
        specs.append(spec)
    return InputSet(config, tuple(specs))


def validate_inputs(config: InputConfig) -> list[Path]:
    """The resolved input files, every file's columns checked (:func:`open_inputs`)."""
    return open_inputs(config).files


# --------------------------------------------------------------------------- readers


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


def _read_txt(spec: _FileSpec, config: InputConfig) -> Iterator[_Chunk]:
    max_length = config.max_url_length
    cap = 4 * (max_length + 1)  # enough bytes for max_length + 1 characters of any width
    urls: list[str | None] = []
    with _open_stream(spec.path, spec.compression) as stream:
        for line, truncated in _iter_lines(stream, cap):
            url: str | None
            if truncated:
                text = _decode_prefix(line)
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
                    url = _clean_url(text, max_length)
            urls.append(url)
            if len(urls) >= config.batch_rows:
                yield _url_array(urls), None, None
                urls = []
    if urls:
        yield _url_array(urls), None, None


def _table_chunk(
    spec: _FileSpec, table: pa.Table, config: InputConfig, extras: list[pa.ChunkedArray]
) -> _Chunk:
    assert spec.url_column is not None
    urls = _urls_from_column(table.column(spec.url_column), config.max_url_length)
    ids = _ids_from_column(table.column(spec.id_column)) if spec.id_column is not None else None
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
        return pa.chunked_array([pa.array(_text_values(column, "replace"), type=pa.string())])


def _read_csv(spec: _FileSpec, config: InputConfig) -> Iterator[_Chunk]:
    if not spec.known:
        return
    assert spec.url_column is not None
    needed = list(dict.fromkeys([spec.url_column, spec.id_column, *spec.extra_sources]))
    columns = [name for name in needed if name is not None]
    convert = pacsv.ConvertOptions(
        column_types={name: pa.binary() for name in columns},
        include_columns=columns,
        strings_can_be_null=False,
    )
    with _open_stream(spec.path, spec.compression) as stream:
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK),
            parse_options=_csv_parse_options(spec.fmt),
            convert_options=convert,
        )
        for table in _rechunk(reader, config.batch_rows):
            extras = [_csv_extra(table.column(name)) for name in spec.extra_sources]
            yield _table_chunk(spec, table, config, extras)


def _read_parquet(spec: _FileSpec, config: InputConfig) -> Iterator[_Chunk]:
    assert spec.url_column is not None
    needed = list(dict.fromkeys([spec.url_column, spec.id_column, *spec.extra_sources]))
    columns = [name for name in needed if name is not None]
    schema = spec.extras_schema
    # pre_buffer (pyarrow's default) caches every row group it reads until the file is
    # closed: the whole compressed file ends up in memory (381 MB for a 30 M-row input)
    with pq.ParquetFile(str(spec.path), buffer_size=_PARQUET_BUFFER, pre_buffer=False) as pf:
        batches = pf.iter_batches(batch_size=config.batch_rows, columns=columns)
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
            values = [_sanitize(v) for v in values]
        try:
            inferred = pa.array(values)
            return inferred if inferred.type == tp else inferred.cast(tp)
        except _CONVERT_ERRORS as exc:
            error = exc
        if not pa.types.is_integer(tp):
            try:
                return pa.array(values, type=tp)
            except _CONVERT_ERRORS as exc:
                error = exc
    if tp == pa.string():
        return pa.array(
            [v if v is None or isinstance(v, str) else _json_text(v) for v in values],
            type=pa.string(),
        )
    raise InputError(
        f"{where}: values of column {name!r} do not fit its type {tp} (inferred from the "
        f"first {JSONL_SAMPLE_ROWS} rows): {_one_line(error or ValueError())}"
    ) from error


def _read_jsonl(spec: _FileSpec, config: InputConfig) -> Iterator[_Chunk]:
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
            urls.append(
                _clean_url(value, config.max_url_length) if isinstance(value, str) else None
            )
        ids = (
            [_id_text(row.get(spec.id_column)) for row in rows]
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
        return _url_array(urls), ids, extras

    rows: list[dict[str, Any]] = []
    for row, _ in _iter_json_rows(spec.path, spec.compression):
        rows.append(row)
        row_no += 1
        if len(rows) >= config.batch_rows:
            yield chunk(rows)
            rows = []
    if rows:
        yield chunk(rows)


_READERS = {
    "txt": _read_txt,
    "csv": _read_csv,
    "tsv": _read_csv,
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def _read_file(spec: _FileSpec, config: InputConfig) -> Iterator[_Chunk]:
    try:
        yield from _READERS[spec.fmt](spec, config)
    except _READ_ERRORS as exc:
        raise InputError(f"cannot read input {spec.path}: {_one_line(exc)}") from exc


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
