"""What the commands share: the options of run and plan, ``--set`` pairs, help text that
reads well in any width, and user-facing errors as one line and an exit code."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer

from fetchshard.errors import FetchshardError, RunError
from fetchshard.redact import mask_userinfo

# Options that `run` and `plan` share (the input is read the same way by both).
OutputOption = Annotated[
    str | None,
    typer.Option("-o", "--output", help="Output folder, or s3://BUCKET/PREFIX (output.dir)."),
]
StateDirOption = Annotated[
    str | None,
    typer.Option(
        help="With -o s3://: the folder of the live ledger, locks, logs, plan files and staged "
        "parts (output.state_dir; default .fetchshard-state/BUCKET/PREFIX).",
    ),
]
# Where the S3 API of an s3:// location is (run, merge, report).
S3EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--s3-endpoint",
        help="s3://: the S3-compatible store, http(s)://HOST:PORT (default "
        "FETCHSHARD_S3_ENDPOINT, else AWS; AWS_ENDPOINT_URL is not read).",
    ),
]
S3RegionOption = Annotated[
    str | None,
    typer.Option(
        "--s3-region",
        help="s3://: the bucket's region (default FETCHSHARD_S3_REGION, else the SDK's).",
    ),
]
RankOption = Annotated[int | None, typer.Option(help="This process's rank (with --world-size).")]
WorldSizeOption = Annotated[int | None, typer.Option(help="Number of ranks in the job.")]
UrlColumnOption = Annotated[str | None, typer.Option(help="Column holding the URL.")]
IdColumnOption = Annotated[str | None, typer.Option(help="Column holding your own item id.")]
ExtraColumnsOption = Annotated[
    list[str] | None,
    typer.Option("--extra-column", help="Input column to carry into the output (repeatable)."),
]
IncludeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--include",
        help="An hf:// input's files to take: a pattern of repo paths (fnmatch; 'dir/' is a "
        "folder), repeatable (input.include).",
    ),
]
ExcludeOption = Annotated[
    list[str] | None,
    typer.Option("--exclude", help="An hf:// input's files to leave (input.exclude)."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="An hf:// input's Hugging Face token (hub.token; default HF_TOKEN, then the "
        "token file of `hf auth login`): sent to the Hub only, never written.",
    ),
]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="Input format (default: from the file name).")
]
LogLevelOption = Annotated[str | None, typer.Option(help="debug, info, warning or error.")]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Any option as SECTION.KEY=VALUE, e.g. fetch.max_attempts=5."),
]


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


def set_pairs(pairs: list[str] | None) -> dict[str, Any]:
    """``--set SECTION.KEY=VALUE`` as options (each value parsed as its option reads text)."""
    from fetchshard.config import parse_value
    from fetchshard.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected SECTION.KEY=VALUE")
        out[key.strip()] = parse_value(key.strip(), raw)
    return out


def help_text(doc: str | None) -> str:
    """A command's docstring as its help: each paragraph on one line, so the help is wrapped
    at the terminal's width (or 80 columns in a pipe or a log), never at the source's line
    breaks (typer's rich help keeps those after the first paragraph)."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)
