"""The rank's ledger: its work queue and the truth about what is committed.

Two files, both handed to it (:class:`LedgerFiles`: the run folder's layout names them). The
planned items are an Arrow file written once by planning and never changed
(:mod:`fetchshard.ledger.items`: sorted by host, so a host's items are one run of rows). The
SQLite database (:mod:`fetchshard.ledger.sql`) holds the rest: the hosts and where their rows
lie, meta (:mod:`fetchshard.ledger.meta`), and an item's state once it differs from "planned,
never tried": retried, deferred or committed (``states``).

An item is ``pending`` until the part file holding its terminal row has been renamed into
place *and* the transaction that records it as committed has landed. Nothing else is ever
written about an item that matters for exactly-once: in-flight work lives in memory and is
simply redone after a crash.

Commits are appended to the ``done`` log rather than written to ``states``: item ids are
hashes, so every row would dirty its own page of the table and of its index (~50 CPU µs per
row, journal and fsync included; appending costs ~4). The log is folded into ``states``
before a scheduler reads the queue (:mod:`fetchshard.ledger.queue`) from its start.

``--retry-failed`` puts committed failures back in the queue (:meth:`Ledger.requeue`). Their
rows stay where they are and remain the items' current rows until a new terminal row is
committed; the fold then records the old (item, part) pair in ``superseded``. An item's
current row is the one in the part ``states`` (or the newest ``done`` entry) names: readers
get the pairs to skip from :func:`fetchshard.ledger.readonly.read_superseded`.

The journal mode is DELETE (not WAL): WAL needs every reader on the same host, and a rank's
ledger may sit on NFS or Lustre while ``report`` runs elsewhere.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from fetchshard.ledger.items import ITEM_COLUMNS, NO_HOST, PlannedItem, Stage, to_batch
from fetchshard.ledger.meta import HostShares, Meta
from fetchshard.ledger.migrate import migrate
from fetchshard.ledger.queue import Queue
from fetchshard.ledger.sql import (
    SCHEMA,
    SUPERSEDED_BY_DONE,
    Counts,
    count_errors,
    count_items,
    scalar,
    transaction,
    write_spans,
)

_BUSY_TIMEOUT = 300.0  # seconds


class LedgerFiles(Protocol):
    """Where a ledger's files are (``runfolder.layout.LedgerPaths`` is one)."""

    @property
    def db(self) -> Path: ...  # the SQLite database

    @property
    def items(self) -> Path: ...  # the planned items, written once by planning

    @property
    def scratch(self) -> Path: ...  # planning's folder, on the items file's filesystem


class Ledger:
    """One rank's ledger; a plain synchronous sqlite3 connection (fast, local calls).

    Its parts share the connection and its transaction discipline: :attr:`meta` (the typed
    keys), :attr:`queue` (what the scheduler reads, and the writes that put items back),
    and here planning (the items file and where each host's rows lie) and the commit log.
    """

    def __init__(self, files: LedgerFiles) -> None:
        files.db.parent.mkdir(parents=True, exist_ok=True)
        self.files = files
        self.path = files.db  # the SQLite file (messages, the read-only readers)
        # The part writer's thread commits through a connection of its own; a lock held by one
        # side for a commit's fsyncs (or a long fold) makes the other wait, not fail.
        self._db = sqlite3.connect(
            files.db, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT
        )
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA synchronous=FULL")
        # 16 MiB: a larger cache only made RSS grow with the slice.
        self._db.execute("PRAGMA cache_size=-16384")
        self._db.executescript(SCHEMA)
        self._stage: Stage | None = None
        migrate(self._db, files.items, files.scratch)
        self.meta = Meta(self._db)
        self.queue = Queue(self._db, files.items)
        self._host_seq = scalar(self._db, "SELECT COALESCE(MAX(seq), 0) FROM hosts") or 0

    def close(self) -> None:
        if self._stage is not None:
            self.discard_plan()
        self.queue.close()
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- planning ---------------------------------------------------------------------------
    #
    # Planned rows are staged (items.Stage, without fsync: a crash restarts planning, which
    # deletes the stage) and become the items file in finish_plan. Hosts and meta go to
    # SQLite, one transaction per batch; the spans, in the transaction that ends the plan.

    def begin_plan(self) -> None:
        """Stage the items of :meth:`insert_planned` until :meth:`finish_plan`."""
        self.discard_plan()
        self._stage = Stage(self.files.scratch)

    def finish_plan(self, *, host_shares: HostShares | None = None) -> int:
        """Write the staged items as the items file and record where each host's rows lie,
        that the plan is complete (``meta.planned``) and ``host_shares``, in one transaction;
        return how many items there are. The first staged row of an item id wins."""
        if self._stage is None:
            raise RuntimeError("finish_plan without begin_plan")
        self.queue.reset()
        spans, rows = self._stage.finish(self.files.items)
        with transaction(self._db):
            write_spans(self._db, spans)
            self.meta.planned = True
            if host_shares is not None:
                self.meta.host_shares = host_shares
        self.discard_plan()
        return rows

    def discard_plan(self) -> None:
        """Drop the staged items (if any) and their scratch folder."""
        if self._stage is not None:
            self._stage.discard()
            self._stage = None
        else:  # left by a crash
            shutil.rmtree(self.files.scratch, ignore_errors=True)

    def insert_items(self, items: Sequence[PlannedItem]) -> int:
        """Plan ``items`` in one go, after the items planned before (first of an id wins);
        return how many items the ledger then holds."""
        self.begin_plan()
        try:
            assert self._stage is not None
            before = 0
            items_now = self.queue.item_file()
            if items_now is not None:
                for batch in items_now.read_all().to_batches():
                    self._stage.add(batch, np.arange(before, before + batch.num_rows))
                    before += batch.num_rows
            columns = {name: [getattr(it, name) for it in items] for name in ITEM_COLUMNS}
            hosts = {(it.host_id, it.host) for it in items}
            positions = np.arange(before, before + len(items))
            self.insert_planned(hosts, [(to_batch(columns, len(items)), positions)])
            return self.finish_plan()
        finally:
            self.discard_plan()

    def insert_planned(
        self,
        hosts: Collection[tuple[int, str]],
        batches: Sequence[tuple[pa.RecordBatch, np.ndarray]],
        *,
        extras_schema: str | None = None,
    ) -> int:
        """Stage the rows of one planning batch (:data:`items.ITEM_SCHEMA`, with each row's
        input row number: of repeated item ids the lowest wins); return how many.

        ``hosts`` holds the (host_id, host) pairs of the batch: those not yet known get the
        next ``seq`` numbers in host order, in one transaction with ``extras_schema`` (the
        first batch's: the input's extra columns, serialized) when given.
        """
        if self._stage is None:
            raise RuntimeError("insert_planned without begin_plan")
        db = self._db
        try:
            with transaction(db):
                hosts = {h for h in hosts if h[0] != NO_HOST}
                if hosts:
                    known = self._known_hosts([h for h, _ in hosts])
                    new_hosts = []
                    for host_id, host in sorted(hosts, key=lambda h: h[1]):
                        if host_id not in known:
                            self._host_seq += 1
                            new_hosts.append((host_id, host, self._host_seq))
                    db.executemany(
                        "INSERT OR IGNORE INTO hosts (host_id, host, seq) VALUES (?, ?, ?)",
                        new_hosts,
                    )
                if extras_schema is not None:
                    self.meta.extras_schema = extras_schema
        except BaseException:
            # The host numbers handed out in the failed batch are free again.
            self._host_seq = scalar(db, "SELECT COALESCE(MAX(seq), 0) FROM hosts") or 0
            raise
        for batch, positions in batches:
            self._stage.add(batch, positions)
        return sum(batch.num_rows for batch, _ in batches)

    def _known_hosts(self, host_ids: list[int]) -> set[int]:
        known: set[int] = set()
        for start in range(0, len(host_ids), 500):
            chunk = host_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT host_id FROM hosts WHERE host_id IN ({marks})", chunk)
            known.update(r[0] for r in rows)
        return known

    def items_missing(self) -> bool:
        """Whether the plan records items whose file is gone (deleted or never copied)."""
        has_items = scalar(self._db, "SELECT EXISTS (SELECT 1 FROM spans)") == 1
        return has_items and not self.files.items.exists()

    # -- commit -----------------------------------------------------------------------------

    def commit_part(
        self,
        part: int,
        items: Sequence[tuple[int, int, str | None]],
        *,
        rows: int,
        nbytes: int,
        now: float,
    ) -> None:
        """Record a renamed part's items as committed, in one transaction.

        ``items`` holds (item_id, attempts, error_kind) of every row in the part.
        """
        db = self._db
        with transaction(db):
            # One statement for the whole part: no per-row binding, one GIL release.
            db.execute(
                "INSERT INTO done (item_id, part, attempts, error_kind) "
                "SELECT json_extract(value, '$[0]'), ?, json_extract(value, '$[1]'), "
                "json_extract(value, '$[2]') FROM json_each(?)",
                (part, json.dumps(items)),
            )
            db.execute(
                "INSERT OR REPLACE INTO parts (part, rows, bytes, committed_at) "
                "VALUES (?, ?, ?, ?)",
                (part, rows, nbytes, now),
            )

    def fold_commits(self) -> int:
        """Apply the ``done`` log to ``states`` (in id order) and empty it; return its length."""
        db = self._db
        with transaction(db):
            # Rows a newer commit replaces (only items put back by requeue have an older one).
            db.execute(f"INSERT OR IGNORE INTO superseded (part, item_id) {SUPERSEDED_BY_DONE}")
            mark = db.total_changes
            # "WHERE true" tells SQLite's parser the ON CONFLICT belongs to the INSERT; of two
            # entries of one item (never in one session), the later part is applied last.
            db.execute(
                "INSERT INTO states (item_id, state, part, attempts, error_kind) "
                "SELECT item_id, 1, part, attempts, error_kind FROM done WHERE true "
                "ORDER BY item_id, part ON CONFLICT (item_id) DO UPDATE SET state = 1, "
                "part = excluded.part, attempts = excluded.attempts, "
                "error_kind = excluded.error_kind, error_message = NULL, url = NULL, "
                "fetch_url = NULL, extras = NULL"
            )
            folded = db.total_changes - mark
            db.execute("DELETE FROM done")
        if folded > 0:
            self.queue.saw_states()
        return folded

    def failed_items(self, kinds: Collection[str] | None) -> np.ndarray:
        """The ids (sorted) of committed failures of ``kinds`` (None: of any kind)."""
        self.fold_commits()
        sql = "SELECT item_id FROM states WHERE state = 1 AND error_kind IS NOT NULL"
        params: list[str] = []
        if kinds is not None:
            params = sorted(kinds)
            sql += f" AND error_kind IN ({','.join('?' * len(params))})"
        ids = np.fromiter((r[0] for r in self._db.execute(sql, params)), dtype=np.int64)
        ids.sort()
        return ids

    def requeue(self, ids: np.ndarray) -> int:
        """Put committed items back in the queue as never tried, in one transaction; return
        how many. Their rows stay current until new ones are committed (the plan is kept)."""
        file = self.queue.item_file()
        if not len(ids) or file is None:
            return 0
        self.fold_commits()
        requeued = 0
        with transaction(self._db):
            for batch in file.batches():
                found = np.isin(batch.column("item_id").to_numpy(), ids, assume_unique=True)
                if not found.any():
                    continue
                rows = batch.filter(pa.array(found))
                column = {name: rows.column(name).to_pylist() for name in ITEM_COLUMNS}
                cur = self._db.executemany(
                    "UPDATE states SET state = 0, host_id = ?, attempts = 0, "
                    "next_attempt_at = 0, error_kind = ?, error_message = ?, "
                    "http_status = NULL, url = ?, fetch_url = ?, extras = ? "
                    "WHERE item_id = ? AND state = 1",
                    zip(
                        column["host_id"],
                        column["error_kind"],
                        column["error_message"],
                        column["url"],
                        column["fetch_url"],
                        column["extras"],
                        column["item_id"],
                        strict=True,
                    ),
                )
                requeued += cur.rowcount
        self.queue.saw_states()
        self.queue.reset()
        return requeued

    def committed_parts(self) -> set[int]:
        return {r[0] for r in self._db.execute("SELECT part FROM parts")}

    # -- reading ----------------------------------------------------------------------------

    def counts(self) -> Counts:
        return count_items(self._db)

    def error_counts(self) -> dict[str, int]:
        """Committed failures by error kind."""
        return count_errors(self._db)
