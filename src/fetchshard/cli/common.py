"""What every command shares: user-facing errors as one line and an exit code, and logging."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer

from fetchshard.environment import CHILD, CHILD_STDERR_LEVEL, SLURM_RANK
from fetchshard.errors import FetchshardError, RunError
from fetchshard.redact import RedactingFormatter, mask_userinfo

# Options that `run` and `plan` share (the input is read the same way by both).
OutputOption = Annotated[
    str | None, typer.Option("-o", "--output", help="Output folder (output.dir).")
]
RankOption = Annotated[int | None, typer.Option(help="This process's rank (with --world-size).")]
WorldSizeOption = Annotated[int | None, typer.Option(help="Number of ranks in the job.")]
UrlColumnOption = Annotated[str | None, typer.Option(help="Column holding the URL.")]
IdColumnOption = Annotated[str | None, typer.Option(help="Column holding your own item id.")]
ExtraColumnsOption = Annotated[
    list[str] | None,
    typer.Option("--extra-column", help="Input column to carry into the output (repeatable)."),
]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="Input format (default: from the file name).")
]
LogLevelOption = Annotated[str | None, typer.Option(help="debug, info, warning or error.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any option as SECTION.KEY=VALUE, e.g. fetch.max_attempts=5."),
]


def input_flags(
    url_column: str | None,
    id_column: str | None,
    extra_columns: list[str] | None,
    input_format: str | None,
    log_level: str | None,
) -> dict[str, Any]:
    """The config keys of the shared input options."""
    return {
        "input.url_column": url_column,
        "input.id_column": id_column,
        "input.extra_columns": extra_columns,
        "input.format": input_format,
        "run.log_level": log_level,
    }


def fail(exc: FetchshardError) -> NoReturn:
    """The single place a user-facing error becomes one line on stderr and an exit code."""
    message = mask_userinfo(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
    typer.echo(f"fetchshard: error: {message}", err=True)
    raise typer.Exit(exc.exit_code)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn fetchshard's errors, and the OS's (disk full, permissions...), into :func:`fail`."""
    try:
        yield
    except FetchshardError as exc:
        fail(exc)
    except OSError as exc:  # disk full, permissions, a file where a folder should be...
        fail(RunError(str(exc)))


@contextlib.contextmanager
def logging_to_stderr(level: str) -> Iterator[None]:
    """fetchshard's log lines on stderr for the block (with the pid in a rank of many)."""
    logger = logging.getLogger("fetchshard")
    handler = logging.StreamHandler(sys.stderr)
    prefix = "%(asctime)s %(levelname)s"
    if os.environ.get(CHILD) or SLURM_RANK in os.environ:
        prefix += " [pid %(process)d]"
    handler.setFormatter(RedactingFormatter(f"{prefix} %(message)s", "%H:%M:%S"))
    quiet = os.environ.get(CHILD_STDERR_LEVEL) if os.environ.get(CHILD) else None
    handler.setLevel(
        max(logging.getLevelName(level.upper()), logging.getLevelName(quiet.upper()))
        if quiet
        else level.upper()
    )
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    try:
        yield
    finally:
        logger.removeHandler(handler)
