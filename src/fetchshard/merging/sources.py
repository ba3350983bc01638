"""What a merge reads: every rank's committed parts, and what is not there (the gaps)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fetchshard.runfolder.documents import RunManifest
from fetchshard.runfolder.view import RankView, RunFolder


@dataclass(frozen=True)
class SourcePart:
    """One committed part: where it is, the rows its ledger records, the ids superseded."""

    rank: int
    part: int
    path: Path
    rows: int
    superseded: np.ndarray = field(repr=False)  # sorted ids of rows no longer current


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
    parts: list[SourcePart]  # in (rank, part) order: the merged row order
    gaps: list[Gap]
    planned: int  # items over all ranks' plans
    pending: int  # of them, items no rank has committed yet

    @property
    def complete(self) -> bool:
        return not self.gaps


def collect(folder: RunFolder) -> Sources:
    """Every rank's committed parts, and each rank not finished or part file missing."""
    parts: list[SourcePart] = []
    gaps: list[Gap] = []
    planned = pending = 0
    for view in folder.ranks():
        summary = view.ledger()
        if summary is not None:
            planned += summary.counts.total
            pending += summary.counts.pending
        unfinished = _unfinished(view, summary.counts.pending if summary else None)
        if unfinished is not None:
            gaps.append(unfinished)
        if summary is None:
            continue
        superseded = view.superseded()
        for record in summary.parts:
            path = folder.paths.part(view.rank, record.part)
            if not path.exists():
                gaps.append(
                    Gap(
                        view.rank,
                        "missing_part",
                        f"{path.relative_to(folder.paths.root)} is missing "
                        f"(the ledger of rank {view.rank} records {record.rows:,} rows in it)",
                        part=record.part,
                        items=record.rows - len(superseded.get(record.part, ())),
                    )
                )
                continue
            empty = np.zeros(0, dtype=np.int64)
            parts.append(
                SourcePart(
                    view.rank, record.part, path, record.rows, superseded.get(record.part, empty)
                )
            )
    return Sources(folder.manifest, parts, gaps, planned, pending)


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
