"""Older ledgers, brought up to date when opened: schema versions 1 to 3 kept every item as a
row of an ``items`` table; since 4 the planned items are the items file and ``states`` holds
the rest (5 added ``superseded``, which ``CREATE TABLE IF NOT EXISTS`` adds)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np

from fetchshard.ledger.items import ITEM_COLUMNS, NO_HOST, Stage, to_batch
from fetchshard.ledger.sql import has_table, transaction, write_spans
from fetchshard.urls import BadUrl, normalize_url


def migrate(db: sqlite3.Connection, items: Path, scratch: Path) -> None:
    """Bring a ledger of schema version 1 to 3 up to date: its items become the items file
    (``items``, staged in ``scratch``), and those not "planned, never tried" get a state."""
    if not has_table(db, "items"):
        return
    if "fetch_url" not in {r[1] for r in db.execute("PRAGMA table_info(items)")}:
        with transaction(db):  # version 1: derive fetch_url as planning does
            db.execute("ALTER TABLE items ADD COLUMN fetch_url TEXT")
            updates = [
                (fetch_url, item)
                for item, host, url in db.execute("SELECT item_id, host_id, url FROM items")
                if (fetch_url := _fetch_url(host, url)) is not None
            ]
            db.executemany("UPDATE items SET fetch_url = ? WHERE item_id = ?", updates)
    # A crash before the last transaction leaves ``items`` in place: this runs again.
    stage = Stage(scratch)
    try:
        cursor = db.execute(f"SELECT {', '.join(ITEM_COLUMNS)} FROM items")
        staged = 0
        while rows := cursor.fetchmany(65536):
            columns = dict(zip(ITEM_COLUMNS, zip(*rows, strict=True), strict=True))
            stage.add(to_batch(columns, len(rows)), np.arange(staged, staged + len(rows)))
            staged += len(rows)
        spans, _ = stage.finish(items)
        with transaction(db):
            db.execute(
                "INSERT INTO states (item_id, host_id, state, attempts, next_attempt_at, "
                "error_kind, error_message, http_status, part, url, fetch_url, extras) "
                "SELECT item_id, host_id, state, attempts, next_attempt_at, error_kind, "
                "error_message, http_status, part, url, fetch_url, extras FROM items "
                "WHERE NOT (state = 0 AND attempts = 0 AND next_attempt_at = 0)"
            )
            write_spans(db, spans)
            db.execute("DROP TABLE items")
    finally:
        stage.discard()


def _fetch_url(host_id: int, url: str) -> str | None:
    if host_id == NO_HOST:
        return None
    try:
        fetch_url = normalize_url(url).url
    except BadUrl:
        return None
    return fetch_url if fetch_url != url else None
