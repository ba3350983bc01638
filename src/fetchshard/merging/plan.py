"""Which rows go into which output file: the same answer in every merge process.

A survey reads the small columns of every committed part (item id, status, error kind,
size, content type) and its Parquet footer, and estimates what each current row will weigh
in the output: its share of its row group's compressed bytes, the body's in proportion to
its size. Cutting the rows, in (rank, part, row) order, wherever a file reaches its target
then gives the file count before any file is written, and every merge process that surveys
the same committed parts derives the same files without talking to the others.

With ``dedup``, a success whose body (by sha256) an earlier success already has is dropped
here, in that same order, so the plan also names which item each duplicate gave way to.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fetchshard.merging.sources import SourcePart, Sources
from fetchshard.output.columns import STATUS_OK

DATA = "data"
ERRORS = "errors"
BODY_IMAGE = "image"
BODY_BINARY = "binary"
# Content types Pillow decodes (what `datasets`' Image feature needs): not SVG.
_IMAGE_PREFIX = "image/"
_NOT_DECODABLE = ("image/svg",)
_SURVEYED = ["item_id", "status", "error_kind", "size", "content_type"]
PARQUET = "parquet"
WEBDATASET = "webdataset"
FORMATS = (PARQUET, WEBDATASET)
# A webdataset sample's tar headers and its json member, beyond the body (padded to blocks).
_TAR_SAMPLE_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Piece:
    """Rows ``start .. stop-1`` of one part's selected rows of a kind (current, ok or not)."""

    source: int  # index into Sources.parts
    start: int
    stop: int


@dataclass(frozen=True)
class OutputFile:
    kind: str  # DATA or ERRORS
    index: int
    count: int  # files of this kind
    pieces: tuple[Piece, ...]
    rows: int
    estimated_bytes: int

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.index:05d}"


@dataclass(frozen=True)
class MergePlan:
    files: list[OutputFile]  # data files, then errors files
    body_as: str  # BODY_IMAGE or BODY_BINARY
    ok: int
    failed: int
    errors: dict[str, int]  # failed rows by error kind
    digest: str = field(default="")  # names this plan: records of another plan are not reused
    # --dedup content: the ids of the successes dropped, by source, and who they gave way to
    dropped: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    duplicates: pa.Table | None = field(default=None, repr=False)

    def of_kind(self, kind: str) -> list[OutputFile]:
        return [f for f in self.files if f.kind == kind]


@dataclass(frozen=True)
class Targets:
    """Where to cut: a file is closed once it holds ``file_bytes`` (estimated) or
    ``file_rows`` rows, whichever comes first."""

    file_bytes: int
    file_rows: int | None = None


DUPLICATES_SCHEMA = pa.schema(
    [
        ("item_id", pa.int64()),
        ("url", pa.string()),
        ("sha256", pa.string()),
        ("kept_item_id", pa.int64()),
        ("kept_url", pa.string()),
    ]
)


def selected(
    table: pa.Table, part: SourcePart, kind: str, dropped: np.ndarray | None = None
) -> np.ndarray:
    """Positions of a part's current rows of ``kind`` (from its item_id and status), less
    the ``dropped`` ids (duplicates)."""
    ok = pc.equal(table.column("status"), STATUS_OK).to_numpy(zero_copy_only=False)
    ok = np.asarray(ok, dtype=bool)
    mask = ok if kind == DATA else ~ok
    drop = [a for a in (part.superseded, dropped if kind == DATA else None) if a is not None]
    drop = [a for a in drop if len(a)]
    if drop:
        ids = table.column("item_id").to_numpy()
        for ids_out in drop:
            mask &= ~np.isin(ids, ids_out)
    return np.flatnonzero(mask)


def make_plan(
    sources: Sources,
    targets: Targets,
    body_as: str = "auto",
    *,
    file_format: str = PARQUET,
    dedup: bool = False,
) -> MergePlan:
    """Survey every part and cut the rows into files (see the module docstring)."""
    cutters = {DATA: _Cutter(DATA, targets), ERRORS: _Cutter(ERRORS, targets)}
    errors: Counter[str] = Counter()
    images = others = 0
    seen = _Bodies() if dedup else None
    dropped: dict[int, np.ndarray] = {}
    for index, part in enumerate(sources.parts):
        table, weights = _survey(part, dedup)
        for kind, cutter in cutters.items():
            rows = selected(table, part, kind)
            if kind == DATA and seen is not None and len(rows):
                rows, ids = seen.first(table, rows)
                if len(ids):
                    dropped[index] = np.sort(ids)
            if kind == DATA and file_format == WEBDATASET:
                sizes = table.column("size").take(pa.array(rows)).fill_null(0).to_numpy()
                cutter.feed(index, (-(-sizes // 512) * 512 + _TAR_SAMPLE_BYTES).astype(float))
            else:
                cutter.feed(index, weights[rows])
            if kind == ERRORS and len(rows):
                errors.update(table.column("error_kind").take(pa.array(rows)).to_pylist())
            if kind == DATA and len(rows):
                sizes = table.column("size").take(pa.array(rows)).fill_null(0).to_numpy()
                types = table.column("content_type").take(pa.array(rows)).to_pylist()
                for size, ctype in zip(sizes.tolist(), types, strict=True):
                    if size:
                        if _decodable_image(ctype):
                            images += 1
                        else:
                            others += 1
    if body_as == "auto":
        body_as = BODY_IMAGE if images and not others else BODY_BINARY
    data = list(cutters[DATA].files()) or [OutputFile(DATA, 0, 1, (), 0, 0)]  # loads empty
    files = [*data, *cutters[ERRORS].files()]
    ok = sum(f.rows for f in files if f.kind == DATA)
    failed = sum(f.rows for f in files if f.kind == ERRORS)
    plan = MergePlan(
        files,
        body_as,
        ok,
        failed,
        dict(sorted(errors.items(), key=str)),
        dropped=dropped,
        duplicates=seen.table() if seen is not None else None,
    )
    digest = _digest(sources, targets, plan, file_format)
    return MergePlan(**{**plan.__dict__, "digest": digest})


class _Bodies:
    """The bodies seen so far (by sha256): which rows repeat one, and whose."""

    def __init__(self) -> None:
        self._first: dict[str, tuple[int, str]] = {}
        self._dups: dict[str, list[object]] = {name: [] for name in DUPLICATES_SCHEMA.names}

    def first(self, table: pa.Table, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``rows`` without the repeats (a body seen before), and the repeats' item ids."""
        picked = pa.array(rows)
        shas = table.column("sha256").take(picked).to_pylist()
        ids = table.column("item_id").take(picked).to_pylist()
        urls = table.column("url").take(picked).to_pylist()
        keep = np.ones(len(rows), dtype=bool)
        for i, (sha, item, url) in enumerate(zip(shas, ids, urls, strict=True)):
            if sha is None:  # no body: nothing to compare
                continue
            kept = self._first.setdefault(sha, (item, url))
            if kept[0] != item:
                keep[i] = False
                for name, value in zip(
                    DUPLICATES_SCHEMA.names, (item, url, sha, *kept), strict=True
                ):
                    self._dups[name].append(value)
        return rows[keep], np.asarray([ids[i] for i in np.flatnonzero(~keep)], dtype=np.int64)

    def table(self) -> pa.Table:
        return pa.table(self._dups, schema=DUPLICATES_SCHEMA)


def _decodable_image(content_type: str | None) -> bool:
    if not content_type:
        return False
    ct = content_type.lower()
    return ct.startswith(_IMAGE_PREFIX) and not ct.startswith(_NOT_DECODABLE)


def _survey(part: SourcePart, dedup: bool = False) -> tuple[pa.Table, np.ndarray]:
    """A part's small columns, and each row's estimated weight in a Parquet file (bytes)."""
    file = part.parquet()
    table = file.read(columns=[*_SURVEYED, "sha256", "url"] if dedup else _SURVEYED)
    sizes = table.column("size").fill_null(0).to_numpy().astype(np.float64)
    weights = np.zeros(table.num_rows, dtype=np.float64)
    meta = file.metadata
    start = 0
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        n = group.num_rows
        body = other = 0
        for c in range(group.num_columns):
            column = group.column(c)
            if column.path_in_schema == "body":
                body += column.total_compressed_size
            else:
                other += column.total_compressed_size
        stop = start + n
        span = sizes[start:stop]
        total = span.sum()
        weights[start:stop] = other / max(n, 1) + (
            body * span / total if total > 0 else body / max(n, 1)
        )
        start = stop
    return table, weights


class _Cutter:
    """Cuts one kind's rows, fed a part at a time, into files at the targets."""

    def __init__(self, kind: str, targets: Targets) -> None:
        self._kind = kind
        self._targets = targets
        self._done: list[tuple[tuple[Piece, ...], int, float]] = []
        self._pieces: list[Piece] = []
        self._rows = 0
        self._bytes = 0.0

    def feed(self, source: int, weights: np.ndarray) -> None:
        start, n = 0, len(weights)
        cumulative = np.cumsum(weights)
        while start < n:
            base = cumulative[start - 1] if start else 0.0
            room_bytes = self._targets.file_bytes - self._bytes
            # The first row at which this file reaches its byte target (it is included).
            stop = int(np.searchsorted(cumulative, base + room_bytes, side="left")) + 1
            if self._targets.file_rows is not None:
                stop = min(stop, start + self._targets.file_rows - self._rows)
            stop = min(max(stop, start + 1), n)
            self._pieces.append(Piece(source, start, stop))
            self._rows += stop - start
            self._bytes += float(cumulative[stop - 1] - base)
            full = self._bytes >= self._targets.file_bytes or (
                self._targets.file_rows is not None and self._rows >= self._targets.file_rows
            )
            if full:
                self._close()
            start = stop

    def _close(self) -> None:
        if self._pieces:
            self._done.append((tuple(self._pieces), self._rows, self._bytes))
        self._pieces, self._rows, self._bytes = [], 0, 0.0

    def files(self) -> Iterator[OutputFile]:
        self._close()
        count = len(self._done)
        for index, (pieces, rows, weight) in enumerate(self._done):
            yield OutputFile(self._kind, index, count, pieces, rows, round(weight))


def _digest(sources: Sources, targets: Targets, plan: MergePlan, file_format: str) -> str:
    """A name for the plan: the committed parts it reads and the files it cuts."""
    shape = {
        "format": file_format,
        "dropped": [
            [k, hashlib.sha256(v.astype("<i8").tobytes()).hexdigest()]
            for k, v in sorted(plan.dropped.items())
        ],
        "parts": [
            [p.rank, p.part, p.rows, len(p.superseded)]
            if not p.generation  # a run of one generation keeps its digest
            else [p.generation, p.rank, p.part, p.rows, len(p.superseded)]
            for p in sources.parts
        ],
        "targets": [targets.file_bytes, targets.file_rows],
        "body_as": plan.body_as,
        "files": [
            [f.kind, f.rows, [[x.source, x.start, x.stop] for x in f.pieces]] for f in plan.files
        ],
    }
    data = json.dumps(shape, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(data).hexdigest()[:16]
