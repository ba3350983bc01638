"""The rank's ledger: its work queue and the truth about what is committed.

Two files. The planned items are an Arrow file written once by planning and never changed
(:mod:`fetchshard.itemfile`: sorted by host, so a host's items are one run of rows). The SQLite
database holds the rest: the hosts and where their rows lie, meta, and an item's state
once it differs from "planned, never tried": retried, deferred or committed (``states``).

An item is ``pending`` until the part file holding its terminal row has been renamed into
place *and* the transaction that records it as committed has landed. Nothing else is ever
written about an item that matters for exactly-once: in-flight work lives in memory and is
simply redone after a crash.

Commits are appended to the ``done`` log rather than written to ``states``: item ids are
hashes, so every row would dirty its own page of the table and of its index (~50 CPU µs per
row, journal and fsync included; appending costs ~4). The log is folded into ``states``
before a scheduler reads the queue from its start.

``--retry-failed`` puts committed failures back in the queue (:meth:`Ledger.requeue`). Their
rows stay where they are and remain the items' current rows until a new terminal row is
committed; the fold then records the old (item, part) pair in ``superseded``. An item's
current row is the one in the part ``states`` (or the newest ``done`` entry) names: readers
get the pairs to skip from :func:`read_superseded`.

The journal mode is DELETE (not WAL): WAL needs every reader on the same host, and a rank's
ledger may sit on NFS or Lustre while ``report`` runs elsewhere.
"""

from __future__ import annotations

import bisect
import contextlib
import heapq
import itertools
import json
import shutil
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from fetchshard.itemfile import COLUMNS as ITEM_COLUMNS
from fetchshard.itemfile import ItemFile, Span, Stage, to_batch
from fetchshard.partition import BadUrl, normalize_url
from fetchshard.runfolder.layout import items_file, plan_scratch

PENDING = 0
COMMITTED = 1
DEFERRED = 2  # transient failures kept for the final pass at the end of the slice
# Items that never reach the network (bad URLs) live under this host id.
NO_HOST = 0

# 2: items.fetch_url; 3: the ``done`` log; 4: planned items in the items file, ``states``
# for the rest; 5: ``superseded``. Older ledgers are brought up to date when opened.
SCHEMA_VERSION = 5

_SCHEMA = """
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


@dataclass(frozen=True, slots=True)
class PlannedItem:
    item_id: int
    host_id: int
    host: str
    url: str  # the input's text, as the output shows it
    extras: str | None  # JSON of the extra input columns, decoded by the writer
    error_kind: str | None = None  # set for items that fail before fetching (bad_url)
    error_message: str | None = None
    fetch_url: str | None = None  # normalize_url(url).url when that differs from url


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One pending item as the scheduler hands it to a fetcher (or back, to retry)."""

    item_id: int
    url: str
    extras: str | None
    attempts: int
    next_attempt_at: float
    error_kind: str | None
    error_message: str | None
    http_status: int | None
    fetch_url: str | None  # what to request when it is not ``url`` itself (normalized)
    host_id: int


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    committed: int
    pending: int
    failed: int


_BUSY_TIMEOUT = 300.0  # seconds

_STATE_COLUMNS = (
    "item_id, url, extras, attempts, next_attempt_at, error_kind, error_message, http_status, "
    "fetch_url, host_id"
)
_HINTS = 1 << 16  # hosts whose read position is remembered


def _fresh_item(row: tuple[Any, ...]) -> WorkItem:
    item, host, url, fetch_url, extras, kind, message = row
    return WorkItem(item, url, extras, 0, 0.0, kind, message, None, fetch_url, host)


class Ledger:
    """One rank's ledger; a plain synchronous sqlite3 connection (fast, local calls).

    Longer than our usual class, on purpose: every write shares one connection and its
    transaction discipline, and the queue's reads share caches (the items file, each host's
    spans and read position) that planning and folding must reset. Its sections — meta,
    planning, scheduling, commit, reading — are marked below; migration lives outside.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        # The part writer's thread commits through a connection of its own; a lock held by one
        # side for a commit's fsyncs (or a long fold) makes the other wait, not fail.
        self._db = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT
        )
        self._db.execute("PRAGMA journal_mode=DELETE")
        self._db.execute("PRAGMA synchronous=FULL")
        # 16 MiB: a larger cache only made RSS grow with the slice.
        self._db.execute("PRAGMA cache_size=-16384")
        self._db.executescript(_SCHEMA)
        self._stage: Stage | None = None
        self._items: ItemFile | None = None
        self._hints: dict[int, tuple[int, int]] = {}  # host_id -> (last id read, next row)
        self._spans: dict[int, list[tuple[int, int]]] = {}  # host_id -> its runs of rows
        _migrate(self)
        # Whether ``states`` has rows: while it has none (a first run until something is
        # retried or committed and folded), reading fresh items needs no query of it. Only
        # the rank's own connection writes ``states`` (the part writer's appends to ``done``).
        self._any_states = self._scalar("SELECT EXISTS (SELECT 1 FROM states)") == 1
        self._host_seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM hosts") or 0

    def close(self) -> None:
        if self._stage is not None:
            self.discard_plan()
        if self._items is not None:
            self._items.close()
            self._items = None
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction: committed at the end of the block, rolled back on any error."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self._db.execute(sql, params).fetchone()
        return None if row is None else row[0]

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> Any:
        raw = self._scalar("SELECT value FROM meta WHERE key = ?", (key,))
        return None if raw is None else json.loads(raw)

    def set_meta(self, key: str, value: Any) -> None:
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value, sort_keys=True)),
        )

    # -- planning ---------------------------------------------------------------------------
    #
    # Planned rows are staged (itemfile.Stage, without fsync: a crash restarts planning,
    # which deletes the stage) and become the items file in finish_plan. Hosts and meta go to
    # SQLite, one transaction per batch; the spans, in the transaction that ends the plan.

    def begin_plan(self) -> None:
        """Stage the items of :meth:`insert_planned` until :meth:`finish_plan`."""
        self.discard_plan()
        self._stage = Stage(plan_scratch(self.path))

    def finish_plan(self, *, meta: dict[str, Any] | None = None) -> int:
        """Write the staged items as the items file and record where each host's rows lie,
        with ``meta``, in one transaction; return how many items there are. The first staged
        row of an item id wins."""
        if self._stage is None:
            raise RuntimeError("finish_plan without begin_plan")
        if self._items is not None:
            self._items.close()
            self._items = None
        self._hints.clear()
        self._spans.clear()
        spans, rows = self._stage.finish(items_file(self.path))
        with self._transaction():
            self._write_spans(spans)
            for key, value in (meta or {}).items():
                self.set_meta(key, value)
        self.discard_plan()
        return rows

    def _write_spans(self, spans: list[Span]) -> None:
        self._db.execute("DELETE FROM spans")
        self._db.executemany(
            "INSERT INTO spans (host_id, first, count) VALUES (?, ?, ?)",
            [(s.host_id, s.first, s.count) for s in spans],
        )

    def discard_plan(self) -> None:
        """Drop the staged items (if any) and their scratch folder."""
        if self._stage is not None:
            self._stage.discard()
            self._stage = None
        else:  # left by a crash
            shutil.rmtree(plan_scratch(self.path), ignore_errors=True)

    def insert_items(
        self, items: Sequence[PlannedItem], *, meta: dict[str, Any] | None = None
    ) -> int:
        """Plan ``items`` in one go, after the items planned before (first of an id wins);
        return how many items the ledger then holds."""
        self.begin_plan()
        try:
            assert self._stage is not None
            before = 0
            items_now = self._item_file()
            if items_now is not None:
                for batch in items_now.read_all().to_batches():
                    self._stage.add(batch, np.arange(before, before + batch.num_rows))
                    before += batch.num_rows
            columns = {name: [getattr(it, name) for it in items] for name in ITEM_COLUMNS}
            hosts = {(it.host_id, it.host) for it in items}
            positions = np.arange(before, before + len(items))
            self.insert_planned(hosts, [(to_batch(columns, len(items)), positions)])
            return self.finish_plan(meta=meta)
        finally:
            self.discard_plan()

    def insert_planned(
        self,
        hosts: Collection[tuple[int, str]],
        batches: Sequence[tuple[pa.RecordBatch, np.ndarray]],
        *,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Stage the rows of one planning batch (:data:`itemfile.SCHEMA`, with each row's
        input row number: of repeated item ids the lowest wins); return how many.

        ``hosts`` holds the (host_id, host) pairs of the batch: those not yet known get the
        next ``seq`` numbers in host order, in one transaction with ``meta``.
        """
        if self._stage is None:
            raise RuntimeError("insert_planned without begin_plan")
        db = self._db
        try:
            with self._transaction():
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
                for key, value in (meta or {}).items():
                    self.set_meta(key, value)
        except BaseException:
            # The host numbers handed out in the failed batch are free again.
            self._host_seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM hosts") or 0
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

    # -- scheduling -------------------------------------------------------------------------

    def items_missing(self) -> bool:
        """Whether the plan records items whose file is gone (deleted or never copied)."""
        has_items = self._scalar("SELECT EXISTS (SELECT 1 FROM spans)") == 1
        return has_items and not items_file(self.path).exists()

    def _item_file(self) -> ItemFile | None:
        if self._items is None:
            path = items_file(self.path)
            if not path.exists():
                return None
            self._items = ItemFile(path)
        return self._items

    def _runs(self, host_id: int) -> list[tuple[int, int]]:
        """The (first row, count) runs of a host's rows in the items file, in item id order."""
        runs = self._spans.get(host_id)
        if runs is None:
            rows = self._db.execute(
                "SELECT first, count FROM spans WHERE host_id = ? ORDER BY first", (host_id,)
            )
            if len(self._spans) >= _HINTS:
                self._spans.clear()
            runs = self._spans[host_id] = [(r[0], r[1]) for r in rows]
        return runs

    def _fresh(
        self, host_id: int, after: int | None, limit: int, *, remember: bool = True
    ) -> list[WorkItem]:
        """Up to ``limit`` planned items of a host never tried, by id after ``after``
        (``remember``: where they end, so the next read goes on from there at once)."""
        runs = self._runs(host_id)
        file = self._item_file()
        if not runs or file is None or limit <= 0:
            return []
        hint = self._hints.get(host_id)
        if after is None:
            position = runs[0][0]
        elif hint is not None and hint[0] == after:
            position = hint[1]
        else:  # the first row with a larger id: runs are in id order, each sorted by id
            position = runs[-1][0] + runs[-1][1]
            for first, count in runs:
                found = file.find(first, count, after)
                if found < first + count:
                    position = found
                    break
        out: list[WorkItem] = []
        run = bisect.bisect_right(runs, (position, float("inf"))) - 1
        while run < len(runs) and len(out) < limit:
            first, count = runs[run]
            position = max(position, first)
            stop = first + count
            if position >= stop:
                run += 1
                continue
            end = min(stop, position + max(limit - len(out), 16))
            rows = list(file.rows(position, end))
            touched = self._touched([row[0] for row in rows])
            for row in rows:
                position += 1
                if row[0] not in touched:
                    out.append(_fresh_item(row))
                    if len(out) == limit:
                        break
        if remember and out:
            if len(self._hints) >= _HINTS:
                self._hints.clear()
            self._hints[host_id] = (out[-1].item_id, position)
        elif remember:
            self._hints.pop(host_id, None)
        return out

    def _touched(self, ids: list[int]) -> set[int]:
        """Which of ``ids`` have a state (so they are not fresh)."""
        found: set[int] = set()
        if not self._any_states:
            return found
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT item_id FROM states WHERE item_id IN ({marks})", chunk)
            found.update(r[0] for r in rows)
        return found

    def hosts_after(self, seq: int, limit: int) -> list[tuple[int, int, str]]:
        """The next hosts (seq, host_id, host) in planning order, for activating hosts."""
        rows = self._db.execute(
            "SELECT seq, host_id, host FROM hosts WHERE seq > ? ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def ready_items(
        self, host_id: int, after: tuple[float, int], now: float, limit: int
    ) -> list[WorkItem]:
        """Pending items of one host that are due, in (next_attempt_at, item_id) order after a
        cursor, so items already handed out (in flight, or in the open part) are not seen again.

        Items never tried are due at 0; the others come from ``states``."""
        retried = self._pending_states(
            "AND (next_attempt_at, item_id) > (?, ?) AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, item_id LIMIT ?",
            (host_id, after[0], after[1], now, limit),
        )
        fresh: list[WorkItem] = []
        if after[0] <= 0.0 <= now:
            fresh = self._fresh(host_id, after[1] if after[0] == 0.0 else None, limit)
        if not retried:
            return fresh
        merged = heapq.merge(fresh, retried, key=lambda w: (w.next_attempt_at, w.item_id))
        return list(itertools.islice(merged, limit))

    def next_due(self, host_id: int, after: tuple[float, int]) -> float | None:
        """When the first pending item of a host after the cursor becomes due, if any."""
        first = self._pending_states(
            "AND (next_attempt_at, item_id) > (?, ?) ORDER BY next_attempt_at, item_id LIMIT 1",
            (host_id, after[0], after[1]),
        )
        due = first[0].next_attempt_at if first else None
        if (due is None or due > 0.0) and after[0] <= 0.0:
            after_id = after[1] if after[0] == 0.0 else None
            if self._fresh(host_id, after_id, 1, remember=False):
                due = 0.0
        return due

    def pending_without_host(self, limit: int, after: int) -> list[WorkItem]:
        """Items that fail without fetching (bad URLs), by item id after ``after``."""
        retried = self._pending_states(
            "AND item_id > ? ORDER BY item_id LIMIT ?", (NO_HOST, after, limit)
        )
        fresh = self._fresh(NO_HOST, after, limit)
        merged = heapq.merge(fresh, retried, key=lambda w: w.item_id)
        return list(itertools.islice(merged, limit))

    def _pending_states(self, where: str, params: Sequence[Any]) -> list[WorkItem]:
        """Pending items of a host (the first parameter) with a state, ``where`` the rest."""
        if not self._any_states:
            return []
        rows = self._db.execute(
            f"SELECT {_STATE_COLUMNS} FROM states WHERE host_id = ? AND state = 0 {where}", params
        )
        return [WorkItem(*r) for r in rows]

    def release(self, items: Iterable[WorkItem]) -> None:
        """Put transient failures back in the queue with their attempt count and due time."""
        self._set_pending(items, state=PENDING)

    def defer(self, items: Iterable[WorkItem]) -> None:
        """Set transient failures aside for the final pass (they leave the main queue)."""
        self._set_pending(items, state=DEFERRED)

    def _set_pending(self, items: Iterable[WorkItem], *, state: int) -> None:
        # Only an item still pending changes: a committed or deferred one keeps its state.
        self._any_states = True
        with self._transaction():
            self._db.executemany(
                "INSERT INTO states (item_id, host_id, state, attempts, next_attempt_at, "
                "error_kind, error_message, http_status, url, fetch_url, extras) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id) DO UPDATE SET "
                "state = excluded.state, attempts = excluded.attempts, "
                "next_attempt_at = excluded.next_attempt_at, error_kind = excluded.error_kind, "
                "error_message = excluded.error_message, http_status = excluded.http_status "
                "WHERE states.state = 0",
                [
                    (
                        w.item_id,
                        w.host_id,
                        state,
                        w.attempts,
                        w.next_attempt_at,
                        w.error_kind,
                        w.error_message,
                        w.http_status,
                        w.url,
                        w.fetch_url,
                        w.extras,
                    )
                    for w in items
                ],
            )

    def reopen_deferred(self, at: float) -> int:
        """Put every deferred item back in the queue, due at ``at``; return how many."""
        cur = self._db.execute(
            "UPDATE states SET state = 0, next_attempt_at = ? WHERE state = 2", (at,)
        )
        return cur.rowcount

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
        with self._transaction():
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
        with self._transaction():
            # Rows a newer commit replaces (only items put back by requeue have an older one).
            db.execute(f"INSERT OR IGNORE INTO superseded (part, item_id) {_SUPERSEDED_BY_DONE}")
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
        self._any_states = self._any_states or folded > 0
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
        file = self._item_file()
        if not len(ids) or file is None:
            return 0
        self.fold_commits()
        requeued = 0
        with self._transaction():
            for batch in file.batches():
                found = np.isin(batch.column(0).to_numpy(), ids, assume_unique=True)
                if not found.any():
                    continue
                rows = batch.filter(pa.array(found))
                item, host, url, fetch_url, extras, kind, message = (
                    c.to_pylist() for c in rows.columns
                )
                cur = self._db.executemany(
                    "UPDATE states SET state = 0, host_id = ?, attempts = 0, "
                    "next_attempt_at = 0, error_kind = ?, error_message = ?, "
                    "http_status = NULL, url = ?, fetch_url = ?, extras = ? "
                    "WHERE item_id = ? AND state = 1",
                    zip(host, kind, message, url, fetch_url, extras, item, strict=True),
                )
                requeued += cur.rowcount
        self._any_states = True
        self._hints.clear()
        return requeued

    def committed_parts(self) -> set[int]:
        return {r[0] for r in self._db.execute("SELECT part FROM parts")}

    # -- reading ----------------------------------------------------------------------------

    def counts(self) -> Counts:
        return _counts(self._db)

    def error_counts(self) -> dict[str, int]:
        """Committed failures by error kind."""
        return _error_counts(self._db)


def _fetch_url(host_id: int, url: str) -> str | None:
    if host_id == NO_HOST:
        return None
    try:
        fetch_url = normalize_url(url).url
    except BadUrl:
        return None
    return fetch_url if fetch_url != url else None


# -------------------------------------------------------------------- older ledgers


def _migrate(ledger: Ledger) -> None:
    """Bring a ledger of schema version 1 to 3 (every item a row of ``items``) up to date:
    its items become the items file, and those not "planned, never tried" get a state."""
    db = ledger._db
    old = ledger._scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'items'")
    if old is None:
        return
    if "fetch_url" not in {r[1] for r in db.execute("PRAGMA table_info(items)")}:
        with ledger._transaction():  # version 1: derive fetch_url as planning does
            db.execute("ALTER TABLE items ADD COLUMN fetch_url TEXT")
            updates = [
                (fetch_url, item)
                for item, host, url in db.execute("SELECT item_id, host_id, url FROM items")
                if (fetch_url := _fetch_url(host, url)) is not None
            ]
            db.executemany("UPDATE items SET fetch_url = ? WHERE item_id = ?", updates)
    # A crash before the last transaction leaves ``items`` in place: this runs again.
    ledger.begin_plan()
    assert ledger._stage is not None
    cursor = db.execute(f"SELECT {', '.join(ITEM_COLUMNS)} FROM items")
    staged = 0
    while rows := cursor.fetchmany(65536):
        columns = dict(zip(ITEM_COLUMNS, zip(*rows, strict=True), strict=True))
        ledger._stage.add(to_batch(columns, len(rows)), np.arange(staged, staged + len(rows)))
        staged += len(rows)
    spans, _ = ledger._stage.finish(items_file(ledger.path))
    with ledger._transaction():
        db.execute(
            "INSERT INTO states (item_id, host_id, state, attempts, next_attempt_at, "
            "error_kind, error_message, http_status, part, url, fetch_url, extras) "
            "SELECT item_id, host_id, state, attempts, next_attempt_at, error_kind, "
            "error_message, http_status, part, url, fetch_url, extras FROM items "
            "WHERE NOT (state = 0 AND attempts = 0 AND next_attempt_at = 0)"
        )
        ledger._write_spans(spans)
        db.execute("DROP TABLE items")
    ledger.discard_plan()
    ledger._spans.clear()


# -------------------------------------------------------------------- read-only, any process


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


def _counts(db: sqlite3.Connection) -> Counts:
    total, committed, failed = db.execute(
        "SELECT (SELECT COALESCE(SUM(count), 0) FROM spans), "
        "(SELECT COUNT(*) FROM states WHERE state = 1) + (SELECT COUNT(*) FROM done), "
        "(SELECT COUNT(*) FROM states WHERE state = 1 AND error_kind IS NOT NULL) "
        "+ (SELECT COUNT(*) FROM done WHERE error_kind IS NOT NULL)"
    ).fetchone()
    return Counts(total=total, committed=committed, pending=total - committed, failed=failed)


def _error_counts(db: sqlite3.Connection) -> dict[str, int]:
    rows = db.execute(
        "SELECT error_kind, COUNT(*) FROM (SELECT error_kind FROM states WHERE state = 1 "
        "UNION ALL SELECT error_kind FROM done) WHERE error_kind IS NOT NULL "
        "GROUP BY error_kind"
    )
    return {kind: count for kind, count in rows}


# (part, item_id) of rows replaced by a commit still in the ``done`` log: the item's row
# recorded in ``states``, or an older entry of the log itself.
_SUPERSEDED_BY_DONE = (
    "SELECT s.part, d.item_id FROM done d JOIN states s ON s.item_id = d.item_id "
    "WHERE s.part IS NOT NULL AND s.part != d.part "
    "UNION SELECT a.part, a.item_id FROM done a JOIN done b ON a.item_id = b.item_id "
    "AND a.part < b.part"
)


def read_superseded(path: Path, *, timeout: float = 10.0) -> dict[int, np.ndarray]:
    """Part number -> sorted ids of the rows in it that are no longer their item's current
    row (replaced after ``--retry-failed``); parts without such rows are absent."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        db.execute("BEGIN")
        # A ledger no rank of version 5 or later has opened has no such table (nor rows).
        recorded = ""
        if _has_table(db, "superseded"):
            recorded = "SELECT part, item_id FROM superseded UNION "
        pairs = db.execute(f"{recorded}{_SUPERSEDED_BY_DONE} ORDER BY 1, 2").fetchall()
        db.execute("COMMIT")
    finally:
        db.close()
    out: dict[int, list[int]] = {}
    for part, item in pairs:
        out.setdefault(part, []).append(item)
    return {part: np.array(items, dtype=np.int64) for part, items in out.items()}


def read_without_row(
    path: Path, lost_parts: Collection[int] = (), *, timeout: float = 10.0
) -> pa.Table:
    """The planned items (item_id, url, reason) with no current row: ``pending`` (never
    committed) or ``missing_part`` (their row is in one of ``lost_parts``)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        db.execute("BEGIN")
        latest: dict[int, int] = {}  # item -> part of its current row
        for item, part in db.execute(
            "SELECT item_id, part FROM states WHERE part IS NOT NULL "
            "UNION ALL SELECT item_id, part FROM done ORDER BY 2"
        ):
            latest[item] = part
        db.execute("COMMIT")
    finally:
        db.close()
    lost = set(lost_parts)
    ids: list[int] = []
    urls: list[str] = []
    reasons: list[str] = []
    file = items_file(path)
    if file.exists():
        reader = ItemFile(file)
        try:
            for batch in reader.batches():
                for item, url in zip(
                    batch.column(0).to_pylist(), batch.column(2).to_pylist(), strict=True
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


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def read_summary(path: Path, *, timeout: float = 10.0) -> LedgerSummary:
    """Counts and parts of a ledger, through a read-only connection (safe while its rank runs:
    the reads are one short transaction, during which the rank's commit waits)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout, isolation_level=None)
    try:
        db.execute("BEGIN")  # one snapshot for the three reads
        summary = LedgerSummary(
            counts=_counts(db),
            errors=_error_counts(db),
            parts=[
                PartRecord(part, rows, nbytes, committed_at)
                for part, rows, nbytes, committed_at in db.execute(
                    "SELECT part, rows, bytes, committed_at FROM parts ORDER BY part"
                )
            ],
        )
        db.execute("COMMIT")
        return summary
    finally:
        db.close()
