"""What a merge reads: every rank's committed parts, and what is not there (the gaps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fetchshard.ledger import read_current_rows
from fetchshard.planning.slicefiles import read_carried
from fetchshard.runfolder.documents import LeftoverDone, RunManifest
from fetchshard.runfolder.layout import GenerationPaths
from fetchshard.runfolder.storage import LOCAL, Storage
from fetchshard.runfolder.view import RankView, RunFolder


@dataclass(frozen=True)
class SourcePart:
    """One committed part: where it is, the rows its ledger records, the ids superseded."""

    rank: int
    part: int
    path: Path
    rows: int
    superseded: np.ndarray = field(repr=False)  # sorted ids of rows no longer current
    generation: int = 0
    storage: Storage = field(default=LOCAL, repr=False)  # where it was published

    def parquet(self) -> pq.ParquetFile:
        """The part, to read (from a bucket by ranged reads)."""
        if self.storage.local:
            return pq.ParquetFile(self.path)
        return pq.ParquetFile(self.storage.open_published(self.path))


@dataclass(frozen=True)
class Gap:
    """Something a complete merge needs and the folder lacks, in one line for the user."""

    rank: int
    reason: str  # "unfinished" or "missing_part"
    message: str
    part: int | None = None
    items: int = 0  # items without a current row because of it


@dataclass(frozen=True)
class Sources:
    manifest: RunManifest
    parts: list[SourcePart]  # in (generation, rank, part) order: the merged row order
    gaps: list[Gap]  # of the current generation (what the earlier ones left is its work)
    planned: int  # items over all ranks' plans (of the first generation)
    pending: int  # of them, items no rank has committed yet (of the current generation)

    @property
    def complete(self) -> bool:
        return not self.gaps


def collect(folder: RunFolder) -> Sources:
    """Every rank's committed parts over the generations, and each rank of the current one
    not finished, or part file missing."""
    parts: list[SourcePart] = []
    gaps: list[Gap] = []
    planned = pending = 0
    replaced = _taken_up(folder)
    for generation in folder.generations:
        current = generation == folder.current
        for view in folder.generation_ranks(generation):
            summary = view.ledger()
            if summary is not None and generation.number == 0:
                planned += summary.counts.total
            if current:
                pending += summary.counts.pending if summary is not None else 0
                unfinished = _unfinished(view, summary.counts.pending if summary else None)
                if unfinished is not None:
                    gaps.append(unfinished)
            if summary is None:
                continue
            superseded = view.superseded()
            for part, ids in replaced.get((generation.number, view.rank), {}).items():
                superseded[part] = np.union1d(superseded.get(part, ids), ids)
            for record in summary.parts:
                path = view.paths.part(view.rank, record.part)
                stale = superseded.get(record.part, np.zeros(0, dtype=np.int64))
                if not folder.part_exists(path):
                    gaps.append(
                        Gap(
                            view.rank,
                            "missing_part",
                            f"{path.relative_to(folder.paths.root)} is missing (the ledger "
                            f"of rank {view.rank} records {record.rows:,} rows in it)",
                            part=record.part,
                            items=record.rows - len(stale),
                        )
                    )
                    continue
                parts.append(
                    SourcePart(
                        view.rank,
                        record.part,
                        path,
                        record.rows,
                        stale,
                        generation.number,
                        folder.storage,
                    )
                )
    return Sources(folder.manifest, parts, gaps, planned, pending)


def _taken_up(folder: RunFolder) -> dict[tuple[int, int], dict[int, np.ndarray]]:
    """(generation, rank) -> part -> ids of rows no longer current because a later
    generation took the item up again (requeued, or --retry-failed) and committed it."""
    carried: list[tuple[int, int, pa.Table]] = []
    for generation in folder.generations[1:]:
        paths = GenerationPaths(folder.paths.root, generation.number)
        for done in sorted(paths.folder.glob("leftover/done/*.json")):
            record = LeftoverDone.read(done)
            if record is None or not record.carried:
                continue
            source = (record.source_generation, record.source_rank)
            table = read_carried(paths.carried(*source))
            carried.append((*source, table))
    if not carried:
        return {}
    committed: dict[int, np.ndarray] = {}  # generation -> ids committed in it
    for generation in folder.generations[1:]:
        ids = [
            read_current_rows(v.paths.ledger(v.rank)).item_id
            for v in folder.generation_ranks(generation)
            if v.paths.ledger(v.rank).exists()
        ]
        committed[generation.number] = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    out: dict[tuple[int, int], dict[int, np.ndarray]] = {}
    for source_generation, rank, table in carried:
        later = [ids for g, ids in committed.items() if g > source_generation]
        again = np.concatenate(later) if later else np.zeros(0, np.int64)
        ids = table.column("item_id").to_numpy()
        parts = table.column("part").to_numpy()
        replaced = np.isin(ids, again)
        mine = out.setdefault((source_generation, rank), {})
        for part in np.unique(parts[replaced]).tolist():
            mine[part] = np.union1d(mine.get(part, []), ids[replaced & (parts == part)])
    return out


def _unfinished(view: RankView, pending: int | None) -> Gap | None:
    if view.running:
        return Gap(
            view.rank,
            "unfinished",
            f"rank {view.rank} is still running ({pending or 0:,} items to do)",
            items=pending or 0,
        )
    if view.done is not None:
        return None
    if pending is None:
        return Gap(view.rank, "unfinished", f"rank {view.rank} has not started")
    return Gap(
        view.rank,
        "unfinished",
        f"rank {view.rank} is not finished ({view.state}, {pending:,} items to do): "
        "rerun the fetch to complete it",
        items=pending,
    )
