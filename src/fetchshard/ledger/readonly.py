"""Reading a ledger from any process (merge, report, tests), never writing it.

Every reader goes through :func:`read_only`: a read-only connection, one short transaction (so
its reads are one snapshot; the rank's next commit waits for it), closed at the end. That is
safe while the rank runs, and holds nothing open between reads.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from fetchshard.ledger.items import ItemFile
from fetchshard.ledger.sql import (
    SUPERSEDED_BY_DONE,
    Counts,
    count_errors,
    count_items,
    has_table,
)

TIMEOUT = 10.0  # seconds a reader waits for a rank's commit to end


@contextlib.contextmanager
def read_only(path: Path, *, timeout: float = TIMEOUT) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the ledger at ``path`` inside one transaction: BEGIN before
    the block, COMMIT after it, closed in any case."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        db.execute("BEGIN")
        yield db
        db.execute("COMMIT")
    finally:
        db.close()


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A committed part as the ledger records it."""

    part: int
    rows: int
    bytes: int
    committed_at: float


@dataclass(frozen=True, slots=True)
class LedgerSummary:
    counts: Counts
    errors: dict[str, int]  # committed failures by error kind
    parts: list[PartRecord]  # in part order


def read_summary(path: Path, *, timeout: float = TIMEOUT) -> LedgerSummary:
    """Counts, failures by kind and committed parts of a ledger, in one snapshot."""
    with read_only(path, timeout=timeout) as db:
        return LedgerSummary(
            counts=count_items(db),
            errors=count_errors(db),
            parts=[
                PartRecord(part, rows, nbytes, committed_at)
                for part, rows, nbytes, committed_at in db.execute(
                    "SELECT part, rows, bytes, committed_at FROM parts ORDER BY part"
                )
            ],
        )


def read_superseded(path: Path, *, timeout: float = TIMEOUT) -> dict[int, np.ndarray]:
    """Part number -> sorted ids of the rows in it that are no longer their item's current
    row (replaced after ``--retry-failed``); parts without such rows are absent."""
    with read_only(path, timeout=timeout) as db:
        # A ledger no rank of version 5 or later has opened has no such table (nor rows).
        recorded = ""
        if has_table(db, "superseded"):
            recorded = "SELECT part, item_id FROM superseded UNION "
        pairs = db.execute(f"{recorded}{SUPERSEDED_BY_DONE} ORDER BY 1, 2").fetchall()
    out: dict[int, list[int]] = {}
    for part, item in pairs:
        out.setdefault(part, []).append(item)
    return {part: np.array(items, dtype=np.int64) for part, items in out.items()}


@dataclass(frozen=True)
class CurrentRows:
    """The items of a ledger that have a current row, sorted by id (a leftover's input)."""

    item_id: np.ndarray  # int64, sorted
    part: np.ndarray  # int64: the part holding the item's current row
    error_kind: np.ndarray  # object: the row's error kind (None: a success)
    requeued: np.ndarray  # bool: put back in the queue, the row stays until replaced

    def __len__(self) -> int:
        return len(self.item_id)


def read_current_rows(path: Path, *, timeout: float = TIMEOUT) -> CurrentRows:
    """Every item with a current row in one snapshot: ``states`` with a part (committed, or
    requeued with its old row), then the ``done`` log over it (a later part wins)."""
    with read_only(path, timeout=timeout) as db:
        found = db.execute(
            "SELECT item_id, part, error_kind, state = 0 FROM states WHERE part IS NOT NULL "
            "UNION ALL SELECT item_id, part, error_kind, 0 FROM done"
        ).fetchall()
    if not found:
        empty = np.zeros(0, np.int64)
        return CurrentRows(empty, empty, np.zeros(0, object), np.zeros(0, bool))
    ids = np.fromiter((r[0] for r in found), np.int64, len(found))
    parts = np.fromiter((r[1] for r in found), np.int64, len(found))
    kinds = np.array([r[2] for r in found], dtype=object)
    requeued = np.fromiter((bool(r[3]) for r in found), bool, len(found))
    # Of an item's entries the one in the highest part is current (a part is committed after
    # every earlier one of the rank); the states row of a requeued item comes first.
    order = np.lexsort((parts, ids))
    ids, parts, kinds, requeued = ids[order], parts[order], kinds[order], requeued[order]
    last = np.ones(len(ids), bool)
    last[:-1] = ids[1:] != ids[:-1]
    # A requeued item later committed again is committed, not requeued.
    return CurrentRows(ids[last], parts[last], kinds[last], requeued[last])


def read_without_row(
    path: Path, items: Path, lost_parts: Collection[int] = (), *, timeout: float = TIMEOUT
) -> pa.Table:
    """The planned items (item_id, url, reason) with no current row: ``pending`` (never
    committed) or ``missing_part`` (their row is in one of ``lost_parts``). ``items``: the
    ledger's items file."""
    current = read_current_rows(path, timeout=timeout)
    latest = dict(zip(current.item_id.tolist(), current.part.tolist(), strict=True))
    lost = set(lost_parts)
    ids: list[int] = []
    urls: list[str] = []
    reasons: list[str] = []
    if items.exists():
        reader = ItemFile(items)
        try:
            for batch in reader.batches():
                for item, url in zip(
                    batch.column("item_id").to_pylist(),
                    batch.column("url").to_pylist(),
                    strict=True,
                ):
                    part = latest.get(item)
                    if part is None or part in lost:
                        ids.append(item)
                        urls.append(url)
                        reasons.append("pending" if part is None else "missing_part")
        finally:
            reader.close()
    return pa.table(
        {
            "item_id": pa.array(ids, pa.int64()),
            "url": pa.array(urls, pa.string()),
            "reason": pa.array(reasons, pa.string()),
        }
    )
