"""What a file holds, read cheaply before any work (header, footer, jsonl sample), and checked."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fetchshard.config import InputConfig
from fetchshard.errors import InputError
from fetchshard.inputs.files import detect_format, one_line, split_compression
from fetchshard.inputs.lines import iter_json_rows, open_stream
from fetchshard.inputs.values import (
    denull,
    is_binary_type,
    is_string_type,
    output_names,
    output_type,
    sanitize,
)
from fetchshard.output.columns import BASE_COLUMNS, PATH_COLUMN

# The names fetchshard writes (output/columns.py); a run with stages reserves theirs too.
RESERVED_COLUMNS: frozenset[str] = BASE_COLUMNS.names | {PATH_COLUMN}


# The jsonl extras schema is inferred from this many rows (or _JSONL_SAMPLE_BYTES of lines).
JSONL_SAMPLE_ROWS = 10_000


_JSONL_SAMPLE_BYTES = 16 * 1024 * 1024


CSV_BLOCK = 4 * 1024 * 1024  # pyarrow CSV block; one CSV row must fit in it


CONVERT_ERRORS = (pa.ArrowException, TypeError, ValueError, OverflowError)


READ_ERRORS = (pa.ArrowException, OSError, EOFError)


@dataclass(frozen=True, slots=True)
class FileSpec:
    path: Path
    fmt: str
    compression: str | None
    url_column: str | None  # None for txt
    id_column: str | None
    extra_sources: tuple[str, ...]
    extras_schema: pa.Schema | None  # output names and types; None when there are no extras
    known: bool  # False for an empty csv/jsonl file, whose columns cannot be known


def parquet_footer(path: Path) -> pq.FileMetaData:
    """A Parquet file's footer, read once per process (per size and modification time): with
    many row groups it is large, and inspecting, slicing and reading would each read it."""
    stat = path.stat()
    return _footer(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _footer(path: str, size: int, mtime_ns: int) -> pq.FileMetaData:
    return pq.read_metadata(path)


def _missing(path: Path, column: str, role: str, present: Sequence[str]) -> InputError:
    shown = ", ".join(present) if present else "(none)"
    return InputError(
        f"input {path}: column {column!r} ({role}) not found; columns present: {shown}"
    )


def _checked(config: InputConfig) -> list[tuple[str, str]]:
    """The columns the content checks read (they travel as extra columns): (key, column)."""
    keys = ("hash_column", "size_column", "checksum_column")
    return [(key, getattr(config, key)) for key in keys if getattr(config, key) is not None]


def _select(path: Path, present: Sequence[str], config: InputConfig) -> tuple[str, ...]:
    """Check the url/id/extra columns exist in ``present``; return the extra source columns."""
    if config.url_column not in present:
        raise _missing(path, config.url_column, "input.url_column", present)
    if config.id_column is not None and config.id_column not in present:
        raise _missing(path, config.id_column, "input.id_column", present)
    for role, column in _checked(config):
        if column not in present:
            raise _missing(path, column, f"input.{role}", present)
    own = {config.url_column, config.id_column}
    if config.extra_columns is None:
        return tuple(name for name in present if name not in own)
    for name in config.extra_columns:
        if name not in present:
            raise _missing(path, name, "input.extra_columns", present)
    wanted = [*config.extra_columns, *(column for _, column in _checked(config))]
    return tuple(dict.fromkeys(name for name in wanted if name not in own))


def _schema(
    sources: Sequence[str], types: Sequence[pa.DataType], reserved: frozenset[str]
) -> pa.Schema | None:
    if not sources:
        return None
    names = output_names(sources, reserved)
    return pa.schema([pa.field(n, t) for n, t in zip(names, types, strict=True)])


def csv_parse_options(fmt: str) -> Any:
    return pacsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")


def _csv_header(path: Path, fmt: str, compression: str | None) -> list[str] | None:
    """The header of a CSV/TSV file; None for an empty file."""
    with open_stream(path, compression) as stream:
        try:
            reader = pacsv.open_csv(
                stream,
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK),
                parse_options=csv_parse_options(fmt),
            )
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return None
            raise
        names: list[str] = list(reader.schema.names)
        return names


def _jsonl_sample(path: Path, compression: str | None) -> list[dict[str, Any]]:
    """The first rows of a jsonl file (at most JSONL_SAMPLE_ROWS rows / _JSONL_SAMPLE_BYTES)."""
    sample: list[dict[str, Any]] = []
    size = 0
    rows = iter_json_rows(path, compression)
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
    except CONVERT_ERRORS:
        try:
            tp = pa.array([sanitize(v) for v in values]).type
        except CONVERT_ERRORS:
            return pa.string()  # mixed types: kept as JSON text
    return denull(tp)


def inspect_file(path: Path, config: InputConfig, reserved: frozenset[str]) -> FileSpec:
    """Read only what tells a file's columns (header, footer, jsonl sample); check them."""
    fmt = detect_format(path, config.format)
    _, compression = split_compression(path)
    try:
        return _inspect_format(path, fmt, compression, config, reserved)
    except READ_ERRORS as exc:
        raise InputError(f"cannot read input {path}: {one_line(exc)}") from exc


def _inspect_format(
    path: Path, fmt: str, compression: str | None, config: InputConfig, reserved: frozenset[str]
) -> FileSpec:
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
        for role, column in _checked(config):
            raise InputError(
                f"input {path}: a txt file has no columns, so input.{role} "
                f"{column!r} cannot be used"
            )
        return FileSpec(path, fmt, compression, None, None, (), None, True)

    if fmt in ("csv", "tsv"):
        names = _csv_header(path, fmt, compression)
        if names is None:
            return FileSpec(
                path, fmt, compression, config.url_column, config.id_column, (), None, False
            )
        sources = _select(path, names, config)
        schema = _schema(sources, [pa.string()] * len(sources), reserved)
        return FileSpec(
            path, fmt, compression, config.url_column, config.id_column, sources, schema, True
        )

    if fmt == "jsonl":
        sample = _jsonl_sample(path, compression)
        if not sample:
            return FileSpec(
                path, fmt, compression, config.url_column, config.id_column, (), None, False
            )
        keys: dict[str, None] = {}
        for row in sample:
            keys.update(dict.fromkeys(row))
        sources = _select(path, list(keys), config)
        types = [_infer_json_type([row.get(name) for row in sample]) for name in sources]
        return FileSpec(
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
    with pq.ParquetFile(str(path), metadata=parquet_footer(path)) as pf:
        arrow_schema = pf.schema_arrow
    names = list(arrow_schema.names)
    sources = _select(path, names, config)
    url_type = arrow_schema.field(config.url_column).type
    if not (is_string_type(url_type) or is_binary_type(url_type)):
        raise InputError(
            f"input {path}: column {config.url_column!r} (input.url_column) has type "
            f"{url_type}, expected string or binary"
        )
    types = [output_type(arrow_schema.field(name).type) for name in sources]
    return FileSpec(
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


def check_compatible(first: FileSpec | None, spec: FileSpec) -> FileSpec | None:
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
