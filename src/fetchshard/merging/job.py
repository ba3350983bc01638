"""``fetchshard merge``: a run folder's current rows become one verified dataset.

Every merge process (one, ``--ranks K`` or ``srun -n K``) surveys the committed parts, derives
the same plan, writes the files whose index falls to its rank (skipping those a record shows
finished) and, if it then sees every file of the plan in place, writes the missing-items list,
the dataset card and ``manifest.json`` (the same bytes whoever writes them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from fetchshard import __version__
from fetchshard.errors import ConfigError, RunError
from fetchshard.ledger import read_without_row
from fetchshard.merging.card import dataset_card
from fetchshard.merging.documents import FileRecord, MergeManifest
from fetchshard.merging.plan import (
    BODY_BINARY,
    BODY_IMAGE,
    DATA,
    FORMATS,
    PARQUET,
    WEBDATASET,
    MergePlan,
    OutputFile,
    Targets,
    make_plan,
)
from fetchshard.merging.schema import BODY, IMAGE, data_schema, errors_schema, sidecar_schema
from fetchshard.merging.shards import KEY_WIDTH, write_shard
from fetchshard.merging.sources import Sources, collect
from fetchshard.merging.writer import Sealer, WriteSettings, write_file
from fetchshard.redact import redact_command, redact_settings
from fetchshard.runfolder.layout import TMP_SUFFIX, MergedPaths, tmp_of
from fetchshard.runfolder.storage import LOCAL
from fetchshard.runfolder.view import RunFolder

log = logging.getLogger("fetchshard")

MB = 1000 * 1000
MiB = 1024 * 1024
BODY_CHOICES = ("auto", "image", "binary")
COMPRESSION_CHOICES = ("zstd", "snappy", "gzip", "lz4", "none")
DEDUP_CHOICES = ("content",)


class MergeIncompleteError(RunError):
    """The run folder lacks rows a complete merge needs (and --allow-partial was not given)."""


@dataclass(frozen=True, kw_only=True)
class MergeOptions:
    """How to merge; checked on creation, so a bad value stops the command before any work."""

    output: Path | None = None  # default: RUN/merged
    file_bytes: int = 500 * MB  # a file is closed at about this many bytes...
    file_rows: int | None = None  # ...or this many rows
    # ~10 MiB, not the Hub's ~100 MB: `datasets` holds 5-7x a row group in RAM when it reads
    # one (../shared/notes/hf-webdataset.md, section 3).
    row_group_bytes: int = 10 * MiB
    compression: str = "zstd"
    body_as: str = "auto"  # image: the body is datasets' Image; binary: bytes
    allow_partial: bool = False
    file_format: str = PARQUET  # or webdataset: tar shards (the failures stay Parquet)
    caption: str | None = None  # webdataset: the column each sample's .txt holds
    dedup: str | None = None  # content: a body already kept (by sha256) is not kept again

    def __post_init__(self) -> None:
        if self.file_bytes <= 0:
            raise ConfigError(f"--file-bytes: must be greater than 0, got {self.file_bytes}")
        if self.file_rows is not None and self.file_rows <= 0:
            raise ConfigError(f"--file-rows: must be greater than 0, got {self.file_rows}")
        if self.row_group_bytes <= 0:
            raise ConfigError(
                f"--row-group-bytes: must be greater than 0, got {self.row_group_bytes}"
            )
        if self.compression not in COMPRESSION_CHOICES:
            raise ConfigError(
                f"--compression: must be one of {', '.join(COMPRESSION_CHOICES)}, "
                f"got {self.compression!r}"
            )
        if self.body_as not in BODY_CHOICES:
            raise ConfigError(
                f"--body-as: must be one of {', '.join(BODY_CHOICES)}, got {self.body_as!r}"
            )
        if self.file_format not in FORMATS:
            raise ConfigError(
                f"--format: must be one of {', '.join(FORMATS)}, got {self.file_format!r}"
            )
        if self.caption is not None and self.file_format != WEBDATASET:
            raise ConfigError("--caption: only with --format webdataset (a sample's .txt)")
        if self.dedup is not None and self.dedup not in DEDUP_CHOICES:
            raise ConfigError(
                f"--dedup: must be one of {', '.join(DEDUP_CHOICES)}, got {self.dedup!r}"
            )


class MergeWatch(Protocol):
    """What a merge tells whoever shows its progress (the CLI: a bar, or log lines)."""

    def planned(self, plan: MergePlan, files: int, rows: int) -> None:
        """This process will see to ``files`` files of ``plan``, holding ``rows`` rows."""

    def advanced(self, rows: int) -> None:
        """``rows`` more rows are written (or found written)."""

    def file_done(self, out: OutputFile, written: bool) -> None:
        """``out`` is in place: written now, or (``written`` false) found finished."""


@dataclass(frozen=True)
class MergeOutcome:
    root: Path
    plan: MergePlan
    written: int  # files this process wrote
    reused: int  # files of this process's share a record showed finished
    manifest: MergeManifest | None  # None: other processes' files are not all there yet


def merge(
    run_dir: Path,
    options: MergeOptions,
    *,
    rank: int = 0,
    world_size: int = 1,
    watch: MergeWatch | None = None,
    folder: RunFolder | None = None,
) -> MergeOutcome:
    """Merge ``run_dir`` as merge process ``rank`` of ``world_size`` (see the module doc);
    ``folder``: the run as read already (a bucket's copy in ``run_dir``)."""
    folder = folder or RunFolder(run_dir)
    sources = collect(folder)
    if sources.gaps and not options.allow_partial:
        shown = "; ".join(g.message for g in sources.gaps[:5])
        more = f"; and {len(sources.gaps) - 5} more" if len(sources.gaps) > 5 else ""
        raise MergeIncompleteError(
            f"{folder.location} is not complete: {shown}{more} "
            "(--allow-partial merges what is there)"
        )
    root = options.output or run_dir / "merged"
    paths = MergedPaths(root)
    parts_schema = _parts_schema(sources)
    _check_caption(options, parts_schema)
    plan = make_plan(
        sources,
        Targets(options.file_bytes, options.file_rows),
        _body_as(options, parts_schema),
        file_format=options.file_format,
        dedup=options.dedup == "content",
    )
    settings = WriteSettings(
        row_group_bytes=options.row_group_bytes, compression=options.compression
    )
    digest = _digest(plan, settings, options)
    shards = options.file_format == WEBDATASET
    schemas = {
        DATA: sidecar_schema(parts_schema) if shards else data_schema(parts_schema, plan.body_as),
        "errors": errors_schema(parts_schema),
    }
    firsts = _first_keys(plan)
    key_width = max(KEY_WIDTH, len(str(max(plan.ok - 1, 0))))
    mine = [out for index, out in enumerate(plan.files) if index % world_size == rank]
    if watch:
        watch.planned(plan, len(mine), sum(out.rows for out in mine))
    advanced = watch.advanced if watch else None
    written = reused = 0
    with Sealer() as sealer:
        for out in mine:
            targets = _targets(paths, out, options.file_format)
            records = [paths.record(digest, _record_name(out, t)) for t in targets]
            if all(_finished(t, r) for t, r in zip(targets, records, strict=True)):
                reused += 1
                if watch:
                    watch.advanced(out.rows)
                    watch.file_done(out, False)
                continue
            names = [str(t.relative_to(root)) for t in targets]
            if shards and out.kind == DATA:
                encoded = write_shard(
                    out,
                    sources.parts,
                    schemas[DATA],
                    (targets[0], targets[1]),
                    (records[0], records[1]),
                    (names[0], names[1]),
                    first_key=firsts[out.index],
                    key_width=key_width,
                    caption=options.caption,
                    compression=options.compression,
                    dropped=plan.dropped,
                    advanced=advanced,
                )
            else:
                encoded = write_file(
                    out,
                    sources.parts,
                    schemas[out.kind],
                    targets[0],
                    records[0],
                    settings,
                    name=names[0],
                    dropped=plan.dropped,
                    advanced=advanced,
                )
            then = functools.partial(watch.file_done, out, True) if watch else None
            # sealed (fsync, hash, record, rename) in a thread while the next file is encoded
            sealer.submit(encoded, (f"merge_{out.kind}", out.index + 1), then)
            written += 1
    manifest = None
    if _all_there(plan, paths, digest, options.file_format):
        manifest = _finish(folder, sources, plan, paths, digest, schemas, options.file_format)
    return MergeOutcome(root, plan, written, reused, manifest)


def _body_as(options: MergeOptions, parts: pa.Schema) -> str:
    """The body's form; never ``image`` where an input column already has that name."""
    if IMAGE not in parts.names:
        return options.body_as
    if options.body_as == BODY_IMAGE:
        raise ConfigError(
            "--body-as image: the input has a column named 'image'; the body stays 'body'"
        )
    return BODY_BINARY


def _check_caption(options: MergeOptions, parts: pa.Schema) -> None:
    if options.caption is None:
        return
    usable = [n for n in parts.names if n != BODY]
    if options.caption not in usable:
        raise ConfigError(
            f"--caption: no column {options.caption!r} in the run's parts "
            f"(columns: {', '.join(usable)})"
        )


def _first_keys(plan: MergePlan) -> list[int]:
    """The dataset-wide number of each data file's first row (webdataset keys)."""
    firsts, total = [], 0
    for out in plan.of_kind(DATA):
        firsts.append(total)
        total += out.rows
    return firsts


def _targets(paths: MergedPaths, out: OutputFile, file_format: str) -> list[Path]:
    """The files ``out`` becomes: a Parquet file, or a shard's tar and sidecar."""
    if out.kind != DATA:
        return [paths.errors_file(out.index, out.count)]
    if file_format == WEBDATASET:
        return [paths.shard_tar(out.index), paths.shard_sidecar(out.index)]
    return [paths.data_file(out.index, out.count)]


def _record_name(out: OutputFile, target: Path) -> str:
    """A file's record name: ``data-00000.parquet``, ``data-00000.tar``, ``errors-00000...``"""
    return f"{out.name}{target.suffix}"


def _finished(target: Path, record: Path) -> bool:
    found = FileRecord.read(record)
    return found is not None and target.exists() and target.stat().st_size == found.bytes


def _all_there(plan: MergePlan, paths: MergedPaths, digest: str, file_format: str) -> bool:
    return all(
        _finished(t, paths.record(digest, _record_name(out, t)))
        for out in plan.files
        for t in _targets(paths, out, file_format)
    )


def _parts_schema(sources: Sources) -> pa.Schema:
    """One schema for every part (a run's parts share theirs; older ones may lack columns)."""
    from fetchshard.output.columns import BASE_COLUMNS

    if not sources.parts:
        return BASE_COLUMNS.schema(None)
    schemas = {}
    for part in sources.parts:
        schema = part.parquet().schema_arrow.remove_metadata()
        schemas[schema.to_string()] = schema
    return pa.unify_schemas(list(schemas.values()), promote_options="permissive")


def _digest(plan: MergePlan, settings: WriteSettings, options: MergeOptions) -> str:
    shape = [
        plan.digest,
        settings.row_group_bytes,
        settings.compression,
        options.caption,
        __version__,
    ]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def _finish(
    folder: RunFolder,
    sources: Sources,
    plan: MergePlan,
    paths: MergedPaths,
    digest: str,
    schemas: dict[str, pa.Schema],
    file_format: str,
) -> MergeManifest:
    """Every file is there: the missing list, the card, the manifest; stale files go."""
    records = [
        FileRecord.read(paths.record(digest, _record_name(out, t)))
        for out in plan.files
        for t in _targets(paths, out, file_format)
    ]
    files = [r for r in records if r is not None]
    missing = _write_missing(folder, sources, paths)
    counts = {
        "planned": sources.planned,
        "ok": plan.ok,
        "failed": plan.failed,
        "missing": missing,
    }
    if plan.duplicates is not None:
        counts["duplicates"] = _write_duplicates(plan.duplicates, paths)
    else:
        LOCAL.remove(paths.duplicates)
    manifest = MergeManifest(
        complete=sources.complete,
        format=file_format,
        body_as=plan.body_as,
        counts=counts,
        errors=plan.errors,
        bytes=sum(f.bytes for f in files),
        files=files,
        missing=[
            {
                "rank": g.rank,
                "reason": g.reason,
                "part": g.part,
                "items": g.items,
                "message": g.message,
            }
            for g in sources.gaps
        ],
        run=_run_facts(folder),
        fetchshard_version=__version__,
    )
    LOCAL.write_atomic(paths.card, dataset_card(manifest, schemas).encode(), durable=True)
    _remove_stale(paths, plan, digest, file_format)
    manifest.write(paths.manifest, durable=True)
    return manifest


def _write_missing(folder: RunFolder, sources: Sources, paths: MergedPaths) -> int:
    """A partial merge lists the items without a row (``missing.parquet``); return how many."""
    if sources.complete:
        LOCAL.remove(paths.missing)
        return 0
    lost: dict[int, list[int]] = {}
    for gap in sources.gaps:
        if gap.part is not None:
            lost.setdefault(gap.rank, []).append(gap.part)
    tables = []
    for view in folder.ranks():
        ledger = folder.paths.ledger_paths(view.rank)
        if not ledger.db.exists():
            continue
        table = read_without_row(ledger.db, ledger.items, lost.get(view.rank, ()))
        rank = pa.array([view.rank] * table.num_rows, pa.int32())
        tables.append(table.add_column(0, "rank", rank))
    schema = pa.schema(
        [
            ("rank", pa.int32()),
            ("item_id", pa.int64()),
            ("url", pa.string()),
            ("reason", pa.string()),
        ]
    )
    table = pa.concat_tables(tables) if tables else schema.empty_table()
    tmp = paths.missing.with_name(paths.missing.name + TMP_SUFFIX)
    paths.root.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, tmp, compression="zstd")
    LOCAL.publish(tmp, paths.missing)
    return int(table.num_rows)


def _write_duplicates(table: pa.Table, paths: MergedPaths) -> int:
    """``--dedup content``: each success dropped, with the item whose body it repeats."""
    tmp = tmp_of(paths.duplicates)
    paths.root.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, tmp, compression="zstd")
    LOCAL.publish(tmp, paths.duplicates)
    return int(table.num_rows)


def _run_facts(folder: RunFolder) -> dict[str, object]:
    """What the card and the manifest say about the fetch: the fingerprint and the ranks."""
    done = [view.done for view in folder.ranks()]
    finished = [d.completed_at for d in done if d is not None and d.completed_at is not None]
    first = next((v.stats for v in folder.ranks() if v.stats is not None), None)
    return {
        # Hidden again: a rank of an older fetchshard wrote them whole.
        "settings": redact_settings(first.settings) if first else {},
        "command": redact_command(first.command) if first else [],
        "fingerprint": folder.manifest.fingerprint,
        "fetchshard_version": folder.manifest.fetchshard_version,
        "world_size": folder.world_size,
        # The world size of each generation, the first first (one unless it changed).
        "generations": [g.world_size for g in folder.generations],
        "ranks_done": len(finished),
        "last_completed_at": max(finished) if finished else None,
    }


def _remove_stale(paths: MergedPaths, plan: MergePlan, digest: str, file_format: str) -> None:
    """Files of an earlier plan (the run changed since, other targets or another format)."""
    keep = {t for out in plan.files for t in _targets(paths, out, file_format)}
    for entry in paths.output_files():
        if entry not in keep:
            LOCAL.remove(entry)
    if paths.state.is_dir():
        for entry in paths.state.iterdir():
            if entry.name != digest:
                LOCAL.remove(entry)
