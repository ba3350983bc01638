"""Writing one output file of the plan: durable, verifiable, the same bytes every time.

Rows stream from the parts a source row group at a time and leave in row groups of about
``row_group_bytes`` (cut by the rows' content, never by timing), so memory holds a row group
or two and any process writing the file writes the same bytes. The file is written as
``.tmp``, then sealed (``seal``: fsynced, hashed, its record written durably, and only then
renamed) in a thread while the next file is encoded: a file in place always has its record,
and a rerun redoes only what has none.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fetchshard.faults import crash_point
from fetchshard.merging.documents import FileRecord
from fetchshard.merging.plan import DATA, OutputFile, selected
from fetchshard.merging.schema import BODY, IMAGE, to_data, to_errors
from fetchshard.merging.sources import SourcePart
from fetchshard.output.codecs import already_compressed
from fetchshard.output.columns import BASE_COLUMNS
from fetchshard.runfolder.layout import tmp_of
from fetchshard.runfolder.storage import LOCAL, fsync_path

_HASH_CHUNK = 1 << 20
_DICTIONARY = {c.name for c in BASE_COLUMNS.columns if c.dictionary} | {"host"}
_NO_STATISTICS = {c.name for c in BASE_COLUMNS.columns if not c.statistics} | {IMAGE}


@dataclass(frozen=True, kw_only=True)
class WriteSettings:
    row_group_bytes: int
    compression: str  # for every column but a body that would not shrink


def write_file(
    out: OutputFile,
    parts: list[SourcePart],
    schema: pa.Schema,
    target: Path,
    record: Path,
    settings: WriteSettings,
    *,
    name: str,
    dropped: dict[int, np.ndarray] | None = None,
    advanced: Callable[[int], None] | None = None,
) -> list[Written]:
    """Encode ``out`` into ``target``'s tmp file (see the module docstring); return it, to be
    sealed (``name``: its path in the merged folder, ``record``: where its record goes)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_of(target)
    convert = to_data if out.kind == DATA else to_errors
    writer: pq.ParquetWriter | None = None
    buffered: list[pa.Table] = []
    weight = 0
    rows = 0
    try:
        for table in piece_rows(out, parts, set(schema.names), dropped or {}):
            converted = convert(table, schema)
            buffered.append(converted)
            weight += _weights(converted).sum()
            while weight >= settings.row_group_bytes:
                group, rest = _cut(pa.concat_tables(buffered), settings.row_group_bytes)
                writer = writer or _open(tmp, schema, group, settings)
                writer.write_table(group, row_group_size=max(group.num_rows, 1))
                rows += group.num_rows
                if advanced:
                    advanced(group.num_rows)
                buffered = [rest] if rest.num_rows else []
                weight = int(_weights(rest).sum()) if rest.num_rows else 0
        if buffered or writer is None:
            last = pa.concat_tables(buffered) if buffered else schema.empty_table()
            writer = writer or _open(tmp, schema, last, settings)
            writer.write_table(last, row_group_size=max(last.num_rows, 1))
            rows += last.num_rows
            if advanced:
                advanced(last.num_rows)
        writer.close()
        writer = None
    except BaseException:
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
        raise
    if rows != out.rows:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{target.name}: wrote {rows} rows, the plan has {out.rows}")
    return [Written(tmp=tmp, target=target, record=record, name=name, kind=out.kind, rows=rows)]


@dataclass(frozen=True, kw_only=True)
class Written:
    """A finished ``.tmp`` file, to be sealed: its record, then its rename."""

    tmp: Path
    target: Path
    record: Path
    name: str  # its path in the merged folder
    kind: str  # FileRecord.kind
    rows: int


def seal(files: Sequence[Written], crash: tuple[str, int]) -> list[FileRecord]:
    """fsync and hash each file, write its record durably, then rename them all into place:
    a file in place always has its record (``crash``: the test hook between the two)."""
    done = []
    for f in files:
        fsync_path(f.tmp)
        size, digest = f.tmp.stat().st_size, sha256_of(f.tmp)
        found = FileRecord(path=f.name, kind=f.kind, rows=f.rows, bytes=size, sha256=digest)
        f.record.parent.mkdir(parents=True, exist_ok=True)
        found.write(f.record, durable=True)
        done.append(found)
    crash_point(*crash)
    for f in files:
        LOCAL.publish(f.tmp, f.target)
    return done


class Sealer:
    """Seals files in a thread while the next is being encoded: one at a time, so at most one
    finished file waits, and an error surfaces at the next file or at the end."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fetchshard-seal")
        self._pending: Future[list[FileRecord]] | None = None

    def submit(
        self,
        files: Sequence[Written],
        crash: tuple[str, int],
        then: Callable[[], None] | None = None,
    ) -> None:
        self.wait()

        def job() -> list[FileRecord]:
            records = seal(files, crash)
            if then:
                then()
            return records

        self._pending = self._pool.submit(job)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> Sealer:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def piece_rows(
    out: OutputFile, parts: list[SourcePart], wanted: set[str], dropped: dict[int, np.ndarray]
) -> Iterator[pa.Table]:
    """The file's rows in plan order, a source row group (or less) at a time: the parts'
    columns among ``wanted`` (and the body, url, item id)."""
    wanted = wanted | {BODY, "url", "item_id"}
    for piece in out.pieces:
        part = parts[piece.source]
        file = part.parquet()
        small = file.read(columns=["item_id", "status"])
        positions = selected(small, part, out.kind, dropped.get(piece.source))
        positions = positions[piece.start : piece.stop]
        columns = [n for n in file.schema_arrow.names if n in wanted]
        offsets = np.cumsum(
            [0] + [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        )
        groups = np.searchsorted(offsets, positions, side="right") - 1
        for g in np.unique(groups).tolist():
            local = positions[groups == g] - offsets[g]
            table = file.read_row_group(g, columns=columns)
            whole = len(local) == table.num_rows  # positions are sorted and unique
            yield table if whole else table.take(pa.array(local))


def _weights(table: pa.Table) -> np.ndarray:
    """Each row's share of a row group: its body's bytes plus the rest on average."""
    n = table.num_rows
    if not n:
        return np.zeros(0, dtype=np.int64)
    body_name = (
        IMAGE
        if IMAGE in table.column_names and pa.types.is_struct(table.schema.field(IMAGE).type)
        else BODY
    )
    if body_name in table.column_names:
        column = table.column(body_name)
        if pa.types.is_struct(column.type):
            column = pc.struct_field(column, "bytes")
        lengths = pc.binary_length(column).fill_null(0).to_numpy().astype(np.int64)
        rest = table.drop_columns([body_name]).nbytes
    else:
        lengths = np.zeros(n, dtype=np.int64)
        rest = table.nbytes
    weights: np.ndarray = lengths + rest // n
    return weights


def _cut(table: pa.Table, limit: int) -> tuple[pa.Table, pa.Table]:
    """The first rows of ``table`` that reach ``limit`` bytes, and the rest."""
    cumulative = np.cumsum(_weights(table))
    stop = int(np.searchsorted(cumulative, limit, side="left")) + 1
    stop = min(max(stop, 1), table.num_rows)
    return table.slice(0, stop), table.slice(stop)


def _open(
    path: Path, schema: pa.Schema, first: pa.Table, settings: WriteSettings
) -> pq.ParquetWriter:
    names = schema.names
    codecs = {name: settings.compression for name in names}
    body = IMAGE if IMAGE in names else BODY if BODY in names else None
    if body is not None and _incompressible(first):
        codecs[body] = "none"
    if os.path.exists(path):
        os.unlink(path)
    return pq.ParquetWriter(
        path,
        schema,
        compression=codecs,
        use_dictionary=[n for n in names if n in _DICTIONARY],
        write_statistics=[n for n in names if n not in _NO_STATISTICS],
        write_page_index=True,
    )


def _incompressible(table: pa.Table) -> bool:
    """Whether most bodies (of the file's first row group) are compressed already."""
    if "content_type" not in table.column_names:
        return False
    types = [t for t in table.column("content_type").to_pylist() if t]
    return bool(types) and sum(map(already_compressed, types)) >= 0.9 * len(types)
