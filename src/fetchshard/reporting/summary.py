"""The report itself: what was collected, summed and judged (totals, ETA, ranks, failures,
over time, content), as one versioned document that ``--json`` prints and the views render.

Every number a view shows is here (the HTML page's chart series too: the throughput window,
the attention order, the size and content-type bars), so a view only formats and draws, and
``--json`` carries all of it. The JSON schema (version 1) is documented field by field on
:class:`Report` and its parts; README.md shows an example. A reader of a newer version
refuses it (runfolder/documents.py).
"""

from __future__ import annotations

import dataclasses
import heapq
import json
import statistics
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fetchshard import __version__
from fetchshard.reporting import timeline
from fetchshard.reporting.collect import (
    ALIVE,
    DEAD,
    DONE,
    NOT_STARTED,
    RANK_STATES,
    STOPPED,
    TOP_HOSTS,
    WAITING,
    Collected,
    GenerationRow,
    RankRow,
)
from fetchshard.runfolder.documents import Document, ProgressHistory
from fetchshard.stats import SIZE_BUCKETS, HostCounts, size_bucket_label

SLOWEST = 10  # ranks listed as the slowest
# The tail: at most TAIL_RANKS ranks (and at most half of them) hold TAIL_SHARE of the work left,
# and it is worth spreading (TAIL_MIN items or more).
TAIL_RANKS = 5
TAIL_SHARE = 0.8
TAIL_MIN = 100
SEVERITY = (DEAD, STOPPED, WAITING)  # the ranks to look at first, in this order
CONTENT_TYPES = 15  # bars of the content-types chart; past it, the rest are one "other"


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
    urls_per_s_now: float  # rows per second over the last rate_window_s, all ranks
    urls_per_s_run: float  # over the whole history the snapshots keep
    mb_per_s_now: float
    mb_per_s_run: float
    elapsed_s: float  # from the first rank's start to the last snapshot
    eta_s: float | None  # None: cannot end by itself, or no rate yet
    eta_reason: str  # how eta_s was found, in words a user can check
    committed_share: float = 0.0  # committed / planned (0: nothing planned)
    fetched_share: float = 0.0  # fetched / planned
    failed_share: float = 0.0  # failed / planned
    rate_window_s: float = timeline.RATE_WINDOW  # "now": each running rank's last seconds


@dataclass(frozen=True, kw_only=True)
class Ranks:
    states: dict[str, int]  # rank state -> how many ranks
    grid: str  # one letter per rank, in rank order (see STATE_LETTERS)
    attention: list[RankRow]  # dead, stopped, waiting (in that order), the slowest running
    slowest: list[int]  # alive ranks with the most time left, most first
    imbalance: float | None  # largest plan / mean plan
    rows: list[RankRow]  # every rank


@dataclass(frozen=True, kw_only=True)
class HostRow:
    host: str
    failures: int
    errors: dict[str, int]  # most first
    throttled: int  # 429/503 answers
    parked_s: float  # time its requests were held back (Retry-After, cool-downs)
    samples: list[list[str]]  # [url, message], a few

    @classmethod
    def of(cls, host: str, counts: HostCounts) -> HostRow:
        return cls(
            host=host,
            **{
                **counts.to_dict(),
                "errors": _most_first(counts.errors),
                "parked_s": round(counts.parked_s, 1),
            },
        )


@dataclass(frozen=True, kw_only=True)
class Failures:
    by_kind: dict[str, int]  # most first
    by_http_status: dict[str, int]  # rows by the HTTP status of their last answer
    hosts_by_failures: list[HostRow]
    hosts_by_parked: list[HostRow]
    with_http_status: int = 0  # rows with an HTTP status: the sum of by_http_status
    http_2xx: int = 0  # of them, a 2xx
    by_http_status_not_2xx: dict[str, int] = field(default_factory=dict)  # by status


@dataclass(frozen=True, kw_only=True)
class Content:
    sizes: dict[str, int]  # size range ("0 B", "1 KiB-2 KiB", ...) -> successes, smallest first
    content_types: dict[str, int]  # most first
    # The sizes chart: every range from the smallest size seen to the largest, empty ones
    # included ("0 B", empty bodies, only if there are any).
    size_bars: dict[str, int] = field(default_factory=dict)
    # The content-types chart: the most common, the rest summed as "other" past CONTENT_TYPES.
    content_types_top: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class History:
    """The job over time, every rank summed (``--json``: up to 256 rows ``[time, committed,
    fetched, bytes, urls_per_s]``, the layout of version 1 of this document)."""

    samples: ProgressHistory = field(default_factory=ProgressHistory)
    urls_per_s: list[float] = field(default_factory=list)  # since the sample before (0: first)

    def __len__(self) -> int:
        return len(self.samples)

    def to_json(self) -> list[list[float]]:
        s = self.samples
        columns = (s.time, s.committed, s.fetched, s.bytes, self.urls_per_s)
        return [list(row) for row in zip(*columns, strict=True)]

    @classmethod
    def from_json(cls, rows: list[list[float]]) -> History:
        """Also the rows of a report from before ``fetched``: [time, committed, bytes, rate]."""
        samples = ProgressHistory()
        rates = []
        for row in rows:
            t, committed, *middle, nbytes, rate = row
            samples.append(t, committed, middle[0] if middle else committed, nbytes)
            rates.append(rate)
        return cls(samples=samples, urls_per_s=rates)


@dataclass(frozen=True, kw_only=True)
class Throughput:
    """The throughput chart: rates over a sliding window, one per row of the history."""

    window_s: float = 0.0  # about a fortieth of the run, rounded up (timeline.NICE_WINDOWS)
    urls_per_s: list[float] = field(default_factory=list)  # fetched rows over the window
    mb_per_s: list[float] = field(default_factory=list)  # body MB over the window


@dataclass(frozen=True, kw_only=True)
class Tail:
    """The work left sits on a few ranks: a new generation would spread it over all of them."""

    ranks: list[int]  # the fewest ranks holding TAIL_SHARE of the work left, most first
    pending: int  # items left over every rank
    share: float  # of them, on those ranks
    world_size: int  # a world size to run again with (not the current one: that resumes)
    advice: str  # what to do, in one sentence


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
    history: History
    throughput: Throughput = field(default_factory=Throughput)  # the throughput chart's lines
    content: Content
    notes: list[str] = field(default_factory=list)
    # Every generation of the run, the first first (one unless the world size changed).
    generations: list[GenerationRow] = field(default_factory=list)
    tail: Tail | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_bytes(self) -> bytes:
        # Keys keep their order: a dict's order means something here (most first, smallest
        # size first), and a page drawn from a report read back must draw the same.
        doc = {"kind": self.KIND, "version": self.VERSION, **self.to_dict()}
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> Report:
        report = _build(cls, data)
        assert isinstance(report, Report)
        return report


def _plain(value: Any) -> Any:
    if hasattr(value, "to_json"):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _build(hint: Any, data: Any) -> Any:
    """``data`` as read from JSON, made the type ``hint`` names: the report's dataclasses
    (unknown keys ignored, missing ones at their defaults), lists of them, or as it is."""
    if isinstance(hint, type) and hasattr(hint, "from_json"):
        return hint.from_json(data)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        known = {f.name for f in dataclasses.fields(hint) if f.init}
        return hint(**{k: _build(hints[k], v) for k, v in data.items() if k in known})
    origin = typing.get_origin(hint)
    if origin is list:
        (item,) = typing.get_args(hint)
        return [_build(item, v) for v in data]
    if origin in (typing.Union, types.UnionType) and data is not None:
        (kind, *_) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _build(kind, data)
    return data


def summarize(found: Collected) -> Report:
    """Judge what was collected: totals, ETA, states, the ranks to look at, the charts."""
    rows = found.ranks
    states = {s: 0 for s in RANK_STATES}
    for row in rows:
        states[row.state] += 1
    if states[DONE] == found.world_size:
        state = "done"
    elif any(states[s] for s in ALIVE):
        state = "running"
    elif states[NOT_STARTED] == found.world_size:
        state = "not started"
    else:
        state = "stopped"
    history = History(samples=found.history, urls_per_s=timeline.sample_rates(found.history))
    window = timeline.throughput_window(found.history)
    urls, mbs = timeline.windowed_rates(found.history, window)
    generations = [
        dataclasses.replace(g, state=state) if g.left is None else g for g in found.generations
    ]
    tail = _tail(rows, found.world_size) if state != "done" else None
    return Report(
        folder=found.folder,
        generated_at=found.now,
        fetchshard_version=__version__,
        world_size=found.world_size,
        state=state,
        totals=_totals(found),
        ranks=_ranks(rows, states),
        failures=_failures(found),
        history=history,
        throughput=Throughput(window_s=window, urls_per_s=urls, mb_per_s=mbs),
        content=_content(found),
        generations=generations,
        tail=tail,
        notes=[tail.advice] if tail is not None else [],
    )


def _tail(rows: list[RankRow], world_size: int) -> Tail | None:
    """Whether the work left sits on a few ranks (see TAIL_RANKS), and the command to spread
    it: the same one with another world size begins a generation over the leftover."""
    if world_size < 2 or any(row.planned is None for row in rows):
        return None
    left = sorted(
        ((max((row.planned or 0) - row.fetched, 0), row.rank) for row in rows),
        key=lambda pair: (-pair[0], pair[1]),
    )
    pending = sum(n for n, _ in left)
    if pending < TAIL_MIN:
        return None
    sums = np.cumsum([n for n, _ in left])
    count = int(np.searchsorted(sums, TAIL_SHARE * pending)) + 1  # the fewest ranks
    held = int(sums[count - 1])
    if count > min(TAIL_RANKS, world_size // 2):
        return None
    ranks = [rank for _, rank in left[:count]]
    other = world_size - 1 if world_size > 2 else world_size + 1
    share = held / pending
    named = ", ".join(str(r) for r in ranks)
    return Tail(
        ranks=ranks,
        pending=pending,
        share=round(share, 4),
        world_size=other,
        advice=(
            f"The work left sits on {count} of {world_size} ranks ({share:.0%} of "
            f"{pending:,} items on rank{'s' if count > 1 else ''} {named}): stop the job, "
            f"then run the same command with {other} ranks (--ranks {other}, or srun -n "
            f"{other}); a new generation spreads what is left over all of them."
        ),
    )


def _ranks(rows: list[RankRow], states: dict[str, int]) -> Ranks:
    alive = [r for r in rows if r.state in ALIVE]
    # the most time left at their own rate (one without a rate is "waiting", listed anyway)
    slowest = sorted(
        (r for r in alive if r.seconds_left),
        key=lambda r: (-(r.seconds_left or 0.0), r.rank),
    )[:SLOWEST]
    attention = [r for state in SEVERITY for r in rows if r.state == state]
    attention += [r for r in slowest if r not in attention]
    plans = [row.planned for row in rows if row.planned]
    return Ranks(
        states=states,
        grid="".join(STATE_LETTERS[row.state] for row in rows),
        attention=attention,
        slowest=[r.rank for r in slowest],
        imbalance=round(max(plans) / statistics.fmean(plans), 3) if plans else None,
        rows=rows,
    )


def _totals(found: Collected) -> Totals:
    """The job's: with several generations, what was done before the current one plus
    what its ranks did of the leftover."""
    rows = found.ranks
    planned = sum(row.planned or 0 for row in rows)
    committed = sum(row.committed for row in rows)
    fetched = sum(row.fetched for row in rows)
    failed = sum(row.failed for row in rows)
    if len(found.generations) > 1:
        planned = found.planned_before
        committed += found.done_before
        fetched += found.done_before
        failed += found.failed_before
    pending = max(planned - fetched, 0)
    now_rate = sum(row.urls_per_s for row in rows if row.state in ALIVE)
    h = found.history
    elapsed = h.time[-1] - h.time[0] if len(h) > 1 else 0.0
    run_rate = (h.fetched[-1] - h.fetched[0]) / elapsed if elapsed > 0 else 0.0
    run_mb = (h.bytes[-1] - h.bytes[0]) / elapsed / 1e6 if elapsed > 0 else 0.0
    now_mb = timeline.recent_rate(h.time, h.bytes) / 1e6
    eta, reason = _eta(rows, pending)
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
        committed_share=round(committed / planned, 4) if planned else 0.0,
        fetched_share=round(fetched / planned, 4) if planned else 0.0,
        failed_share=round(failed / planned, 4) if planned else 0.0,
    )


def _eta(rows: list[RankRow], pending: int) -> tuple[float | None, str]:
    """Ranks share no work, so the job ends with its last rank: the largest time left."""
    if pending == 0 and all(row.state == DONE for row in rows):
        return 0.0, "every rank is done"
    blocked = [row for row in rows if row.state in (DEAD, STOPPED) and row.pending]
    if blocked:
        first = blocked[0]
        return None, (
            f"{len(blocked)} rank(s) with work left are not running (rank {first.rank}: "
            f"{first.state}, {_items(first.pending)} pending): rerun the job to finish"
        )
    alive = [row for row in rows if row.state in ALIVE and row.pending != 0]
    unplanned = [row for row in rows if row.state not in ALIVE and row.state != DONE]
    if not alive:
        if unplanned:
            return None, f"{len(unplanned)} rank(s) have not started"
        return None, "no rank is running"
    window = timeline.RATE_WINDOW
    stuck = [row for row in alive if row.seconds_left is None]
    if stuck:
        first = stuck[0]
        why = "is still planning" if first.planned is None else "committed nothing in the last"
        what = f" {window:.0f} s" if first.planned is not None else ""
        return None, f"rank {first.rank} {why}{what}: no estimate yet"
    last = max(alive, key=lambda row: (row.seconds_left or 0.0, -row.rank))
    eta = last.seconds_left or 0.0
    extra = f"; {len(unplanned)} rank(s) not started yet" if unplanned else ""
    return eta, (
        f"rank {last.rank} has the most left: {_items((last.planned or 0) - last.fetched)} at "
        f"{last.urls_per_s:.2f}/s (its last {window:.0f} s); ranks share no work, so the "
        f"job ends with it{extra}"
    )


def _items(n: int | None) -> str:
    return "1 item" if n == 1 else f"{n or 0:,} items"


def _failures(found: Collected) -> Failures:
    hosts = list(found.hosts.items())
    by_failures = heapq.nsmallest(
        TOP_HOSTS, (h for h in hosts if h[1].failures), key=lambda h: (-h[1].failures, h[0])
    )
    by_parked = heapq.nsmallest(
        TOP_HOSTS,
        (h for h in hosts if h[1].parked_s or h[1].throttled),
        key=lambda h: (-h[1].parked_s, -h[1].throttled, h[0]),
    )
    statuses = dict(sorted(found.stats.http_status.items(), key=lambda kv: (len(kv[0]), kv[0])))
    not_2xx = {code: n for code, n in statuses.items() if not code.startswith("2")}
    return Failures(
        by_kind=_most_first(found.errors),
        by_http_status=statuses,
        hosts_by_failures=[HostRow.of(name, h) for name, h in by_failures],
        hosts_by_parked=[HostRow.of(name, h) for name, h in by_parked],
        with_http_status=sum(statuses.values()),
        http_2xx=sum(statuses.values()) - sum(not_2xx.values()),
        by_http_status_not_2xx=not_2xx,
    )


def _content(found: Collected) -> Content:
    counted = found.stats.sizes
    buckets = [b for b in range(SIZE_BUCKETS) if counted.get(str(b))]
    sized = [b for b in buckets if b > 0]  # "0 B" (empty bodies) is a bar of its own
    bars = [0] if 0 in buckets else []
    bars += list(range(min(sized), max(sized) + 1)) if sized else []
    types = list(_most_first(found.stats.content_types).items())
    if len(types) > CONTENT_TYPES:
        types[CONTENT_TYPES - 1 :] = [("other", sum(n for _, n in types[CONTENT_TYPES - 1 :]))]
    return Content(
        sizes={size_bucket_label(b): counted[str(b)] for b in buckets},
        content_types=_most_first(found.stats.content_types),
        size_bars={size_bucket_label(b): counted.get(str(b), 0) for b in bars},
        content_types_top=dict(types),
    )


def _most_first(counts: Mapping[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
