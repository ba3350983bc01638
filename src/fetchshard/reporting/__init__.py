"""``fetchshard report``: read a run folder (collect.py), judge it (summary.py), show it
(terminal.py, html.py) or print it as JSON (the :class:`~fetchshard.reporting.summary.Report`)."""

from __future__ import annotations

from fetchshard.reporting.collect import collect
from fetchshard.reporting.summary import Report, summarize
from fetchshard.runfolder.view import RunFolder


def build_report(folder: RunFolder, *, now: float | None = None) -> Report:
    """The report of ``folder`` as it is at ``now`` (default: the wall clock)."""
    return summarize(collect(folder, now=now))


__all__ = ["Report", "build_report"]
