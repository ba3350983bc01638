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
    deferred: int = 0  # transient failures set aside for the final pass
    rate_decreases: int = 0  # a host's rate halved after 429/503
    rate_increases: int = 0
    host_cooldowns: int = 0
    hosts_unreachable: int = 0
    errors: Counter[str] = field(default_factory=Counter)  # terminal failures by error kind

    def count_row(self, error_kind: str | None, size: int | None) -> None:
        """A terminal row: a success of ``size`` body bytes, or a failure of ``error_kind``."""
        self.items += 1
        if error_kind is None:
            self.ok += 1
            self.bytes += size or 0
        else:
            self.failed += 1
            self.errors[error_kind] += 1

    def count_host(
        self, rate_decreased: bool, rate_increased: bool, parked: bool, died: bool
    ) -> None:
        """What a result did to its host (hosts/health.py's events)."""
        self.rate_decreases += rate_decreased
        self.rate_increases += rate_increased
        self.host_cooldowns += parked
        self.hosts_unreachable += died

    def __add__(self, other: Stats) -> Stats:
        if not isinstance(other, Stats):
            return NotImplemented
        values = {
            f.name: getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self)
        }
        return Stats(**values)

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
