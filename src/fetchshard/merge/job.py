"""``fetchshard merge``: a run folder's current rows become one verified dataset.

Every merge process (one, ``--ranks K`` or ``srun -n K``) surveys the committed parts, derives
the same plan, writes the files whose index falls to its rank (skipping those a record shows
finished) and, if it then sees every file of the plan in place, writes the missing-items list,
the dataset card and ``manifest.json`` (the same bytes whoever writes them).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fetchshard import __version__
from fetchshard.errors import ConfigError, RunError
from fetchshard.ledger import read_without_row
from fetchshard.merge.card import dataset_card
from fetchshard.merge.documents import FileRecord, MergeManifest
from fetchshard.merge.plan import DATA, MergePlan, OutputFile, Targets, make_plan
from fetchshard.merge.schema import data_schema, errors_schema
from fetchshard.merge.sources import Sources, collect
from fetchshard.merge.writer import WriteSettings, write_file
from fetchshard.runfolder.layout import TMP_SUFFIX, MergedPaths
from fetchshard.runfolder.storage import LOCAL
from fetchshard.runfolder.view import RunFolder

log = logging.getLogger("fetchshard")

MB = 1000 * 1000
MiB = 1024 * 1024
BODY_CHOICES = ("auto", "image", "binary")
COMPRESSION_CHOICES = ("zstd", "snappy", "gzip", "lz4", "none")


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
    on_file: Callable[[OutputFile, bool], None] | None = None,
) -> MergeOutcome:
    """Merge ``run_dir`` as merge process ``rank`` of ``world_size`` (see the module doc)."""
    folder = RunFolder(run_dir)
    sources = collect(folder)
    if sources.gaps and not options.allow_partial:
        shown = "; ".join(g.message for g in sources.gaps[:5])
        more = f"; and {len(sources.gaps) - 5} more" if len(sources.gaps) > 5 else ""
        raise MergeIncompleteError(
            f"{run_dir} is not complete: {shown}{more} (--allow-partial merges what is there)"
        )
    root = options.output or run_dir / "merged"
    paths = MergedPaths(root)
    plan = make_plan(sources, Targets(options.file_bytes, options.file_rows), options.body_as)
    settings = WriteSettings(
        row_group_bytes=options.row_group_bytes, compression=options.compression
    )
    digest = _digest(plan, settings)
    parts_schema = _parts_schema(sources)
    schemas = {DATA: data_schema(parts_schema, plan.body_as), "errors": errors_schema(parts_schema)}
    written = reused = 0
    for index, out in enumerate(plan.files):
        if index % world_size != rank:
            continue
        target = _target(paths, out)
        record = paths.record(digest, out.name)
        if _finished(target, record):
            reused += 1
            if on_file:
                on_file(out, False)
            continue
        write_file(
            out,
            sources.parts,
            schemas[out.kind],
            target,
            record,
            settings,
            name=str(target.relative_to(root)),
        )
        written += 1
        if on_file:
            on_file(out, True)
    manifest = None
    if _all_there(plan, paths, digest):
        manifest = _finish(folder, sources, plan, paths, digest, schemas)
    return MergeOutcome(root, plan, written, reused, manifest)


def _target(paths: MergedPaths, out: OutputFile) -> Path:
    if out.kind == DATA:
        return paths.data_file(out.index, out.count)
    return paths.errors_file(out.index, out.count)


def _finished(target: Path, record: Path) -> bool:
    found = FileRecord.read(record)
    return found is not None and target.exists() and target.stat().st_size == found.bytes


def _all_there(plan: MergePlan, paths: MergedPaths, digest: str) -> bool:
    return all(_finished(_target(paths, out), paths.record(digest, out.name)) for out in plan.files)


def _parts_schema(sources: Sources) -> pa.Schema:
    """One schema for every part (a run's parts share theirs; older ones may lack columns)."""
    from fetchshard.output.columns import BASE_COLUMNS

    if not sources.parts:
        return BASE_COLUMNS.schema(None)
    schemas = {}
    for part in sources.parts:
        schema = pq.read_schema(part.path).remove_metadata()
        schemas[schema.to_string()] = schema
    return pa.unify_schemas(list(schemas.values()), promote_options="permissive")


def _digest(plan: MergePlan, settings: WriteSettings) -> str:
    shape = [plan.digest, settings.row_group_bytes, settings.compression, __version__]
    return hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:16]


def _finish(
    folder: RunFolder,
    sources: Sources,
    plan: MergePlan,
    paths: MergedPaths,
    digest: str,
    schemas: dict[str, pa.Schema],
) -> MergeManifest:
    """Every file is there: the missing list, the card, the manifest; stale files go."""
    records = [FileRecord.read(paths.record(digest, out.name)) for out in plan.files]
    files = [r for r in records if r is not None]
    missing = _write_missing(folder, sources, paths)
    counts = {
        "planned": sources.planned,
        "ok": plan.ok,
        "failed": plan.failed,
        "missing": missing,
    }
    manifest = MergeManifest(
        complete=sources.complete,
        format="parquet",
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
    _remove_stale(paths, plan, digest)
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
        ledger = folder.paths.ledger(view.rank)
        if not ledger.exists():
            continue
        table = read_without_row(ledger, lost.get(view.rank, ()))
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


def _run_facts(folder: RunFolder) -> dict[str, object]:
    """What the card and the manifest say about the fetch: the fingerprint and the ranks."""
    done = [view.done for view in folder.ranks()]
    finished = [d.completed_at for d in done if d is not None and d.completed_at is not None]
    first = next((v.stats for v in folder.ranks() if v.stats is not None), None)
    return {
        "settings": _redacted(first.settings) if first else {},
        "command": first.command if first else [],
        "fingerprint": folder.manifest.fingerprint,
        "fetchshard_version": folder.manifest.fetchshard_version,
        "world_size": folder.world_size,
        "ranks_done": len(finished),
        "last_completed_at": max(finished) if finished else None,
    }


def _redacted(value: Any, key: str = "") -> Any:
    """Settings fit to publish: header values (tokens, cookies) replaced."""
    if isinstance(value, dict):
        if key == "headers":
            return {k: "<redacted>" for k in value}
        return {k: _redacted(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _remove_stale(paths: MergedPaths, plan: MergePlan, digest: str) -> None:
    """Files of an earlier plan (the run changed since, or other targets) and their records."""
    keep = {_target(paths, out).name for out in plan.files}
    for folder in paths.output_folders():
        if folder.is_dir():
            for entry in folder.iterdir():
                if entry.name not in keep:
                    LOCAL.remove(entry)
    if paths.state.is_dir():
        for entry in paths.state.iterdir():
            if entry.name != digest:
                LOCAL.remove(entry)
