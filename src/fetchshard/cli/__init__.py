"""The ``fetchshard`` command line: one module per command, each parsing its options, calling
one library function and rendering the answer (cli/common.py: errors and exit codes).

Heavy imports live inside the commands so ``fetchshard --help`` answers at once.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from fetchshard import __version__
from fetchshard.signals import hold as hold_stop_signals

app = typer.Typer(
    name="fetchshard",
    add_completion=False,
    no_args_is_help=True,
    help="Turn URL lists of any size into Parquet datasets, from a laptop to SLURM.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fetchshard {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """fetchshard: fetch URL lists into Parquet, exactly once, politely."""


def _register() -> None:
    from fetchshard.cli import merge, plan, report, run

    app.command("plan")(plan.plan_command)
    app.command("run")(run.run_command)
    app.command("merge")(merge.merge_command)
    app.command("report")(report.report_command)


_register()


def main() -> None:
    hold_stop_signals()
    if sys.argv[1:2] in (["run"], ["plan"]):
        from fetchshard.cli.run import skip_pandas

        skip_pandas()
    app()
