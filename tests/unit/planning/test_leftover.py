"""leftover.py: what a generation takes over from one rank of an earlier one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from fetchshard.ledger import NO_HOST, Ledger, PlannedItem
from fetchshard.planning.leftover import leftover
from fetchshard.planning.slicefiles import ITEMS, item_ids, item_keys
from fetchshard.runfolder.layout import ledger_paths
from fetchshard.urls import ID_MASK

HOSTS = {11: "a.example", 22: "b.example"}


def _source(tmp_path: Path) -> Path:
    """A ledger of 10 items on two hosts and a bad URL: 1-4 ok, 5 failed http_404, 6 failed
    timeout, 7 failed then requeued (--retry-failed in place), 8-10 and the bad URL never
    committed."""
    ledger = Ledger(ledger_paths(tmp_path / "rank-00000.sqlite"))
    items = [
        PlannedItem(i, 11 if i % 2 else 22, HOSTS[11 if i % 2 else 22], f"http://x/{i}", None)
        for i in range(1, 11)
    ]
    items.append(PlannedItem(100, NO_HOST, "", "bad", None, "bad_url", "no scheme"))
    ledger.insert_items(items)
    ok = [(i, 1, None) for i in range(1, 5)]
    ledger.commit_part(1, [*ok, (5, 1, "http_404"), (6, 2, "timeout")], rows=6, nbytes=1, now=0)
    ledger.commit_part(2, [(7, 1, "http_5xx")], rows=1, nbytes=1, now=0)
    ledger.requeue(np.array([7]))
    ledger.close()
    return tmp_path / "rank-00000.sqlite"


def _ids(table: pa.Table) -> list[int]:
    return sorted(item_ids(table.column("key_hash").to_numpy(), "item").tolist())


def test_the_generation_after_takes_items_without_a_row_and_the_requeued(tmp_path: Path) -> None:
    db = _source(tmp_path)
    table, carried, kept, errors = leftover(
        db, db.with_suffix(".items.arrow"), frozenset(), [], previous=True
    )
    assert table.schema == ITEMS
    assert _ids(table) == [7, 8, 9, 10, 100]
    assert carried.to_pylist() == [{"item_id": 7, "part": 2}]  # its row stays until replaced
    assert kept == 6 and errors == {}
    rows = {r["url"]: r for r in table.to_pylist()}
    assert rows["http://x/8"]["host"] == "b.example" and rows["http://x/9"]["host"] == "a.example"
    assert rows["bad"]["host"] is None and rows["bad"]["error_kind"] == "bad_url"
    for url, row in rows.items():  # the slice's hashes keep the ledger's ids in their low bits
        key = np.array([row["key_hash"]], np.uint64)
        assert item_ids(key, "item")[0] == (100 if url == "bad" else int(url.rsplit("/", 1)[1]))
        assert row["host_hash"] & ID_MASK == row["host_id"]


def test_with_retry_failed_the_chosen_failures_are_taken_with_their_rows(tmp_path: Path) -> None:
    db = _source(tmp_path)
    items = db.with_suffix(".items.arrow")
    table, carried, kept, errors = leftover(db, items, frozenset({"timeout"}), [], previous=True)
    assert _ids(table) == [6, 7, 8, 9, 10, 100]
    assert sorted(r["item_id"] for r in carried.to_pylist()) == [6, 7]
    assert kept == 5 and errors == {"timeout": 1}
    table, _, kept, errors = leftover(db, items, None, [], previous=True)  # every kind
    assert _ids(table) == [5, 6, 7, 8, 9, 10, 100]
    assert kept == 4 and errors == {"http_404": 1, "timeout": 1}


def test_an_older_generation_gives_only_failures_no_later_one_took(tmp_path: Path) -> None:
    db = _source(tmp_path)
    items = db.with_suffix(".items.arrow")
    # Its other items went to the generation after it long ago: only failures now.
    table, carried, kept, errors = leftover(db, items, None, [], previous=False)
    assert _ids(table) == [5, 6]
    assert kept == 4 and errors == {"http_404": 1, "timeout": 1}
    assert sorted(r["item_id"] for r in carried.to_pylist()) == [5, 6]
    # A retrying generation since then took the timeouts: they are its rows now.
    table, _, kept, errors = leftover(db, items, None, [frozenset({"timeout"})], previous=False)
    assert _ids(table) == [5] and kept == 4 and errors == {"http_404": 1}


def test_a_leftover_s_keys_spread_a_range_of_ids_and_give_them_back() -> None:
    """A stopped rank leaves each host's highest ids: over a heavy host's pieces (key ranges)
    the scrambled keys of such a range fall evenly."""
    top = np.arange(2**63 - 40_000, 2**63, dtype=np.uint64).astype(np.int64)
    keys = item_keys(top)
    assert (item_ids(keys, "item") == top).all()
    pieces = np.bincount((keys >> np.uint64(62)).astype(np.int64), minlength=4)
    assert pieces.min() > 0.95 * len(top) / 4  # each quarter of the key space
