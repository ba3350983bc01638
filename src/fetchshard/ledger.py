"""The rank's SQLite ledger: its work queue and the truth about what is committed.

An item is ``pending`` until the part file holding its terminal row has been renamed into
place *and* the transaction that records it as committed has landed. Nothing else is ever
written about an item that matters for exactly-once: in-flight work lives in memory and is
simply redone after a crash.

Commits are appended to the ``done`` log rather than updated in place: item ids are hashes,
so updating a part's items in ``items`` dirtied a page of the table and of its index for
nearly every row (~50 CPU µs per row, journal and fsync included; appending costs ~4). The
log is folded into ``items`` before a scheduler reads the queue from its start.

The journal mode is DELETE (not WAL): WAL needs every reader on the same host, and a rank's
ledger may sit on NFS or Lustre while ``report`` runs elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetchshard.partition import BadUrl, normalize_url

PENDING = 0
COMMITTED = 1
DEFERRED = 2  # transient failures kept for the final pass at the end of the slice
# Items that never reach the network (bad URLs) live under this host id.
NO_HOST = 0

# 2: items.fetch_url (ledgers of version 1 are migrated on open); 3: the ``done`` log.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    host_id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS items (
    item_id INTEGER PRIMARY KEY,
    host_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    fetch_url TEXT,
    extras TEXT,
    state INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    error_kind TEXT,
    error_message TEXT,
    http_status INTEGER,
    part INTEGER
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS done (
    item_id INTEGER NOT NULL,
    part INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    error_kind TEXT
);
CREATE TABLE IF NOT EXISTS parts (
    part INTEGER PRIMARY KEY,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    committed_at REAL NOT NULL
);
"""


_READY_INDEX = (
    "CREATE INDEX IF NOT EXISTS items_ready ON items (host_id, state, next_attempt_at, item_id)"
)

# The columns planning writes; every other column of ``items`` starts at its default.
ITEM_COLUMNS = ("item_id", "host_id", "url", "fetch_url", "extras", "error_kind", "error_message")

# Planned items are staged here (an attached scratch database) until the plan is complete:
# appended in arrival order (no key, so no B-tree to keep sorted), sorted once at the end.
_STAGE = "plan"
_STAGE_SCHEMA = f"""
CREATE TABLE {_STAGE}.items (
    item_id INTEGER NOT NULL,
    host_id INTEGER NOT NULL,
    url TEXT NOT NULL,
    fetch_url TEXT,
    extras TEXT,
    error_kind TEXT,
    error_message TEXT
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
    """One pending item as the scheduler hands it to a fetcher."""

    item_id: int
    url: str
    extras: str | None
    attempts: int
    next_attempt_at: float
    error_kind: str | None
    error_message: str | None
    http_status: int | None
    fetch_url: str | None  # what to request when it is not ``url`` itself (normalized)


@dataclass(frozen=True, slots=True)
class Retry:
    """A transient failure released back to the queue until ``next_attempt_at``."""

    item_id: int
    attempts: int
    next_attempt_at: float
    error_kind: str
    error_message: str
    http_status: int | None


@dataclass(frozen=True, slots=True)
class Counts:
    total: int
    committed: int
    pending: int
    failed: int


_BUSY_TIMEOUT = 300.0  # seconds

_WORK_COLUMNS = (
    "item_id, url, extras, attempts, next_attempt_at, error_kind, error_message, http_status, "
    "fetch_url"
)


class Ledger:
    """One rank's ledger; a plain synchronous sqlite3 connection (fast, local calls)."""

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
        # 16 MiB: the scheduler reads by index in order; a larger cache only made RSS grow with
        # the slice (+64 MB from 100 k to 1 M URLs).
        self._db.execute("PRAGMA cache_size=-16384")
        self._db.executescript(_SCHEMA)
        self._db.execute(_READY_INDEX)
        self._migrate()
        self._staging = False
        self._host_seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM hosts") or 0

    def close(self) -> None:
        if self._staging:
            self.discard_plan()
        self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        """Bring a ledger of an older schema version up to date (in one transaction)."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(items)")}
        if "fetch_url" in columns:
            return
        db = self._db
        with self._transaction():
            db.execute("ALTER TABLE items ADD COLUMN fetch_url TEXT")
            updates = []
            rows = db.execute(
                "SELECT item_id, url FROM items WHERE host_id != ? AND state != ?",
                (NO_HOST, COMMITTED),
            )
            for item, url in rows:  # collected first, applied after the scan
                try:
                    fetch_url = normalize_url(url).url
                except BadUrl:
                    continue
                if fetch_url != url:
                    updates.append((fetch_url, item))
            db.executemany("UPDATE items SET fetch_url = ? WHERE item_id = ?", updates)

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
    # Item ids are hashes, so a batch's items land all over the ``items`` B-tree: inserted
    # directly, every batch's transaction would journal and rewrite most of the table (and
    # planning would grow quadratic). So planning stages the items in a scratch database next
    # to the ledger, written without journal or fsync (a crash restarts planning, which deletes
    # it), and :meth:`finish_plan` moves them into ``items`` in id order in one transaction.
    # Hosts and meta go to the ledger itself, one transaction per batch as before.

    @property
    def _stage_path(self) -> Path:
        return self.path.with_name(self.path.name + "-plan")

    def begin_plan(self) -> None:
        """Stage the items of :meth:`insert_planned` until :meth:`finish_plan`."""
        self.discard_plan()
        db = self._db
        db.execute(f"ATTACH DATABASE ? AS {_STAGE}", (str(self._stage_path),))
        self._staging = True
        db.execute(f"PRAGMA {_STAGE}.journal_mode=OFF")
        db.execute(f"PRAGMA {_STAGE}.synchronous=OFF")
        db.execute(f"PRAGMA {_STAGE}.cache_size=-16384")
        db.executescript(_STAGE_SCHEMA)

    def finish_plan(self, *, meta: dict[str, Any] | None = None) -> int:
        """Move the staged items into the ledger, with ``meta``, in one transaction; return
        how many are new to it. The first staged row of an item id wins, as it would have."""
        if not self._staging:
            raise RuntimeError("finish_plan without begin_plan")
        db = self._db
        columns = ", ".join(ITEM_COLUMNS)
        with self._transaction():
            # Building the index once, after the rows, beats updating it row by row.
            db.execute("DROP INDEX IF EXISTS items_ready")
            mark = db.total_changes
            # rowid breaks ties: the first staged row of an item id is the one kept.
            db.execute(
                f"INSERT OR IGNORE INTO main.items ({columns}) "
                f"SELECT {columns} FROM {_STAGE}.items ORDER BY item_id, rowid"
            )
            inserted = db.total_changes - mark
            db.execute(_READY_INDEX)
            for key, value in (meta or {}).items():
                self.set_meta(key, value)
        self.discard_plan()
        return inserted

    def discard_plan(self) -> None:
        """Drop the staged items (if any) and their scratch database."""
        if self._staging:
            self._db.execute(f"DETACH DATABASE {_STAGE}")
            self._staging = False
        self._stage_path.unlink(missing_ok=True)

    def insert_items(
        self, items: Sequence[PlannedItem], *, meta: dict[str, Any] | None = None
    ) -> int:
        """Insert a batch in one transaction (duplicates ignored); return rows new to the ledger."""
        hosts = {(it.host_id, it.host) for it in items if it.host_id != NO_HOST}
        rows = [
            (
                it.item_id,
                it.host_id,
                it.url,
                it.fetch_url,
                it.extras,
                it.error_kind,
                it.error_message,
            )
            for it in items
        ]
        return self.insert_planned(hosts, [(ITEM_COLUMNS, rows)], meta=meta)

    def insert_planned(
        self,
        hosts: Collection[tuple[int, str]],
        groups: Sequence[tuple[Sequence[str], Iterable[Sequence[Any]]]],
        *,
        meta: dict[str, Any] | None = None,
    ) -> int:
        """Insert one planning batch in one transaction; return the items new to the ledger.

        ``hosts`` holds the (host_id, host) pairs of the batch (those not yet known get the
        next ``seq`` numbers in host order). Each group is (columns, rows): columns are some of
        :data:`ITEM_COLUMNS` and rows hold their values; columns left out are NULL (cheaper than
        binding None for every row). An item already in the ledger, or earlier in the batch,
        is ignored. ``meta`` is written in the same transaction. Between :meth:`begin_plan`
        and :meth:`finish_plan` the items are staged (duplicates are dropped, and new items
        counted, by :meth:`finish_plan`), and every staged row is counted.
        """
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
                mark = db.total_changes
                table = f"{_STAGE}.items" if self._staging else "main.items"
                for columns, rows in groups:
                    unknown = set(columns) - set(ITEM_COLUMNS)
                    if unknown:
                        raise ValueError(f"not a planned item column: {sorted(unknown)}")
                    db.executemany(
                        f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})",
                        rows,
                    )
                inserted = db.total_changes - mark
                for key, value in (meta or {}).items():
                    self.set_meta(key, value)
        except BaseException:
            # The host numbers handed out in the failed batch are free again.
            self._host_seq = self._scalar("SELECT COALESCE(MAX(seq), 0) FROM hosts") or 0
            raise
        return inserted

    def _known_hosts(self, host_ids: list[int]) -> set[int]:
        known: set[int] = set()
        for start in range(0, len(host_ids), 500):
            chunk = host_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(f"SELECT host_id FROM hosts WHERE host_id IN ({marks})", chunk)
            known.update(r[0] for r in rows)
        return known

    # -- scheduling -------------------------------------------------------------------------

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
        cursor, so items already handed out (in flight, or in the open part) are not seen again."""
        rows = self._db.execute(
            f"SELECT {_WORK_COLUMNS} FROM items WHERE host_id = ? AND state = 0 "
            "AND (next_attempt_at, item_id) > (?, ?) AND next_attempt_at <= ? "
            "ORDER BY next_attempt_at, item_id LIMIT ?",
            (host_id, after[0], after[1], now, limit),
        )
        return [WorkItem(*r) for r in rows]

    def next_due(self, host_id: int, after: tuple[float, int]) -> float | None:
        """When the first pending item of a host after the cursor becomes due, if any."""
        value = self._scalar(
            "SELECT next_attempt_at FROM items WHERE host_id = ? AND state = 0 "
            "AND (next_attempt_at, item_id) > (?, ?) ORDER BY next_attempt_at, item_id LIMIT 1",
            (host_id, after[0], after[1]),
        )
        return None if value is None else float(value)

    def pending_without_host(self, limit: int, after: int) -> list[WorkItem]:
        """Items that fail without fetching (bad URLs), by item id after ``after``."""
        rows = self._db.execute(
            f"SELECT {_WORK_COLUMNS} FROM items WHERE host_id = ? AND state = 0 AND item_id > ? "
            "ORDER BY item_id LIMIT ?",
            (NO_HOST, after, limit),
        )
        return [WorkItem(*r) for r in rows]

    def release(self, retries: Iterable[Retry]) -> None:
        """Put transient failures back in the queue with their attempt count and due time."""
        self._update_pending(retries, state=PENDING)

    def _update_pending(self, retries: Iterable[Retry], *, state: int) -> None:
        db = self._db
        with self._transaction():
            db.executemany(
                "UPDATE items SET state = ?, attempts = ?, next_attempt_at = ?, error_kind = ?, "
                "error_message = ?, http_status = ? WHERE item_id = ? AND state = 0",
                [
                    (
                        state,
                        r.attempts,
                        r.next_attempt_at,
                        r.error_kind,
                        r.error_message,
                        r.http_status,
                        r.item_id,
                    )
                    for r in retries
                ],
            )

    def defer(self, retries: Iterable[Retry]) -> None:
        """Set transient failures aside for the final pass (they leave the main queue)."""
        self._update_pending(retries, state=DEFERRED)

    def reopen_deferred(self, at: float) -> int:
        """Put every deferred item back in the queue, due at ``at``; return how many."""
        cur = self._db.execute(
            "UPDATE items SET state = 0, next_attempt_at = ? WHERE state = 2", (at,)
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
        """Apply the ``done`` log to ``items`` (in id order) and empty it; return its length."""
        db = self._db
        with self._transaction():
            folded = db.execute(
                "UPDATE items SET state = 1, part = d.part, attempts = d.attempts, "
                "error_kind = d.error_kind FROM (SELECT item_id, part, attempts, error_kind "
                "FROM done ORDER BY item_id) AS d WHERE items.item_id = d.item_id"
            ).rowcount
            db.execute("DELETE FROM done")
        return folded

    def committed_parts(self) -> set[int]:
        return {r[0] for r in self._db.execute("SELECT part FROM parts")}

    # -- reading ----------------------------------------------------------------------------

    def counts(self) -> Counts:
        total, committed, failed = self._db.execute(
            "SELECT (SELECT COUNT(*) FROM items), "
            "(SELECT COUNT(*) FROM items WHERE state = 1) + (SELECT COUNT(*) FROM done), "
            "(SELECT COUNT(*) FROM items WHERE state = 1 AND error_kind IS NOT NULL) "
            "+ (SELECT COUNT(*) FROM done WHERE error_kind IS NOT NULL)"
        ).fetchone()
        return Counts(total=total, committed=committed, pending=total - committed, failed=failed)

    def error_counts(self) -> dict[str, int]:
        """Committed failures by error kind."""
        rows = self._db.execute(
            "SELECT error_kind, COUNT(*) FROM (SELECT error_kind FROM items WHERE state = 1 "
            "UNION ALL SELECT error_kind FROM done) WHERE error_kind IS NOT NULL "
            "GROUP BY error_kind"
        )
        return {kind: count for kind, count in rows}
