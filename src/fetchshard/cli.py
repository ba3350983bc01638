"""The ``fetchshard`` command line: parse, call one library function, render.

Heavy imports live inside the commands so ``fetchshard --help`` answers at once.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from fetchshard import __version__
from fetchshard.errors import FetchshardError
from fetchshard.signals import hold as hold_stop_signals

app = typer.Typer(
    name="fetchshard",
    add_completion=False,
    no_args_is_help=True,
    help="Turn URL lists of any size into Parquet datasets, from a laptop to SLURM.",
    context_settings={"help_option_names": ["-h", "--help"]},
)

CONFIG_SUFFIXES = (".yaml", ".yml")


def fail(exc: FetchshardError) -> NoReturn:
    """The single place a user-facing error becomes one line on stderr and an exit code."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    typer.echo(f"fetchshard: error: {message}", err=True)
    raise typer.Exit(exc.exit_code)


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


def split_inputs(inputs: list[str]) -> tuple[Path | None, list[str]]:
    """A lone ``*.yaml`` argument is the config file; anything else is input paths."""
    configs = [i for i in inputs if i.lower().endswith(CONFIG_SUFFIXES)]
    if len(configs) > 1:
        raise typer.BadParameter("give at most one config file", param_hint="INPUTS")
    others = [i for i in inputs if i not in configs]
    return (Path(configs[0]) if configs else None), others


def _set_pairs(pairs: list[str]) -> dict[str, Any]:
    from fetchshard.config import parse_value
    from fetchshard.errors import ConfigError

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected SECTION.KEY=VALUE")
        out[key.strip()] = parse_value(key.strip(), raw)
    return out


@app.command()
def run(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="URL files, globs or folders (txt, csv, tsv, jsonl, parquet; .gz/.zst), "
            "and/or one config.yaml.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Output folder (output.dir).")
    ] = None,
    ranks: Annotated[
        int | None,
        typer.Option(help="Start N local rank processes (the laptop's way to use all cores)."),
    ] = None,
    rank: Annotated[
        int | None, typer.Option(help="This process's rank (with --world-size).")
    ] = None,
    world_size: Annotated[int | None, typer.Option(help="Number of ranks in the job.")] = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard this output folder's previous run (of these ranks) and start over.",
        ),
    ] = False,
    url_column: Annotated[str | None, typer.Option(help="Column holding the URL.")] = None,
    id_column: Annotated[str | None, typer.Option(help="Column holding your own item id.")] = None,
    extra_columns: Annotated[
        list[str] | None,
        typer.Option("--extra-column", help="Input column to carry into the output (repeatable)."),
    ] = None,
    input_format: Annotated[
        str | None, typer.Option("--format", help="Input format (default: from the file name).")
    ] = None,
    contact: Annotated[
        str | None, typer.Option(help="Contact (URL or e-mail) put in the User-Agent.")
    ] = None,
    per_host_rate: Annotated[
        float | None, typer.Option(help="Requests per second per host, over all ranks.")
    ] = None,
    max_in_flight: Annotated[int | None, typer.Option(help="Concurrent fetches per rank.")] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any option as SECTION.KEY=VALUE, e.g. fetch.max_attempts=5."),
    ] = None,
) -> None:
    """Fetch every URL of the inputs into Parquet parts under the output folder.

    Options come from embedded defaults, then the config file, then FETCHSHARD_<SECTION>_<KEY>
    environment variables, then these flags. Exit codes: 0 done, 1 failure, 2 bad usage or
    config, 75 interrupted (rerun the same command to resume).
    """
    from fetchshard.config import load_config

    config_file, paths = split_inputs(inputs or [])
    flags: dict[str, Any] = {
        "output.dir": output,
        "run.ranks": ranks,
        "run.rank": rank,
        "run.world_size": world_size,
        "run.restart": True if restart else None,
        "input.url_column": url_column,
        "input.id_column": id_column,
        "input.extra_columns": extra_columns,
        "input.format": input_format,
        "fetch.contact": contact,
        "fetch.per_host_rate": per_host_rate,
        "fetch.max_in_flight": max_in_flight,
        "run.log_level": log_level,
    }
    overrides = {k: v for k, v in flags.items() if v is not None}
    if paths:
        overrides["input.paths"] = [os.path.abspath(p) for p in paths]
    try:
        overrides.update(_set_pairs(set_ or []))
        config = load_config(config_file, overrides=overrides)
        code = _run(config, config_file, overrides)
    except FetchshardError as exc:
        fail(exc)
    except OSError as exc:  # disk full, permissions, a file where a folder should be...
        from fetchshard.errors import RunError

        fail(RunError(str(exc)))
    raise typer.Exit(code)


def _run(config: Any, config_file: Path | None, overrides: dict[str, Any]) -> int:
    handler = _setup_logging(config.run.log_level)
    try:
        return _run_job(config, config_file, overrides)
    finally:
        logging.getLogger("fetchshard").removeHandler(handler)


def _run_job(config: Any, config_file: Path | None, overrides: dict[str, Any]) -> int:
    import yaml

    from fetchshard.errors import ConfigError
    from fetchshard.inputs import validate_inputs
    from fetchshard.launch import launch_ranks

    if not config.input.paths:
        raise ConfigError("no input: give URL files on the command line or input.paths in a config")
    run_cfg = config.run
    if run_cfg.ranks > 1:
        if run_cfg.rank is not None:
            raise ConfigError("--ranks starts every rank itself; do not combine it with --rank")
        validate_inputs(config.input)
        args = [str(config_file)] if config_file else []
        for key, value in overrides.items():
            if key in ("run.ranks", "run.rank", "run.world_size"):
                continue
            args += ["--set", f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"]
            if args[-1].endswith("\n..."):
                args[-1] = args[-1][: -len("\n...")]
        return launch_ranks(args, run_cfg.ranks)
    # Only a rank needs the fetch engine (aiohttp, ~0.25 s to import); --ranks starts its
    # ranks sooner without it.
    from fetchshard.ranks import detect_rank
    from fetchshard.runner import is_interactive, run_rank

    info = detect_rank(os.environ, rank=run_cfg.rank, world_size=run_cfg.world_size)
    return run_rank(config, info, interactive=is_interactive()).exit_code


def _setup_logging(level: str) -> logging.Handler:
    from fetchshard.launch import CHILD_ENV

    logger = logging.getLogger("fetchshard")
    handler = logging.StreamHandler(sys.stderr)
    prefix = "%(asctime)s %(levelname)s"
    if os.environ.get(CHILD_ENV) or "SLURM_PROCID" in os.environ:
        prefix += " [pid %(process)d]"
    handler.setFormatter(logging.Formatter(f"{prefix} %(message)s", "%H:%M:%S"))
    handler.setLevel(level.upper())
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    return handler


def main() -> None:
    hold_stop_signals()
    app()
