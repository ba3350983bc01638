"""Counters of a rank, as a dataclass that adds: ``sum(parts, start=Stats())``."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Stats:
    items: int = 0  # terminal rows written
    ok: int = 0
    failed: int = 0
    requests: int = 0  # HTTP attempts, retries included
    retries: int = 0
    bytes: int = 0  # body bytes of successful fetches
    seconds: float = 0.0  # time spent fetching
    errors: Counter[str] = field(default_factory=Counter)  # terminal failures by error kind

    def __add__(self, other: Stats) -> Stats:
        if not isinstance(other, Stats):
            return NotImplemented
        return Stats(
            items=self.items + other.items,
            ok=self.ok + other.ok,
            failed=self.failed + other.failed,
            requests=self.requests + other.requests,
            retries=self.retries + other.retries,
            bytes=self.bytes + other.bytes,
            seconds=self.seconds + other.seconds,
            errors=self.errors + other.errors,
        )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["errors"] = dict(sorted(self.errors.items()))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["errors"] = Counter(values.get("errors") or {})
        return cls(**values)
