"""Counters of a rank, as a dataclass that adds: ``sum(parts, start=Stats())``.

Beside the totals it keeps what ``report`` shows of content and failures: answers by HTTP
status, successes by content type and by size (powers of two), and per host the failures,
429/503 answers and time held back, with a few sample URLs. Hosts are kept only once
something happens to them, and a document carries the worst few (:data:`HOSTS_KEPT`).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fetchshard.redact import mask_userinfo

SIZE_BUCKETS = 41  # bucket b: bodies of [2**(b-1), 2**b) bytes; 0: empty; the last: the rest
# Hosts a document keeps by failures, and as many by time held back: the report shows the
# job's top 10 of each, and thousands of ranks' documents must read in seconds.
HOSTS_KEPT = 10
SAMPLES = 3  # sample (url, message) pairs per host


def size_bucket(size: int) -> int:
    return min(SIZE_BUCKETS - 1, max(0, int(size).bit_length()))


def size_bucket_label(bucket: int) -> str:
    """``"0 B"``, ``"1-2 B"``, ... ``"64-128 KiB"``: the bucket's range of sizes."""
    if bucket == 0:
        return "0 B"
    low, high = 2 ** (bucket - 1), 2**bucket
    if bucket == SIZE_BUCKETS - 1:
        return f">= {_bytes(low)}"
    return f"{_bytes(low)}-{_bytes(high)}"


def _bytes(n: int) -> str:
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    power = min(len(units) - 1, int(math.log(n, 1024))) if n >= 1 else 0
    value = n / 1024**power
    return f"{value:g} {units[power]}"


@dataclass
class HostCounts:
    """What happened to one host: failures, throttling answers, time held back."""

    failures: int = 0  # terminal failed rows
    errors: Counter[str] = field(default_factory=Counter)
    throttled: int = 0  # 429/503 answers, retries included
    parked_s: float = 0.0  # seconds no request could go (Retry-After, cool-downs)
    samples: list[tuple[str, str]] = field(default_factory=list)  # (url, message)

    def __add__(self, other: HostCounts) -> HostCounts:
        return HostCounts(
            failures=self.failures + other.failures,
            errors=self.errors + other.errors,
            throttled=self.throttled + other.throttled,
            parked_s=self.parked_s + other.parked_s,
            samples=(self.samples + [s for s in other.samples if s not in self.samples])[:SAMPLES],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "failures": self.failures,
            "errors": dict(sorted(self.errors.items())),
            "throttled": self.throttled,
            "parked_s": round(self.parked_s, 3),
            "samples": [list(s) for s in self.samples],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HostCounts:
        errors: Counter[str] = Counter()
        dict.update(errors, data.get("errors") or {})  # as read: no per-key counting
        return cls(
            failures=int(data.get("failures", 0)),
            errors=errors,
            throttled=int(data.get("throttled", 0)),
            parked_s=float(data.get("parked_s", 0.0)),
            samples=[(u, m) for u, m in data.get("samples", ())[:SAMPLES]],
        )


def merge_hosts(books: Iterable[dict[str, HostCounts]]) -> dict[str, HostCounts]:
    out: dict[str, HostCounts] = {}
    for book in books:
        for host, counts in book.items():
            out[host] = out[host] + counts if host in out else counts
    return out


def worst_hosts(hosts: dict[str, HostCounts], keep: int = HOSTS_KEPT) -> dict[str, HostCounts]:
    """The ``keep`` hosts with the most failures and the ``keep`` held back longest."""
    by_failures = heapq.nsmallest(keep, hosts, key=lambda h: (-hosts[h].failures, h))
    by_parked = heapq.nsmallest(
        keep, hosts, key=lambda h: (-hosts[h].parked_s, -hosts[h].throttled, h)
    )
    chosen = [h for h in by_failures if hosts[h].failures]
    chosen += [h for h in by_parked if (hosts[h].parked_s or hosts[h].throttled)]
    return {h: hosts[h] for h in sorted(set(chosen))}


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
    http_status: Counter[str] = field(default_factory=Counter)  # terminal rows by status
    content_types: Counter[str] = field(default_factory=Counter)  # successes
    sizes: Counter[str] = field(default_factory=Counter)  # successes by str(size_bucket)
    hosts: dict[str, HostCounts] = field(default_factory=dict)  # hosts something happened to
    loop_lag_max_ms: float = 0.0  # the event loop's longest late wake-up (engine.lag): a max

    def count_row(
        self,
        error_kind: str | None,
        size: int | None,
        *,
        http_status: int | None = None,
        content_type: str | None = None,
        host: str | None = None,
        url: str | None = None,
        message: str | None = None,
    ) -> None:
        """A terminal row: a success of ``size`` body bytes, or a failure of ``error_kind``
        (at ``host``: ``url`` and ``message`` may become one of its samples)."""
        self.items += 1
        if http_status is not None:
            self.http_status[str(http_status)] += 1
        if error_kind is None:
            self.ok += 1
            self.bytes += size or 0
            self.sizes[str(size_bucket(size or 0))] += 1
            if content_type:
                self.content_types[content_type.split(";", 1)[0].strip().lower()] += 1
        else:
            self.failed += 1
            self.errors[error_kind] += 1
            if host is not None:
                counts = self._host(host)
                counts.failures += 1
                counts.errors[error_kind] += 1
                if url is not None and len(counts.samples) < SAMPLES:
                    counts.samples.append((mask_userinfo(url), message or error_kind))

    def recount_failure(
        self,
        size: int | None,
        content_type: str | None,
        error_kind: str,
        *,
        host: str,
        url: str | None = None,
        message: str | None = None,
    ) -> None:
        """A row counted as a success of ``size`` bytes that a stage then failed."""
        self.ok -= 1
        self.bytes -= size or 0
        _take_one(self.sizes, str(size_bucket(size or 0)))
        if content_type:
            _take_one(self.content_types, content_type.split(";", 1)[0].strip().lower())
        self.items -= 1  # count_row counts the item again; its HTTP status stays counted once
        self.count_row(error_kind, None, host=host, url=url, message=message)

    def count_throttled(self, host: str, parked_s: float, throttled: bool) -> None:
        """An answer held ``host`` back ``parked_s`` more seconds, or was a 429/503."""
        if parked_s > 0 or throttled:
            counts = self._host(host)
            counts.parked_s += parked_s
            counts.throttled += throttled

    def _host(self, host: str) -> HostCounts:
        found = self.hosts.get(host)
        if found is None:
            found = self.hosts[host] = HostCounts()
        return found

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
            f.name: _combine(f.name, getattr(self, f.name), getattr(other, f.name))
            for f in dataclasses.fields(self)
            if f.name != "hosts"
        }
        return Stats(**values, hosts=merge_hosts([self.hosts, other.hosts]))

    def __iadd__(self, other: Stats) -> Stats:
        """Add ``other`` in place (a report sums thousands of ranks: no copies)."""
        for f in dataclasses.fields(self):
            if f.name == "hosts":
                for host, counts in other.hosts.items():
                    mine = self.hosts.get(host)
                    self.hosts[host] = counts if mine is None else mine + counts
            elif isinstance(getattr(self, f.name), Counter):
                getattr(self, f.name).update(getattr(other, f.name))
            else:
                setattr(
                    self, f.name, _combine(f.name, getattr(self, f.name), getattr(other, f.name))
                )
        return self

    def to_dict(self) -> dict[str, Any]:
        data = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "hosts"
        }
        for name in _COUNTERS:
            data[name] = dict(sorted(getattr(self, name).items()))
        data["hosts"] = {h: c.to_dict() for h, c in worst_hosts(self.hosts).items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stats:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for name in _COUNTERS:
            values[name] = Counter(values.get(name) or {})
        values["hosts"] = {h: HostCounts.from_dict(c) for h, c in (data.get("hosts") or {}).items()}
        return cls(**values)


_COUNTERS = ("errors", "http_status", "content_types", "sizes")
_MAXIMA = frozenset({"loop_lag_max_ms"})  # combined by max, every other field adds


def _combine(name: str, mine: Any, theirs: Any) -> Any:
    return max(mine, theirs) if name in _MAXIMA else mine + theirs


def _take_one(counter: Counter[str], key: str) -> None:
    if counter[key] > 1:
        counter[key] -= 1
    else:
        counter.pop(key, None)
