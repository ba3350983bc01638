"""Reading a ledger from another process: one read-only snapshot per read, nothing kept open."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fetchshard.ledger import (
    Counts,
    Ledger,
    PartRecord,
    PlannedItem,
    read_only,
    read_summary,
    read_superseded,
    read_without_row,
)
from fetchshard.runfolder.layout import LedgerPaths, ledger_paths

HOST = 7 << 57


def _ledger(tmp_path: Path) -> LedgerPaths:
    files = ledger_paths(tmp_path / "l.sqlite")
    with Ledger(files) as ledger:
        ledger.insert_items([PlannedItem(i, HOST, "h", f"http://h/{i}", None) for i in (1, 2, 3)])
        ledger.commit_part(1, [(1, 1, None), (2, 2, "http_404")], rows=2, nbytes=10, now=5.0)
    return files


def _try_write(path: Path) -> None:
    """A write by another connection that does not wait for locks."""
    db = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        db.execute("INSERT INTO meta VALUES ('probe', '1') ON CONFLICT DO NOTHING")
    finally:
        db.close()


def test_the_block_reads_one_snapshot_then_the_connection_is_gone(tmp_path: Path) -> None:
    files = _ledger(tmp_path)
    with read_only(files.db) as db:
        assert db.in_transaction
        assert db.execute("SELECT COUNT(*) FROM done").fetchone()[0] == 2
        # The snapshot holds the rank's next commit back (it waits, as with any reader).
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            _try_write(files.db)
    _try_write(files.db)  # committed and closed: nothing held
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        db.execute("SELECT 1")
    assert not files.db.with_name(files.db.name + "-journal").exists()


def test_it_never_writes_and_closes_when_the_block_raises(tmp_path: Path) -> None:
    files = _ledger(tmp_path)
    with pytest.raises(sqlite3.OperationalError, match="readonly"), read_only(files.db) as db:
        db.execute("DELETE FROM done")
    _try_write(files.db)  # not left holding its lock
    with read_only(files.db) as db:
        assert db.execute("SELECT COUNT(*) FROM done").fetchone()[0] == 2


def test_a_missing_ledger_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    with pytest.raises(sqlite3.OperationalError), read_only(tmp_path / "none.sqlite"):
        pass
    assert not (tmp_path / "none.sqlite").exists()


def test_summary_superseded_and_items_without_a_row(tmp_path: Path) -> None:
    files = _ledger(tmp_path)
    summary = read_summary(files.db)
    assert summary.counts == Counts(total=3, committed=2, pending=1, failed=1)
    assert summary.errors == {"http_404": 1}
    assert summary.parts == [PartRecord(1, 2, 10, 5.0)]
    assert read_superseded(files.db) == {}
    pending = read_without_row(files.db, files.items)
    assert pending.to_pylist() == [{"item_id": 3, "url": "http://h/3", "reason": "pending"}]
    lost = read_without_row(files.db, files.items, [1]).to_pylist()
    assert [(r["item_id"], r["reason"]) for r in lost] == [
        (1, "missing_part"),
        (2, "missing_part"),
        (3, "pending"),
    ]
    assert read_without_row(files.db, tmp_path / "gone.arrow").num_rows == 0
