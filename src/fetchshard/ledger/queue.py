"""The rank's work queue: which pending items of a host are due, read from the items file
(planned, never tried) and from ``states`` (retried or deferred), and the writes that put a
fetched item back (:meth:`Queue.release`, :meth:`Queue.defer`, :meth:`Queue.reopen_deferred`).

The scheduler reads a host's items in (next_attempt_at, item_id) order through a cursor;
items never tried are due at 0 and come from the file, where a host's rows are a few runs,
each sorted by id. A host's read position is remembered, so the next read goes on from there
at once instead of searching the runs again.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from fetchshard.ledger.items import NO_HOST, STATE_COLUMNS, ItemFile, WorkItem
from fetchshard.ledger.sql import DEFERRED, PENDING, scalar, transaction

_HINTS = 1 << 16  # hosts whose read position is remembered


class Queue:
    """The queue over a ledger's connection and its items file."""

    def __init__(self, db: sqlite3.Connection, items: Path) -> None:
        self._db = db
        self._path = items
        self._file: ItemFile | None = None
        self._hints: dict[int, tuple[int, int]] = {}  # host_id -> (last id read, next row)
        self._spans: dict[int, list[tuple[int, int]]] = {}  # host_id -> its runs of rows
        # Whether ``states`` has rows: while it has none (a first run until something is
        # retried or committed and folded), reading fresh items needs no query of it. Only
        # the rank's own connection writes ``states`` (the part writer's appends to ``done``).
        self._any_states = scalar(db, "SELECT EXISTS (SELECT 1 FROM states)") == 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def reset(self) -> None:
        """Forget what was read: the items file was replaced (a plan) or items were requeued."""
        self.close()
        self._hints.clear()
        self._spans.clear()

    def saw_states(self) -> None:
        """``states`` has rows now (written by a fold or a requeue)."""
        self._any_states = True

    def item_file(self) -> ItemFile | None:
        """The items file, open (None before a plan has written it)."""
        if self._file is None:
            if not self._path.exists():
                return None
            self._file = ItemFile(self._path)
        return self._file

    # -- reading ----------------------------------------------------------------------------

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
        file = self.item_file()
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
            items = list(file.fresh(position, end))
            touched = self._touched([w.item_id for w in items])
            for item in items:
                position += 1
                if item.item_id not in touched:
                    out.append(item)
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

    def _pending_states(self, where: str, params: Sequence[Any]) -> list[WorkItem]:
        """Pending items of a host (the first parameter) with a state, ``where`` the rest."""
        if not self._any_states:
            return []
        rows = self._db.execute(
            f"SELECT {STATE_COLUMNS} FROM states WHERE host_id = ? AND state = 0 {where}", params
        )
        return [WorkItem(*r) for r in rows]

    # -- writing ----------------------------------------------------------------------------

    def release(self, items: Iterable[WorkItem]) -> None:
        """Put transient failures back in the queue with their attempt count and due time."""
        self._set_pending(items, state=PENDING)

    def defer(self, items: Iterable[WorkItem]) -> None:
        """Set transient failures aside for the final pass (they leave the main queue)."""
        self._set_pending(items, state=DEFERRED)

    def _set_pending(self, items: Iterable[WorkItem], *, state: int) -> None:
        # Only an item still pending changes: a committed or deferred one keeps its state.
        self._any_states = True
        with transaction(self._db):
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
