"""The ledger's queue: planned items from the items file, and the states SQLite keeps."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import numpy as np

from fetchshard.ledger import NO_HOST, Counts, Ledger, PlannedItem, WorkItem, read_superseded
from fetchshard.runfolder.layout import ledger_paths

HOST = 7 << 57


def _ledger(tmp_path: Path, n: int = 10) -> Ledger:
    ledger = Ledger(ledger_paths(tmp_path / "l.sqlite"))
    items = [PlannedItem(i, HOST, "h", f"http://h/{i}", f'["x{i}"]') for i in range(1, n + 1)]
    items.append(PlannedItem(100, NO_HOST, "", "bad", None, "bad_url", "no scheme"))
    ledger.insert_items(items)
    return ledger


def _retry(item: WorkItem, at: float) -> WorkItem:
    return dataclasses.replace(item, attempts=1, next_attempt_at=at, error_kind="timeout")


def test_fresh_items_in_id_order_through_the_cursor(tmp_path: Path) -> None:
    with _ledger(tmp_path) as ledger:
        seen: list[int] = []
        cursor = (-1.0, -1)
        while batch := ledger.queue.ready_items(HOST, cursor, 1e18, 3):
            seen += [w.item_id for w in batch]
            cursor = (batch[-1].next_attempt_at, batch[-1].item_id)
        assert seen == list(range(1, 11))
        first = ledger.queue.ready_items(HOST, (0.0, 4), 1e18, 1)[0]
        assert (first.item_id, first.url, first.extras, first.host_id) == (
            5,
            "http://h/5",
            '["x5"]',
            HOST,
        )
        assert ledger.queue.next_due(HOST, (0.0, 9)) == 0.0
        assert ledger.queue.next_due(HOST, (0.0, 10)) is None
        assert ledger.counts() == Counts(total=11, committed=0, pending=11, failed=0)


def test_released_items_leave_the_fresh_run_and_come_back_when_due(tmp_path: Path) -> None:
    with _ledger(tmp_path) as ledger:
        batch = ledger.queue.ready_items(HOST, (-1.0, -1), 1e18, 4)  # 1..4 handed out
        ledger.queue.release([_retry(batch[1], 50.0), _retry(batch[3], 20.0)])
        # From the start again (a new scheduler): 2 and 4 are no longer fresh, they are due
        # at 50 and 20, after every fresh item.
        order = [w.item_id for w in ledger.queue.ready_items(HOST, (-1.0, -1), 1e18, 20)]
        assert order == [1, 3, 5, 6, 7, 8, 9, 10, 4, 2]
        assert [w.item_id for w in ledger.queue.ready_items(HOST, (-1.0, -1), 30.0, 20)][-1] == 4
        retried = ledger.queue.ready_items(HOST, (0.0, 10), 1e18, 5)
        assert [(w.item_id, w.attempts, w.error_kind, w.url, w.extras) for w in retried] == [
            (4, 1, "timeout", "http://h/4", '["x4"]'),
            (2, 1, "timeout", "http://h/2", '["x2"]'),
        ]
        assert ledger.queue.next_due(HOST, (0.0, 10)) == 20.0
        # A committed item is never released back.
        ledger.commit_part(1, [(2, 1, None)], rows=1, nbytes=1, now=0.0)
        ledger.fold_commits()
        ledger.queue.release([_retry(retried[1], 1.0)])
        assert [w.item_id for w in ledger.queue.ready_items(HOST, (0.0, 10), 1e18, 5)] == [4]
        assert ledger.counts() == Counts(total=11, committed=1, pending=10, failed=0)


def test_deferred_items_wait_for_reopen(tmp_path: Path) -> None:
    with _ledger(tmp_path, 3) as ledger:
        batch = ledger.queue.ready_items(HOST, (-1.0, -1), 1e18, 3)
        ledger.queue.defer([_retry(batch[0], 0.0)])
        assert [w.item_id for w in ledger.queue.ready_items(HOST, (-1.0, -1), 1e18, 9)] == [2, 3]
        assert ledger.queue.reopen_deferred(5.0) == 1
        assert [w.item_id for w in ledger.queue.ready_items(HOST, (-1.0, -1), 1e18, 9)] == [2, 3, 1]


def test_items_without_host_are_read_by_id(tmp_path: Path) -> None:
    with _ledger(tmp_path, 2) as ledger:
        (bad,) = ledger.queue.pending_without_host(10, -1)
        assert (bad.item_id, bad.url, bad.error_kind, bad.error_message) == (
            100,
            "bad",
            "bad_url",
            "no scheme",
        )
        assert ledger.queue.pending_without_host(10, 100) == []
        ledger.commit_part(1, [(100, 0, "bad_url")], rows=1, nbytes=1, now=0.0)
        ledger.fold_commits()
        assert ledger.queue.pending_without_host(10, -1) == []
        assert ledger.error_counts() == {"bad_url": 1}


def test_requeued_failures_are_fetched_as_new_and_their_old_rows_superseded(
    tmp_path: Path,
) -> None:
    with _ledger(tmp_path, 4) as ledger:
        # Part 1: 1 ok, 2 and 3 failed (transient, then permanent), 100 a bad URL; 4 pending.
        rows = [(1, 1, None), (2, 4, "http_5xx"), (3, 1, "http_404"), (100, 0, "bad_url")]
        ledger.commit_part(1, rows, rows=4, nbytes=1, now=0.0)
        assert ledger.failed_items(frozenset({"http_5xx", "timeout"})).tolist() == [2]
        assert ledger.failed_items(None).tolist() == [2, 3, 100]
        assert ledger.requeue(np.array([2, 100])) == 2
        assert ledger.counts() == Counts(total=5, committed=2, pending=3, failed=1)
        # As planned, never tried: full attempts again, the URL and extras back from the plan.
        work = ledger.queue.ready_items(HOST, (-1.0, -1), 1e18, 10)
        assert [(w.item_id, w.attempts, w.error_kind, w.url, w.extras) for w in work] == [
            (2, 0, None, "http://h/2", '["x2"]'),
            (4, 0, None, "http://h/4", '["x4"]'),
        ]
        (bad,) = ledger.queue.pending_without_host(10, -1)
        assert (bad.item_id, bad.error_kind, bad.error_message) == (100, "bad_url", "no scheme")
        # Until the new rows are committed, the old ones are current: nothing superseded.
        assert read_superseded(ledger.path) == {}
        ledger.commit_part(2, [(2, 1, None), (100, 0, "bad_url")], rows=2, nbytes=1, now=0.0)
        unfolded = read_superseded(ledger.path)  # from the commit log, before the fold
        ledger.fold_commits()
        folded = read_superseded(ledger.path)
        for found in (unfolded, folded):
            assert {part: ids.tolist() for part, ids in found.items()} == {1: [2, 100]}
        assert ledger.counts() == Counts(total=5, committed=4, pending=1, failed=2)
        assert ledger.error_counts() == {"http_404": 1, "bad_url": 1}
        # A committed item is requeued once per request, never an item still pending.
        assert ledger.requeue(np.array([4])) == 0


def test_ledger_of_schema_version_3_moves_items_out_of_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "v3.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE hosts (host_id INTEGER PRIMARY KEY, host TEXT NOT NULL,
                            seq INTEGER NOT NULL UNIQUE);
        CREATE TABLE items (
            item_id INTEGER PRIMARY KEY, host_id INTEGER NOT NULL, url TEXT NOT NULL,
            fetch_url TEXT, extras TEXT, state INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL DEFAULT 0,
            error_kind TEXT, error_message TEXT, http_status INTEGER, part INTEGER
        ) WITHOUT ROWID;
        CREATE TABLE done (item_id INTEGER NOT NULL, part INTEGER NOT NULL,
                           attempts INTEGER NOT NULL, error_kind TEXT);
        CREATE TABLE parts (part INTEGER PRIMARY KEY, rows INTEGER NOT NULL,
                            bytes INTEGER NOT NULL, committed_at REAL NOT NULL);
        """
    )
    db.execute("INSERT INTO hosts VALUES (?, 'h', 1)", (HOST,))
    db.executemany(
        "INSERT INTO items (item_id, host_id, url, state, attempts, next_attempt_at, "
        "error_kind, part) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (1, HOST, "http://h/1", 0, 0, 0.0, None, None),  # fresh
            (2, HOST, "http://h/2", 0, 2, 30.0, "timeout", None),  # waiting to retry
            (3, HOST, "http://h/3", 1, 1, 0.0, None, 1),  # committed
            (4, HOST, "http://h/4", 0, 0, 0.0, None, None),  # committed in the log only
        ],
    )
    db.execute("INSERT INTO done VALUES (4, 2, 1, NULL)")
    db.commit()
    db.close()
    with Ledger(ledger_paths(path)) as ledger:
        assert ledger.counts() == Counts(total=4, committed=2, pending=2, failed=0)
        ledger.fold_commits()
        work = ledger.queue.ready_items(HOST, (-1.0, -1), 1e18, 10)
        assert [(w.item_id, w.attempts, w.next_attempt_at) for w in work] == [
            (1, 0, 0.0),
            (2, 2, 30.0),
        ]
    with sqlite3.connect(path) as db:
        assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'items'").fetchall()
