"""A rank's ledger: its planned items, its work queue and the truth about what is committed.

- ``items``: the planned item declared once (:class:`PlannedItem`, :class:`WorkItem`, the
  items file's schema) and the items file, written by planning (:class:`Stage`) and read by
  column name (:class:`ItemFile`);
- ``store``: :class:`Ledger`, the rank's own connection (planning, the commit log and its
  fold), with ``meta`` (the typed keys, :class:`Meta`) and ``queue`` (:class:`Queue`);
  ``sql`` its schema, ``migrate`` older ledgers;
- ``readonly``: the readers for other processes, each over :func:`read_only`.

The ledger is handed the paths of its files; the run folder's layout (runfolder/layout.py)
names them.
"""

from fetchshard.ledger.items import (
    BATCH_ROWS,
    BUCKETS,
    ITEM_COLUMNS,
    ITEM_SCHEMA,
    NO_HOST,
    ItemFile,
    PlannedItem,
    Span,
    Stage,
    WorkItem,
    to_batch,
)
from fetchshard.ledger.meta import Fingerprint, HostShares, Meta, SessionStats
from fetchshard.ledger.queue import Queue
from fetchshard.ledger.readonly import (
    CurrentRows,
    LedgerSummary,
    PartRecord,
    read_current_rows,
    read_only,
    read_summary,
    read_superseded,
    read_without_row,
)
from fetchshard.ledger.sql import COMMITTED, DEFERRED, PENDING, SCHEMA_VERSION, Counts
from fetchshard.ledger.store import Ledger, LedgerFiles

__all__ = [
    "BATCH_ROWS",
    "BUCKETS",
    "COMMITTED",
    "DEFERRED",
    "ITEM_COLUMNS",
    "ITEM_SCHEMA",
    "NO_HOST",
    "PENDING",
    "SCHEMA_VERSION",
    "Counts",
    "CurrentRows",
    "Fingerprint",
    "HostShares",
    "ItemFile",
    "Ledger",
    "LedgerFiles",
    "LedgerSummary",
    "Meta",
    "PartRecord",
    "PlannedItem",
    "Queue",
    "SessionStats",
    "Span",
    "Stage",
    "WorkItem",
    "read_current_rows",
    "read_only",
    "read_summary",
    "read_superseded",
    "read_without_row",
    "to_batch",
]
