"""What a running rank shows: a JSON snapshot replaced atomically (for ``report`` on any
host), a progress bar on a terminal, and one-line summaries in logs (SLURM output files)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from fetchshard.paths import write_atomic
from fetchshard.ranks import RankInfo
from fetchshard.stats import Stats

log = logging.getLogger(__name__)

SUMMARY_EVERY = 30.0  # seconds between one-line summaries when there is no terminal


class Progress:
    def __init__(
        self, path: Path, info: RankInfo, *, interactive: bool, interval: float = 5.0
    ) -> None:
        self._path = path
        self._info = info
        self._interval = interval
        self._started = time.time()
        self._last_write = 0.0
        self._last_summary = time.monotonic()
        self._total = 0
        self._committed_before = 0
        self._doc: dict[str, Any] = {
            "rank": info.rank,
            "world_size": info.world_size,
            "started_at": self._started,
            "state": "starting",
        }
        self._bar: Any = None
        self._task: Any = None
        if interactive:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as Bar

            self._bar = Bar(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("planning", total=None, detail="")

    def set_total(self, total: int, committed: int) -> None:
        self._total = total
        self._committed_before = committed
        self._doc.update(total=total, committed=committed)
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
        force: bool = False,
    ) -> None:
        doc = self._doc
        doc["state"] = state
        if input_rows is not None:
            doc["input_rows"] = input_rows
        if in_flight is not None:
            doc.update(in_flight=in_flight, active_hosts=active_hosts)
        if written is not None:
            doc["committed"] = self._committed_before + written
        if stats is not None:
            elapsed = max(time.time() - self._started, 1e-9)
            doc.update(
                written=stats.items,
                ok=stats.ok,
                failed=stats.failed,
                requests=stats.requests,
                retries=stats.retries,
                bytes=stats.bytes,
                urls_per_s=round(stats.items / elapsed, 1),
                errors=dict(stats.errors),
            )
        now = time.monotonic()
        if self._bar is not None:
            self._refresh_bar(state, stats)
        if force or now - self._last_write >= self._interval:
            self._last_write = now
            doc["updated_at"] = time.time()
            write_atomic(self._path, json.dumps(doc, sort_keys=True).encode())
        if self._bar is None and state == "fetching" and now - self._last_summary >= SUMMARY_EVERY:
            self._last_summary = now
            log.info(self.summary())

    def summary(self) -> str:
        d = self._doc
        return (
            f"rank {self._info.rank}: {d.get('committed', 0)}/{self._total} committed, "
            f"{d.get('ok', 0)} ok, {d.get('failed', 0)} failed, {d.get('in_flight', 0)} in flight, "
            f"{d.get('urls_per_s', 0)} URLs/s"
        )

    def _refresh_bar(self, state: str, stats: Stats | None) -> None:
        if state == "planning":
            rows = self._doc.get("input_rows", 0)
            self._bar.update(self._task, description="planning", detail=f"{rows} input rows")
            return
        done = self._committed_before + (stats.items if stats is not None else 0)
        detail = ""
        if stats is not None:
            detail = (
                f"ok {stats.ok} · failed {stats.failed} · {self._doc.get('in_flight', 0)} in flight"
            )
        self._bar.update(self._task, completed=done, detail=detail)

    def finish(self, state: str, committed: int, stats: Stats) -> None:
        """The last snapshot of this session (written at once) and the bar's last frame."""
        self._committed_before, self._doc["committed"] = committed, committed
        self.update(state, stats=stats, force=True)
        if self._bar is not None:
            self._bar.update(self._task, completed=committed)
        self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
