"""What a running rank shows: its progress snapshot (runfolder/documents.py, replaced
atomically for ``report`` on any host), a bar on a terminal, one-line summaries in logs."""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path
from typing import Any

from fetchshard.clock import SYSTEM, Clock
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.documents import ProgressSnapshot
from fetchshard.runfolder.storage import LOCAL, Storage
from fetchshard.stats import Stats, worst_hosts

log = logging.getLogger(__name__)

SUMMARY_EVERY = 30.0  # seconds between one-line summaries when there is no terminal


def rich_bar(label: str, detail: str = "{task.fields[detail]}") -> Any:
    """The one look of every bar (a rank, a merge, a --ranks job): label, bar, n/total,
    ``detail`` (a rich template over the task), elapsed, remaining."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    return Bar(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(detail),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )


class _Speed:
    """Bytes received, as the bodies stream (a 5 GB file moves the bar before it is a row),
    and their rate over the last few ticks."""

    WINDOW = 10.0  # seconds

    def __init__(self) -> None:
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, received: int) -> None:
        self.samples.append((now, received))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.WINDOW:
            self.samples.popleft()

    def text(self, sep: str = " · ") -> str:
        if not self.samples:
            return ""
        (t0, b0), (t1, b1) = self.samples[0], self.samples[-1]
        rate = (b1 - b0) / (t1 - t0) if t1 > t0 else 0.0
        return f"{sep}{_mb(b1)} received at {_mb(rate)}/s"


def _mb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


class Progress:
    def __init__(
        self,
        path: Path,
        info: RankInfo,
        *,
        interactive: bool,
        interval: float = 5.0,
        clock: Clock = SYSTEM,
        storage: Storage = LOCAL,
    ) -> None:
        self._path = path
        self._storage = storage
        self._info = info
        self._interval = interval
        self._clock = clock
        self._speed = _Speed()
        self._started = clock.wall()
        self._last_write = float("-inf")
        self._last_summary = clock.monotonic()
        self._total = 0
        self._committed_before = 0
        self.snapshot = ProgressSnapshot(
            rank=info.rank,
            world_size=info.world_size,
            started_at=self._started,
            history_step=interval,
            interval=interval,
        )
        self._bar: Any = None
        self._task: Any = None
        if interactive:
            self._bar = rich_bar("[bold]{task.description}")
            self._bar.start()
            self._task = self._bar.add_task("planning", total=None, detail="")

    def set_total(self, total: int, committed: int, errors: dict[str, int] | None = None) -> None:
        """The slice's size, and what earlier sessions committed (failures by kind)."""
        self._total = total
        self._committed_before = committed
        self.snapshot.total, self.snapshot.committed = total, committed
        self.snapshot.committed_before = committed
        self.snapshot.errors_before = dict(errors or {})
        self.snapshot.failed_before = sum(self.snapshot.errors_before.values())
        if self._bar is not None:
            self._bar.update(self._task, description="fetching", total=total, completed=committed)

    def update(
        self,
        state: str,
        *,
        input_rows: int | None = None,
        in_flight: int | None = None,
        active_hosts: int | None = None,
        stats: Stats | None = None,
        written: int | None = None,
        waiting: str | None = None,
        force: bool = False,
        last: bool = False,
        hosts: bool = True,
        received: int | None = None,
    ) -> None:
        snap = self.snapshot
        if received is not None:
            self._speed.add(self._clock.monotonic(), received)
        snap.state = state
        snap.waiting = waiting
        if input_rows is not None:
            snap.input_rows = input_rows
        if in_flight is not None:
            snap.in_flight = in_flight
            snap.active_hosts = active_hosts or 0
        if written is not None:
            snap.committed = self._committed_before + written
        wall = self._clock.wall()
        now = self._clock.monotonic()
        if stats is not None:
            elapsed = max(wall - self._started, 1e-9)
            snap.written, snap.ok, snap.failed = stats.items, stats.ok, stats.failed
            if last:  # stats are the rank's totals then: this session wrote what it added
                snap.written = snap.committed - snap.committed_before
            snap.requests, snap.retries, snap.bytes = stats.requests, stats.retries, stats.bytes
            snap.urls_per_s = round(stats.items / elapsed, 1)
            snap.errors = dict(stats.errors)
            snap.http_status = dict(stats.http_status)
            snap.content_types = dict(stats.content_types)
            snap.sizes = dict(stats.sizes)
            if not hosts:  # the rank's stats document carries them from now on
                snap.hosts = {}
            elif force or now - self._last_write >= self._interval:  # only when written
                snap.hosts = {h: c.to_dict() for h, c in worst_hosts(stats.hosts).items()}
        if self._bar is not None:
            self._refresh_bar(state, stats)
        if force or now - self._last_write >= self._interval:
            self._last_write = now
            snap.updated_at = wall
            snap.sample(wall, last=last)
            snap.write(self._path, storage=self._storage)
        if self._bar is None and state == "fetching" and now - self._last_summary >= SUMMARY_EVERY:
            self._last_summary = now
            log.info(self.summary())

    def summary(self) -> str:
        d = self.snapshot
        return (
            f"rank {self._info.rank}: {d.committed}/{self._total} committed, "
            f"{d.ok} ok, {d.failed} failed, {d.in_flight} in flight, {d.urls_per_s} URLs/s"
            + self._speed.text(", ")
            + (f"; waiting: {d.waiting}" if d.waiting else "")
        )

    def _refresh_bar(self, state: str, stats: Stats | None) -> None:
        if state == "planning":
            rows = self.snapshot.input_rows or 0
            self._bar.update(self._task, description="planning", detail=f"{rows} input rows")
            return
        done = self._committed_before + (stats.items if stats is not None else 0)
        detail = ""
        if stats is not None:
            detail = f"ok {stats.ok} · failed {stats.failed} · {self.snapshot.in_flight} in flight"
            detail += self._speed.text()
        self._bar.update(self._task, completed=done, detail=detail)

    def finish(self, state: str, committed: int, stats: Stats) -> None:
        """The last snapshot of this session (written at once) and the bar's last frame."""
        self._committed_before = self.snapshot.committed = committed
        self.update(state, stats=stats, force=True, last=True, hosts=False)
        if self._bar is not None:
            self._bar.update(self._task, completed=committed)
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
