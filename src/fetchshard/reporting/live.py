"""The combined progress of ``--ranks N``: the report's collector, one bar for the job."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from fetchshard.errors import FetchshardError

log = logging.getLogger("fetchshard")

SUMMARY_EVERY = 30.0  # seconds between one-line summaries when there is no terminal


class JobProgress:
    """Reads the run folder every ``update`` (never the ranks' ledgers while they run) and
    shows the job's totals: a bar on a terminal, a log line every 30 s otherwise."""

    def __init__(self, output: Path, world_size: int, *, bar: bool) -> None:
        self._output = output
        self._world_size = world_size
        self._bar: Any = None
        self._task: Any = None
        self._last_line = time.monotonic()
        if bar:
            from fetchshard.engine.progress import rich_bar

            self._bar = rich_bar(f"[bold]{world_size} ranks")

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.update()  # the last frame: the totals as the ranks left them
        if self._task is not None:
            self._bar.stop()

    def update(self) -> None:
        report = self._read()
        if report is None:
            return
        t, states = report.totals, report.ranks.states
        alive = states["running"] + states["waiting"] + states["planning"]
        detail = (
            f"ok {t.ok:,} · failed {t.failed:,} · {t.urls_per_s_now:,.0f}/s · "
            f"{alive} running, {states['done']} done"
        )
        if self._bar is not None:
            if self._task is None:  # started late: the launcher's log lines come first
                self._bar.start()
                self._task = self._bar.add_task("job", total=None, detail="")
            total = t.planned or None
            self._bar.update(self._task, total=total, completed=t.fetched, detail=detail)
            return
        if time.monotonic() - self._last_line >= SUMMARY_EVERY:
            self._last_line = time.monotonic()
            log.info(
                "job: %s of %s fetched, %s committed; %s",
                f"{t.fetched:,}",
                f"{t.planned:,}",
                f"{t.committed:,}",
                detail,
            )

    def _read(self) -> Any:
        from fetchshard.reporting import build_report
        from fetchshard.runfolder.view import RunFolder

        try:
            return build_report(RunFolder(self._output))
        except FetchshardError:  # no run.json yet, or a document being replaced
            return None
