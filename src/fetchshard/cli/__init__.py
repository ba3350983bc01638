"""The ``fetchshard`` command line: one module per command, each parsing its options, calling
its one library function (fetchshard/api.py) and rendering the answer (cli/common.py: errors
and exit codes).

Heavy imports live inside the commands so ``fetchshard --help`` answers at once. What belongs
to the ``fetchshard`` process alone, never to a program that imports the library, is here:
:func:`main` holds the stop signals from its first line and keeps pandas out of a rank.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated

import typer

from fetchshard import __version__
from fetchshard.signals import hold as hold_stop_signals
from fetchshard.signals import ignore_on_exit

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
    from fetchshard.cli.common import help_text

    commands: list[tuple[str, Callable[..., None], str]] = [
        ("plan", plan.plan_command, "Split a large input among the ranks before the run."),
        ("run", run.run_command, "Fetch the URLs of the inputs into the output folder."),
        ("merge", merge.merge_command, "Merge a run folder into one dataset."),
        ("report", report.report_command, "Show how far a job is, how fast, what fails."),
    ]
    for name, command, short in commands:
        app.command(name, help=help_text(command.__doc__), short_help=short)(command)


_register()


class _NoPandas:
    """An import finder that says pandas is not installed."""

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"{name} is not used by fetchshard run", name=name)


def skip_pandas() -> None:
    """Keep pandas out of a rank's process: pyarrow imports it, when it is installed, on the
    first ``pa.array()`` of a Python list, and a run never uses it (measured: 0.28 s of CPU
    and 40 MB of RSS per rank process). To pyarrow, a refused import is pandas missing.
    Only for a process that is ``fetchshard run`` or ``plan`` (:func:`main`), never one that
    imports the library."""
    if "pandas" not in sys.modules and not any(isinstance(f, _NoPandas) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoPandas())


def main() -> None:
    hold_stop_signals()
    if sys.argv[1:2] in (["run"], ["plan"]):
        skip_pandas()
    try:
        app()
    finally:
        ignore_on_exit()
