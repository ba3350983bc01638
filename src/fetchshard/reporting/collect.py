"""What ``fetchshard report`` knows of a run: every rank's documents read once, then summed.

A rank is read from its done marker, its stats (written when it stops), its progress
snapshot and whether its lock is held; the ledger only of a rank that is not running, and
then read-only. Nothing here writes, waits on a lock or holds a file open, so reading a folder
in a loop, from any host of a shared filesystem, never slows or changes a running rank.
"""

from __future__ import annotations

import gc
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field

from fetchshard.ledger import LedgerSummary
from fetchshard.reporting.timeline import recent_rate, summed
from fetchshard.runfolder.documents import LeftoverDone, ProgressHistory, ProgressSnapshot
from fetchshard.runfolder.generations import Generation, leftover_sources
from fetchshard.runfolder.layout import GenerationPaths
from fetchshard.runfolder.view import RankView, RunFolder
from fetchshard.stats import HostCounts, Stats

# Rank states, in the order the report lists them.
RUNNING = "running"
WAITING = "waiting"  # running, nothing in flight: parked hosts, backoff
PLANNING = "planning"
DONE = "done"
STOPPED = "stopped"  # exited on a signal or a time limit, its work committed: rerun it
DEAD = "dead"  # lock free but not done, or lock held and no snapshot for too long
NOT_STARTED = "not started"
RANK_STATES = (RUNNING, WAITING, PLANNING, DONE, STOPPED, DEAD, NOT_STARTED)
ALIVE = (RUNNING, WAITING, PLANNING)

STALE_MIN = 60.0  # a snapshot older than this (and 6 intervals) means a hung rank
TOP_HOSTS = 10


@dataclass(frozen=True, kw_only=True)
class RankRow:
    """One rank as the report shows it (``ranks.rows`` of ``--json``)."""

    rank: int
    state: str  # one of RANK_STATES
    detail: str  # what it waits on, why it counts as dead or stopped; "" otherwise
    planned: int | None  # items of its slice (None: not planned yet)
    committed: int
    fetched: int  # items with a terminal row: committed, or written to a part still open
    failed: int
    pending: int | None  # planned - committed
    urls_per_s: float  # rows per second over its last RATE_WINDOW seconds (0 unless alive)
    seconds_left: float | None  # at that rate, while alive (None: no rate, or not alive)
    age_s: float | None  # of its last snapshot


@dataclass(frozen=True, kw_only=True)
class GenerationRow:
    """One generation of the run (``generations`` of ``--json``; one for most runs)."""

    generation: int
    world_size: int
    retry_failed: list[str] | None  # the --retry-failed words it began with (None: none)
    state: str  # "ended" (a later generation took over what it left), else the job's state
    planned: int  # items its ranks planned: the input's (the first), a leftover (the others)
    committed: int  # rows its ranks committed
    failed: int  # of them, failures
    left: int | None  # items it left to the next generation (None: the current one)


@dataclass
class Collected:
    """A run folder read at ``now``: one row per rank of the current generation and what
    every rank of every generation counted."""

    folder: str
    world_size: int
    now: float
    ranks: list[RankRow]  # of the current generation
    stats: Stats  # summed over the ranks' latest sessions (bytes, requests, content, hosts)
    errors: Counter[str]  # current committed failures by kind, over all sessions where known
    history: ProgressHistory  # every rank's summed on one time grid
    interval: float  # the ranks' snapshot interval
    hosts: dict[str, HostCounts] = field(default_factory=dict)
    generations: list[GenerationRow] = field(default_factory=list)
    # Before the current generation: the items the input planned, and of them those done
    # (with a row no later generation took up again) and failed. Zero in the first one.
    planned_before: int = 0
    done_before: int = 0
    failed_before: int = 0


def collect(folder: RunFolder, *, now: float | None = None) -> Collected:
    """Read every rank of ``folder`` (see the module docstring)."""
    # Thousands of documents make millions of small objects and no cycles: the cyclic
    # collector would walk them again and again (half the time at 4,000 ranks).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _collect(folder, time.time() if now is None else now)
    finally:
        if enabled:
            gc.enable()


def _collect(folder: RunFolder, now: float) -> Collected:
    total = Stats()
    errors: Counter[str] = Counter()
    histories: list[tuple[ProgressHistory, float]] = []
    intervals = []
    generations: list[GenerationRow] = []
    per_generation: list[list[RankRow]] = []
    for generation in folder.generations:
        rows = []
        for view in folder.generation_ranks(generation):
            row, stats, rank_errors = _rank(view, now)
            rows.append(row)
            total += stats
            errors.update(rank_errors)
            snap = view.progress
            if snap is not None:
                histories.append((snap.history, snap.history_step))
                intervals.append(snap.interval)
        per_generation.append(rows)
    leftovers = [_leftover(folder, g) for g in folder.generations[1:]]
    pairs = zip(folder.generations, per_generation, strict=True)
    for index, (generation, rows) in enumerate(pairs):
        left = None
        if index + 1 < len(folder.generations):
            items, _ = leftovers[index]
            left = items if items is not None else _pending(rows)
        generations.append(
            GenerationRow(
                generation=generation.number,
                world_size=generation.world_size,
                retry_failed=_words(generation.retry_failed),
                state="ended" if left is not None else "",
                planned=sum(row.planned or 0 for row in rows),
                committed=sum(row.committed for row in rows),
                failed=sum(row.failed for row in rows),
                left=left,
            )
        )
    carried: Counter[str] = Counter()
    for _, kinds in leftovers:
        carried.update(kinds)
    errors.subtract(carried)
    errors = +errors  # drops kinds at zero
    planned_before = done_before = failed_before = 0
    if len(generations) > 1:
        planned_before = generations[0].planned
        done_before = planned_before - (generations[-2].left or 0)
        failed_before = sum(g.failed for g in generations[:-1]) - sum(carried.values())
    interval = max(intervals) if intervals else 5.0
    return Collected(
        folder=folder.location,
        world_size=folder.world_size,
        now=now,
        ranks=per_generation[-1],
        stats=total,
        errors=errors,
        history=summed(histories),
        interval=interval,
        hosts=total.hosts,
        generations=generations,
        planned_before=planned_before,
        done_before=done_before,
        failed_before=max(failed_before, 0),
    )


def _leftover(folder: RunFolder, generation: Generation) -> tuple[int | None, Counter[str]]:
    """What ``generation`` took over: its leftover's items (None until every one is written)
    and the failures it took up again, by kind."""
    paths = GenerationPaths(folder.paths.root, generation.number)
    items = 0
    complete = True
    carried: Counter[str] = Counter()
    for source in leftover_sources(folder.generations, generation.number):
        done = LeftoverDone.read(paths.leftover(*source).done)
        if done is None or done.generation != generation.number:
            complete = False
            continue
        items += done.items
        carried.update(done.carried_errors)
    return (items if complete else None), carried


def _words(words: tuple[str, ...] | None) -> list[str] | None:
    return None if words is None else list(words)


def _pending(rows: list[RankRow]) -> int:
    return sum(row.pending or 0 for row in rows)


def _rank(view: RankView, now: float) -> tuple[RankRow, Stats, Counter[str]]:
    done, snap, stats = view.done, view.progress, view.stats
    running = done is None and view.running
    summary: LedgerSummary | None = None
    if not running and (stats is None or done is None) and view.started:
        try:
            summary = view.ledger()  # not running: its ledger is still
        except sqlite3.Error:
            # A rank killed mid-commit leaves a hot journal that a read-only reader cannot
            # roll back, until the rank (or a new generation's) opens it: its documents say
            # what it did meanwhile.
            summary = None
    state, detail = _state(view, snap, stats, running, now)
    counted = stats.stats if stats is not None else _snapshot_stats(snap)
    if summary is not None:
        planned: int | None = summary.counts.total
        committed, failed = summary.counts.committed, summary.counts.failed
        errors = Counter(summary.errors)
    elif stats is not None and not running:
        planned = done.items if done is not None and done.items is not None else None
        planned = planned if planned is not None else (snap.total if snap else None)
        committed, failed = stats.stats.items, stats.stats.failed
        errors = Counter(stats.stats.errors)
    elif snap is not None:
        planned = snap.total
        committed = snap.committed
        failed = snap.failed_before + snap.failed
        errors = Counter(snap.errors_before) + Counter(snap.errors)
    else:
        planned, committed, failed, errors = None, 0, 0, Counter()
    if done is not None and done.items is not None:
        planned = committed = done.items
    fetched = committed
    if state in ALIVE and snap is not None:
        fetched = max(committed, snap.committed_before + snap.written)
    rate = _rate(snap) if state in ALIVE else 0.0
    left: float | None = None
    if planned is not None and state in ALIVE:
        rest = max(planned - fetched, 0)
        left = 0.0 if rest == 0 else rest / rate if rate > 0 else None
    row = RankRow(
        rank=view.rank,
        state=state,
        detail=detail,
        planned=planned,
        committed=committed,
        fetched=fetched,
        failed=failed,
        pending=None if planned is None else max(planned - committed, 0),
        urls_per_s=round(rate, 3),
        seconds_left=None if left is None else round(left, 1),
        age_s=round(now - snap.updated_at, 1) if snap is not None and snap.updated_at else None,
    )
    return row, counted, errors


def _state(
    view: RankView,
    snap: ProgressSnapshot | None,
    stats: object,
    running: bool,
    now: float,
) -> tuple[str, str]:
    if view.done is not None:
        return DONE, ""
    if running:
        if snap is None:
            return PLANNING, "starting"
        age = now - snap.updated_at
        if age > max(STALE_MIN, 6 * snap.interval):
            return DEAD, f"its lock is held but its last snapshot is {age:,.0f} s old (hung?)"
        if snap.state == "planning":
            return PLANNING, f"{snap.input_rows or 0:,} input rows read"
        if snap.waiting and _rate(snap) == 0:  # between rate-limited requests it runs
            return WAITING, snap.waiting
        return RUNNING, ""
    if not view.started:
        return NOT_STARTED, ""
    if snap is not None and snap.state == "interrupted":
        return STOPPED, "stopped by a signal or its time limit, work committed: rerun it"
    last = f"; last snapshot {now - snap.updated_at:,.0f} s ago ({snap.state})" if snap else ""
    return DEAD, f"its lock is free but it is not done{last}: rerun it"


def _snapshot_stats(snap: ProgressSnapshot | None) -> Stats:
    if snap is None:
        return Stats()
    return Stats(
        items=snap.written,
        ok=snap.ok,
        failed=snap.failed,
        requests=snap.requests,
        retries=snap.retries,
        bytes=snap.bytes,
        errors=Counter(snap.errors),
        http_status=Counter(snap.http_status),
        content_types=Counter(snap.content_types),
        sizes=Counter(snap.sizes),
        hosts={h: HostCounts.from_dict(c) for h, c in snap.hosts.items()},
    )


def _rate(snap: ProgressSnapshot | None) -> float:
    """Rows written per second over the last RATE_WINDOW seconds of the rank's history
    (rows reach a part at once, and are committed only when it closes)."""
    return recent_rate(snap.history.time, snap.history.fetched) if snap is not None else 0.0
