"""The ledger's meta keys: typed attributes, stored as ledgers have always stored them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from fetchshard.ledger import Ledger, Meta, PlannedItem, to_batch
from fetchshard.runfolder.layout import ledger_paths


def _raw(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())


def test_a_key_is_none_until_written_then_read_back_after_reopening(tmp_path: Path) -> None:
    files = ledger_paths(tmp_path / "l.sqlite")
    fp = {"input": {"files": [{"path": "/u.txt", "size": 3}]}, "world_size": 2}
    with Ledger(files) as ledger:
        meta = ledger.meta
        assert (meta.fingerprint, meta.planned, meta.extras_schema) == (None, None, None)
        assert (meta.host_shares, meta.session_stats) == (None, None)
        meta.fingerprint = fp
        meta.extras_schema = ""
        meta.host_shares = {"17": [1, 3]}
        meta.session_stats = {"items": 4, "errors": {"timeout": 1}}
        meta.session_stats = {"items": 5, "errors": {}}  # replaced, not added
    with Ledger(files) as ledger:
        assert ledger.meta.fingerprint == fp
        assert ledger.meta.extras_schema == ""  # "no extras" is not "not recorded"
        assert ledger.meta.host_shares == {"17": [1, 3]}
        assert ledger.meta.session_stats == {"items": 5, "errors": {}}
        assert ledger.meta.planned is None


def test_values_are_stored_under_the_keys_and_json_of_earlier_versions(tmp_path: Path) -> None:
    files = ledger_paths(tmp_path / "l.sqlite")
    with Ledger(files) as ledger:
        ledger.meta.fingerprint = {"b": 1, "a": [2]}
        ledger.meta.host_shares = {"9": [1, 2]}
    assert _raw(files.db) == {
        "fingerprint": json.dumps({"a": [2], "b": 1}),  # sorted keys
        "host_shares": '{"9": [1, 2]}',
    }
    # A ledger written by an earlier version (raw keys) reads the same.
    with sqlite3.connect(files.db) as db:
        db.execute("INSERT INTO meta VALUES ('planned', 'true'), ('extras_schema', '\"abc\"')")
    with Ledger(files) as ledger:
        assert ledger.meta.planned is True and ledger.meta.extras_schema == "abc"


def test_the_keys_are_declared_on_the_class() -> None:
    keys = {name for name, value in vars(Meta).items() if hasattr(value, "__set_name__")}
    assert keys == {"fingerprint", "planned", "extras_schema", "host_shares", "session_stats"}
    assert Meta.fingerprint.name == "fingerprint"


def test_a_plan_records_planned_and_its_shares_with_its_spans(tmp_path: Path) -> None:
    files = ledger_paths(tmp_path / "l.sqlite")
    host = 5 << 57
    with Ledger(files) as ledger:
        ledger.begin_plan()
        batch = to_batch({"item_id": [1, 2], "host_id": [host, host], "url": ["a", "b"]}, 2)
        ledger.insert_planned({(host, "h")}, [(batch, np.arange(2))], extras_schema="")
        assert ledger.meta.extras_schema == "" and ledger.meta.planned is None
        assert ledger.finish_plan(host_shares={str(host): [1, 2]}) == 2
        assert ledger.meta.planned is True
        assert ledger.meta.host_shares == {str(host): [1, 2]}
    with Ledger(files) as ledger:  # insert_items is a whole plan too
        ledger.insert_items([PlannedItem(3, host, "h", "c", None)])
        assert ledger.meta.planned is True and ledger.counts().total == 3
