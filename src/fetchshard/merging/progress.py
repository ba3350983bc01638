"""A merge's progress as it goes: a bar of rows on a terminal, a log line per file elsewhere
(the :class:`~fetchshard.merging.job.MergeWatch` that ``fetchshard merge`` and
``fetchshard.merge()`` hand the job)."""

from __future__ import annotations

import logging
from typing import Any

from fetchshard.merging.plan import MergePlan, OutputFile

log = logging.getLogger("fetchshard")


class MergeProgress:
    """Shows merge rank ``rank``'s files: a rich bar with ``bar``, else log lines."""

    def __init__(self, rank: int, *, bar: bool) -> None:
        self._rank = rank
        self._bar: Any = None
        self._task: Any = None
        self._files = self._done = 0
        if bar:
            from fetchshard.engine.progress import rich_bar

            self._bar = rich_bar("[bold]merging", "rows · {task.fields[detail]}")

    def __enter__(self) -> MergeProgress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("merging", total=None, detail="surveying the parts")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def planned(self, plan: MergePlan, files: int, rows: int) -> None:
        self._files, self._done = files, 0
        if self._bar is not None:  # a log line would break the bar's line
            self._bar.update(self._task, total=rows, detail=f"0/{files} files")
            return
        log.info(
            "merge rank %d: %d of the plan's %d files, %s rows",
            self._rank,
            files,
            len(plan.files),
            f"{rows:,}",
        )

    def advanced(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, rows)

    def file_done(self, out: OutputFile, written: bool) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(self._task, detail=f"{self._done}/{self._files} files")
            return
        verb = "wrote" if written else "found finished"
        log.info("%s %s: %s rows", verb, out.name, f"{out.rows:,}")
