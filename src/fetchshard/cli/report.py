"""``fetchshard report``: a running or finished job at a glance, in a terminal or as JSON."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fetchshard.cli.common import user_errors

if TYPE_CHECKING:
    from fetchshard.report.summary import Report

_UNDER_WAY = ("running", "not started")  # --watch goes on; it ends at done or stopped


def report_command(
    run_dir: Annotated[Path, typer.Argument(help="The output folder of `fetchshard run`.")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON (schema: README).")
    ] = False,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh until the job is done or stopped.")
    ] = False,
    interval: Annotated[
        float, typer.Option(help="Seconds between refreshes with --watch.", min=0.2)
    ] = 2.0,
    html_out: Annotated[
        Path | None,
        typer.Option(
            "--html",
            metavar="PATH",
            help="Also write the report as one self-contained HTML page (charts, offline).",
        ),
    ] = None,
) -> None:
    """Show how far a job is, how fast, when it ends, which ranks need a look and what fails.

    Reads the folder only (snapshots, stats, done markers, locks; the ledgers of ranks that
    are not running), so it is safe on a live job, from any host. Exit codes: 0 shown, 2 not
    an output folder (or one of a newer fetchshard).
    """
    with user_errors():
        from fetchshard.report import build_report
        from fetchshard.runfolder.view import RunFolder

        folder = RunFolder(run_dir)
        if watch:
            _watch(folder, interval, json_out)
            if html_out is None:
                return
            report = build_report(folder)  # the state the job ended in
        else:
            report = build_report(folder)
            if json_out:
                sys.stdout.write(report.to_bytes().decode())
            else:
                _show(report)
        if html_out is not None:
            _write_html(report, html_out, to_stderr=json_out)


def _write_html(report: Report, path: Path, *, to_stderr: bool) -> None:
    """Write the page atomically (a reader never sees half of it) and say where: on stderr
    when stdout carries the JSON. With --watch, the page is the job's state at the end."""
    from fetchshard.report.html import render_html
    from fetchshard.runfolder.storage import write_atomic

    write_atomic(path, render_html(report).encode())
    mask = os.umask(0)  # mkstemp made it 0600: give it the mode of any new file
    os.umask(mask)
    path.chmod(0o666 & ~mask)
    print(f"wrote the HTML report to {path}", file=sys.stderr if to_stderr else sys.stdout)


def _show(report: object) -> None:
    from rich.console import Console

    from fetchshard.report.terminal import WIDTH, render

    Console(width=min(WIDTH, Console().width) if sys.stdout.isatty() else WIDTH).print(
        render(report)  # type: ignore[arg-type]
    )


def _watch(folder: object, interval: float, json_out: bool) -> None:
    """Redraw every ``interval`` s; return once the job no longer runs."""
    from rich.console import Console
    from rich.live import Live

    from fetchshard.report import build_report
    from fetchshard.report.terminal import WIDTH, render

    report = build_report(folder)  # type: ignore[arg-type]
    if json_out:  # one JSON document per line, each refresh
        while True:
            sys.stdout.write(report.to_bytes().decode().replace("\n", "") + "\n")
            sys.stdout.flush()
            if report.state not in _UNDER_WAY:
                return
            time.sleep(interval)
            report = build_report(folder)  # type: ignore[arg-type]
    console = Console(width=WIDTH)
    with Live(render(report), console=console, auto_refresh=False) as live:
        while report.state in _UNDER_WAY:
            time.sleep(interval)
            report = build_report(folder)  # type: ignore[arg-type]
            live.update(render(report), refresh=True)
    if not console.is_terminal:  # Live leaves its last frame without a line end there
        console.print()
