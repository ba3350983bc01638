"""The report itself: what was collected, summed and judged (totals, ETA, ranks, failures,
over time, content), as one versioned document that ``--json`` prints and the views render.

The JSON schema (version 1) is documented field by field on :class:`Report` and its parts;
README.md shows an example. A reader of a newer version refuses it (runfolder/documents.py).
"""

from __future__ import annotations

import dataclasses
import heapq
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fetchshard import __version__
from fetchshard.report.collect import (
    ALIVE,
    DEAD,
    DONE,
    NOT_STARTED,
    RANK_STATES,
    RATE_WINDOW,
    STOPPED,
    TOP_HOSTS,
    Collected,
    RankLine,
    recent_rate,
)
from fetchshard.runfolder.documents import Document
from fetchshard.stats import SIZE_BUCKETS, size_bucket_label

SLOWEST = 10  # ranks listed as the slowest


@dataclass(frozen=True, kw_only=True)
class Totals:
    planned: int  # items over all ranks' plans (ranks not planned yet count 0)
    committed: int  # items with a committed row
    fetched: int  # items with a row: committed, or in a part a running rank has open
    ok: int  # of the fetched rows
    failed: int
    pending: int  # planned - fetched
    bytes: int  # body bytes fetched (each rank's latest session)
    success_rate: float | None  # ok / fetched
    urls_per_s_now: float  # rows per second over the last minute, all ranks
    urls_per_s_run: float  # over the whole history the snapshots keep
    mb_per_s_now: float
    mb_per_s_run: float
    elapsed_s: float  # from the first rank's start to the last snapshot
    eta_s: float | None  # None: cannot end by itself, or no rate yet
    eta_reason: str  # how eta_s was found, in words a user can check


@dataclass(frozen=True, kw_only=True)
class RankRow:
    rank: int
    state: str
    detail: str
    planned: int | None
    committed: int
    fetched: int
    failed: int
    pending: int | None
    urls_per_s: float
    seconds_left: float | None
    age_s: float | None  # of its last snapshot


@dataclass(frozen=True, kw_only=True)
class Ranks:
    states: dict[str, int]  # rank state -> how many ranks
    grid: str  # one letter per rank, in rank order (see STATE_LETTERS)
    attention: list[RankRow]  # dead, stopped, waiting and the slowest running ranks
    slowest: list[int]  # alive ranks with the most time left, most first
    imbalance: float | None  # largest plan / mean plan
    rows: list[RankRow]  # every rank


@dataclass(frozen=True, kw_only=True)
class HostRow:
    host: str
    failures: int
    errors: dict[str, int]
    throttled: int  # 429/503 answers
    parked_s: float  # time its requests were held back (Retry-After, cool-downs)
    samples: list[list[str]]  # [url, message], a few


@dataclass(frozen=True, kw_only=True)
class Failures:
    by_kind: dict[str, int]
    by_http_status: dict[str, int]  # rows by the HTTP status of their last answer
    hosts_by_failures: list[HostRow]
    hosts_by_parked: list[HostRow]


@dataclass(frozen=True, kw_only=True)
class Content:
    sizes: dict[str, int]  # size range ("0 B", "1 KiB-2 KiB", ...) -> successes
    content_types: dict[str, int]


STATE_LETTERS = {
    "running": "R",
    "waiting": "W",
    "planning": "P",
    "done": "D",
    "stopped": "S",
    "dead": "X",
    "not started": ".",
}


@dataclass(frozen=True, kw_only=True)
class Report(Document):
    """``fetchshard report --json``: ``kind`` "report", ``version`` 1, and the fields below."""

    KIND: ClassVar[str] = "report"
    VERSION: ClassVar[int] = 1

    folder: str
    generated_at: float  # seconds since the epoch
    fetchshard_version: str
    world_size: int
    state: str  # the job: running, done, stopped (some rank must be rerun), not started
    totals: Totals
    ranks: Ranks
    failures: Failures
    # [time, committed, fetched, bytes, rows per second], all ranks summed, up to 256 rows
    history: list[list[float]]
    content: Content
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> Report:
        ranks = data["ranks"]
        failures = data["failures"]
        return cls(
            folder=data["folder"],
            generated_at=data["generated_at"],
            fetchshard_version=data["fetchshard_version"],
            world_size=data["world_size"],
            state=data["state"],
            totals=Totals(**data["totals"]),
            ranks=Ranks(
                **{
                    **ranks,
                    "attention": [RankRow(**r) for r in ranks["attention"]],
                    "rows": [RankRow(**r) for r in ranks["rows"]],
                }
            ),
            failures=Failures(
                by_kind=failures["by_kind"],
                by_http_status=failures["by_http_status"],
                hosts_by_failures=[HostRow(**h) for h in failures["hosts_by_failures"]],
                hosts_by_parked=[HostRow(**h) for h in failures["hosts_by_parked"]],
            ),
            history=data["history"],
            content=Content(**data["content"]),
            notes=list(data.get("notes", [])),
        )


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def summarize(found: Collected) -> Report:
    """Judge what was collected: totals, ETA, states, the ranks to look at."""
    rows = [_row(line, found.now) for line in found.ranks]
    totals = _totals(found)
    states = {s: 0 for s in RANK_STATES}
    for line in found.ranks:
        states[line.state] += 1
    alive = [r for r in rows if r.state in ALIVE]
    # the most time left at their own rate (one without a rate is "waiting", listed anyway)
    slowest = sorted(
        (r for r in alive if r.seconds_left),
        key=lambda r: (-(r.seconds_left or 0.0), r.rank),
    )[:SLOWEST]
    attention = [r for r in rows if r.state in (DEAD, STOPPED, "waiting")]
    attention += [r for r in slowest if r not in attention]
    plans = [line.planned for line in found.ranks if line.planned]
    imbalance = round(max(plans) / statistics.fmean(plans), 3) if plans else None
    hosts = list(found.hosts.items())
    by_failures = heapq.nsmallest(
        TOP_HOSTS, (h for h in hosts if h[1].failures), key=lambda h: (-h[1].failures, h[0])
    )
    by_parked = heapq.nsmallest(
        TOP_HOSTS,
        (h for h in hosts if h[1].parked_s or h[1].throttled),
        key=lambda h: (-h[1].parked_s, -h[1].throttled, h[0]),
    )
    if states[DONE] == found.world_size:
        state = "done"
    elif any(line.state in ALIVE for line in found.ranks):
        state = "running"
    elif states[NOT_STARTED] == found.world_size:
        state = "not started"
    else:
        state = "stopped"
    stats = found.stats
    return Report(
        folder=found.folder,
        generated_at=found.now,
        fetchshard_version=__version__,
        world_size=found.world_size,
        state=state,
        totals=totals,
        ranks=Ranks(
            states=states,
            grid="".join(STATE_LETTERS[line.state] for line in found.ranks),
            attention=attention,
            slowest=[r.rank for r in slowest],
            imbalance=imbalance,
            rows=rows,
        ),
        failures=Failures(
            by_kind=dict(sorted(found.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
            by_http_status=dict(sorted(stats.http_status.items())),
            hosts_by_failures=[_host(name, h) for name, h in by_failures[:TOP_HOSTS]],
            hosts_by_parked=[_host(name, h) for name, h in by_parked[:TOP_HOSTS]],
        ),
        history=_history(found.history),
        content=Content(
            sizes={
                size_bucket_label(b): stats.sizes[str(b)]
                for b in range(SIZE_BUCKETS)
                if stats.sizes.get(str(b))
            },
            content_types=dict(sorted(stats.content_types.items(), key=lambda kv: (-kv[1], kv[0]))),
        ),
    )


def _row(line: RankLine, now: float) -> RankRow:
    left = line.seconds_left
    return RankRow(
        rank=line.rank,
        state=line.state,
        detail=line.detail,
        planned=line.planned,
        committed=line.committed,
        fetched=line.fetched,
        failed=line.failed,
        pending=line.pending,
        urls_per_s=round(line.urls_per_s, 3),
        seconds_left=round(left, 1) if left is not None and line.state in ALIVE else None,
        age_s=round(now - line.updated_at, 1) if line.updated_at else None,
    )


def _totals(found: Collected) -> Totals:
    lines = found.ranks
    planned = sum(line.planned or 0 for line in lines)
    committed = sum(line.committed for line in lines)
    fetched = sum(line.fetched for line in lines)
    failed = sum(line.failed for line in lines)
    pending = max(planned - fetched, 0)
    now_rate = sum(line.urls_per_s for line in lines if line.state in ALIVE)
    history = found.history
    elapsed = history[-1][0] - history[0][0] if len(history) > 1 else 0.0
    run_rate = (history[-1][2] - history[0][2]) / elapsed if elapsed > 0 else 0.0
    run_mb = (history[-1][3] - history[0][3]) / elapsed / 1e6 if elapsed > 0 else 0.0
    now_mb = recent_rate(history, 3) / 1e6
    eta, reason = _eta(lines, pending)
    return Totals(
        planned=planned,
        committed=committed,
        fetched=fetched,
        ok=fetched - failed,
        failed=failed,
        pending=pending,
        bytes=found.stats.bytes,
        success_rate=round((fetched - failed) / fetched, 4) if fetched else None,
        urls_per_s_now=round(now_rate, 2),
        urls_per_s_run=round(run_rate, 2),
        mb_per_s_now=round(now_mb, 3),
        mb_per_s_run=round(run_mb, 3),
        elapsed_s=round(elapsed, 1),
        eta_s=round(eta, 1) if eta is not None else None,
        eta_reason=reason,
    )


def _eta(lines: list[RankLine], pending: int) -> tuple[float | None, str]:
    """Ranks share no work, so the job ends with its last rank: the largest time left."""
    if pending == 0 and all(line.state == DONE for line in lines):
        return 0.0, "every rank is done"
    blocked = [line for line in lines if line.state in (DEAD, STOPPED) and line.pending]
    if blocked:
        first = blocked[0]
        return None, (
            f"{len(blocked)} rank(s) with work left are not running (rank {first.rank}: "
            f"{first.state}, {_items(first.pending)} pending): rerun the job to finish"
        )
    alive = [line for line in lines if line.state in ALIVE and line.pending != 0]
    unplanned = [line for line in lines if line.state not in ALIVE and line.state != DONE]
    if not alive:
        if unplanned:
            return None, f"{len(unplanned)} rank(s) have not started"
        return None, "no rank is running"
    stuck = [line for line in alive if line.seconds_left is None]
    if stuck:
        first = stuck[0]
        why = "is still planning" if first.planned is None else "committed nothing in the last"
        what = f" {RATE_WINDOW:.0f} s" if first.planned is not None else ""
        return None, f"rank {first.rank} {why}{what}: no estimate yet"
    last = max(alive, key=lambda line: (line.seconds_left or 0.0, -line.rank))
    eta = last.seconds_left or 0.0
    extra = f"; {len(unplanned)} rank(s) not started yet" if unplanned else ""
    return eta, (
        f"rank {last.rank} has the most left: {_items((last.planned or 0) - last.fetched)} at "
        f"{last.urls_per_s:.2f}/s (its last {RATE_WINDOW:.0f} s); ranks share no work, so the "
        f"job ends with it{extra}"
    )


def _items(n: int | None) -> str:
    return "1 item" if n == 1 else f"{n or 0:,} items"


def _host(name: str, h: Any) -> HostRow:
    return HostRow(
        host=name,
        failures=h.failures,
        errors=dict(sorted(h.errors.items(), key=lambda kv: (-kv[1], kv[0]))),
        throttled=h.throttled,
        parked_s=round(h.parked_s, 1),
        samples=[list(s) for s in h.samples],
    )


def _history(timeline: list[tuple[float, float, float, float]]) -> list[list[float]]:
    out: list[list[float]] = []
    for i, (t, committed, fetched, sent) in enumerate(timeline):
        rate = 0.0
        if i:
            dt = t - timeline[i - 1][0]
            rate = (fetched - timeline[i - 1][2]) / dt if dt > 0 else 0.0
        out.append([t, committed, fetched, sent, round(rate, 3)])
    return out
