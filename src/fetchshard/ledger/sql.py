"""The ledger's SQLite side: its schema, its transactions, and the queries both the rank's own
connection and the read-only readers (:mod:`fetchshard.ledger.readonly`) run.

The database holds the hosts and where their rows lie in the items file (``hosts``,
``spans``), meta, and an item's state once it differs from "planned, never tried": retried,
deferred or committed (``states``); the commit log (``done``), the rows a retry replaced
(``superseded``) and the committed parts (``parts``).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from fetchshard.ledger.items import Span

# An item's ``state`` in ``states``.
PENDING = 0
COMMITTED = 1
DEFERRED = 2  # transient failures kept for the final pass at the end of the slice

# 2: items.fetch_url; 3: the ``done`` log; 4: planned items in the items file, ``states``
# for the rest; 5: ``superseded``. Older ledgers are brought up to date when opened
# (:mod:`fetchshard.ledger.migrate`).
SCHEMA_VERSION = 5

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    host_id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS spans (
    host_id INTEGER NOT NULL,
    first INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (host_id, first)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS states (
    item_id INTEGER PRIMARY KEY,
    host_id INTEGER,
    state INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    error_kind TEXT,
    error_message TEXT,
    http_status INTEGER,
    part INTEGER,
    url TEXT,
    fetch_url TEXT,
    extras TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS states_ready ON states (host_id, state, next_attempt_at, item_id);
CREATE TABLE IF NOT EXISTS done (
    item_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error_kind TEXT
);
CREATE TABLE IF NOT EXISTS superseded (
    part INTEGER NOT NULL,
    item_id INTEGER NOT NULL,
    PRIMARY KEY (part, item_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (
    part INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    committed_at REAL NOT NULL
);
"""

# (part, item_id) of rows replaced by a commit still in the ``done`` log: the item's row
# recorded in ``states``, or an older entry of the log itself.
SUPERSEDED_BY_DONE = (
    "SELECT s.part, d.item_id FROM done d JOIN states s ON s.item_id = d.item_id "
    "WHERE s.part IS NOT NULL AND s.part != d.part "
    "UNION SELECT a.part, a.item_id FROM done a JOIN done b ON a.item_id = b.item_id "
    "AND a.part < b.part"
)


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    committed: int
    pending: int
    failed: int


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed at the end of the block, rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def scalar(db: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> Any:
    row = db.execute(sql, params).fetchone()
    return None if row is None else row[0]


def has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def write_spans(db: sqlite3.Connection, spans: Iterable[Span]) -> None:
    """Replace where each host's rows lie in the items file (in the caller's transaction)."""
    db.execute("DELETE FROM spans")
    db.executemany(
        "INSERT INTO spans (host_id, first, count) VALUES (?, ?, ?)",
        [(s.host_id, s.first, s.count) for s in spans],
    )


def count_items(db: sqlite3.Connection) -> Counts:
    total, committed, failed = db.execute(
        "SELECT (SELECT COALESCE(SUM(count), 0) FROM spans), "
        "(SELECT COUNT(*) FROM states WHERE state = 1) + (SELECT COUNT(*) FROM done), "
        "(SELECT COUNT(*) FROM states WHERE state = 1 AND error_kind IS NOT NULL) "
        "+ (SELECT COUNT(*) FROM done WHERE error_kind IS NOT NULL)"
    ).fetchone()
    return Counts(total=total, committed=committed, pending=total - committed, failed=failed)


def count_errors(db: sqlite3.Connection) -> dict[str, int]:
    """Committed failures by error kind."""
    rows = db.execute(
        "SELECT error_kind, COUNT(*) FROM (SELECT error_kind FROM states WHERE state = 1 "
        "UNION ALL SELECT error_kind FROM done) WHERE error_kind IS NOT NULL "
        "GROUP BY error_kind"
    )
    return {kind: count for kind, count in rows}
