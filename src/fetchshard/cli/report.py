"""``fetchshard report``: call :func:`fetchshard.api.report` and show the job at a glance, in a
terminal or as JSON (``--watch``: again every few seconds)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from fetchshard.cli.common import S3EndpointOption, S3RegionOption, user_errors

if TYPE_CHECKING:
    from fetchshard.reporting import Report

_UNDER_WAY = ("running", "not started")  # --watch goes on; it ends at done or stopped


def report_command(
    run_dir: Annotated[
        str, typer.Argument(help="The output folder of `fetchshard run`, or its s3:// URL.")
    ],
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
    s3_endpoint: S3EndpointOption = None,
    s3_region: S3RegionOption = None,
) -> None:
    """Show how far a job is, how fast, when it ends, which ranks need a look and what fails.

    Reads the folder only (snapshots, stats, done markers, locks; the ledgers of ranks that
    are not running), so it is safe on a live job, from any host.

    Exit codes: 0 shown, 2 not an output folder (or one of a newer fetchshard).
    """
    from fetchshard import api

    def read(html: Path | None = None) -> Report:
        return api.report(run_dir, html=html, s3_endpoint=s3_endpoint, s3_region=s3_region)

    with user_errors():
        if watch:
            _watch(read, interval, json_out)
            if html_out is None:
                return
            read(html_out)  # the state the job ended in
        else:
            report = read(html_out)
            if json_out:
                sys.stdout.write(report.to_bytes().decode())
            else:
                _show(report)
    if html_out is not None:  # on stderr when stdout carries the JSON
        print(f"wrote the HTML report to {html_out}", file=sys.stderr if json_out else sys.stdout)


def _show(report: Report) -> None:
    from rich.console import Console

    from fetchshard.reporting.terminal import WIDTH, render

    Console(width=min(WIDTH, Console().width) if sys.stdout.isatty() else WIDTH).print(
        render(report)
    )


def _watch(read: Callable[[], Report], interval: float, json_out: bool) -> None:
    """Redraw every ``interval`` s; return once the job no longer runs."""
    from rich.console import Console
    from rich.live import Live

    from fetchshard.reporting.terminal import WIDTH, render

    report = read()
    if json_out:  # one JSON document per line, each refresh
        while True:
            sys.stdout.write(report.to_bytes().decode().replace("\n", "") + "\n")
            sys.stdout.flush()
            if report.state not in _UNDER_WAY:
                return
            time.sleep(interval)
            report = read()
    console = Console(width=WIDTH)
    with Live(render(report), console=console, auto_refresh=False) as live:
        while report.state in _UNDER_WAY:
            time.sleep(interval)
            report = read()
            live.update(render(report), refresh=True)
    if not console.is_terminal:  # Live leaves its last frame without a line end there
        console.print()
