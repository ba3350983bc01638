"""The ledger's ``meta`` table: every key named once, here, as a typed attribute of
:class:`Meta`.

``ledger.meta.fingerprint`` reads a key (None while it was never written) and
``ledger.meta.fingerprint = fp`` writes it, inside the caller's transaction when there is
one. Values are stored as JSON with sorted keys, as ledgers have always stored them.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

Fingerprint = dict[str, Any]  # planning.fingerprint: what the output folder's run is
HostShares = dict[str, list[int]]  # RankShares.to_json(): host id -> [numerator, denominator]
SessionStats = dict[str, Any]  # Stats.to_dict() of the rank's earlier sessions, summed


class _Key(Generic[T]):
    """One key of the table, named by the attribute that holds it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, meta: None, owner: type) -> _Key[T]: ...

    @overload
    def __get__(self, meta: Meta, owner: type) -> T | None: ...

    def __get__(self, meta: Meta | None, owner: type) -> _Key[T] | T | None:
        if meta is None:
            return self
        raw = meta.db.execute("SELECT value FROM meta WHERE key = ?", (self.name,)).fetchone()
        if raw is None:
            return None
        value: T = json.loads(raw[0])
        return value

    def __set__(self, meta: Meta, value: T) -> None:
        meta.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (self.name, json.dumps(value, sort_keys=True)),
        )


class Meta:
    """A ledger's meta keys (on its connection)."""

    # What the folder's run is (planning refuses a ledger of another run).
    fingerprint = _Key[Fingerprint]()
    # The plan is complete: written in the transaction that records where its items lie.
    planned = _Key[bool]()
    # The extra input columns' Arrow schema, serialized ("" without extras): the first
    # planning batch's, for the part writer.
    extras_schema = _Key[str]()
    # The rank's share of the rate of each host it fetches only part of (placement).
    host_shares = _Key[HostShares]()
    # The counters of the rank's earlier sessions, summed (its stats add this session's).
    session_stats = _Key[SessionStats]()

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
