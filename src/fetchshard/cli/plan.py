"""``fetchshard plan``: each rank reads 1/W of the input and writes it for ``fetchshard run``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fetchshard.cli.common import logging_to_stderr, user_errors
from fetchshard.cli.run import _set_pairs, split_inputs


def plan_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="URL files, globs or folders, and/or one config.yaml (as for run).",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Output folder (output.dir).")
    ] = None,
    ranks: Annotated[
        int | None, typer.Option(help="Start N local plan ranks (the world size of the run).")
    ] = None,
    rank: Annotated[
        int | None, typer.Option(help="This process's rank (with --world-size).")
    ] = None,
    world_size: Annotated[int | None, typer.Option(help="Number of ranks in the job.")] = None,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Discard a plan made for another input or world size."),
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
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error.")] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Any option as SECTION.KEY=VALUE."),
    ] = None,
) -> None:
    """Split the input for a large job: rank r of W reads only its 1/W of the input (byte
    ranges of text, row groups of Parquet) and writes it sorted by host under OUT/plan.

    Then `fetchshard run` with the same world size, input and options reads each rank's share
    from there instead of reading the whole input. Run it as its own job step before the run
    (`srun -n W fetchshard plan config.yaml`, or `--ranks W`); rerunning it redoes only the
    ranks that did not finish. Exit codes: 0 done, 1 failure, 2 bad usage or config, 75
    interrupted (rerun to go on).
    """
    from fetchshard.config import load_config
    from fetchshard.launch import inherited_overrides

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
        "run.log_level": log_level,
    }
    with user_errors():
        overrides = inherited_overrides(os.environ)
        overrides.update({k: v for k, v in flags.items() if v is not None})
        if paths:
            overrides["input.paths"] = [os.path.abspath(p) for p in paths]
        overrides.update(_set_pairs(set_ or []))
        config = load_config(config_file, overrides=overrides)
        with logging_to_stderr(config.run.log_level):
            code = _plan(config, config_file, overrides)
    raise typer.Exit(code)


def _plan(config: Any, config_file: Path | None, overrides: dict[str, Any]) -> int:
    from fetchshard.engine.stop import StopFlag, stop_signals
    from fetchshard.environment import CHILD
    from fetchshard.errors import EXIT_INTERRUPTED, ConfigError
    from fetchshard.inputs import validate_inputs
    from fetchshard.launch import launch_ranks
    from fetchshard.plan import Interrupted
    from fetchshard.planstep.step import check_plan_config, plan_step_rank
    from fetchshard.ranks import detect_rank

    if not config.input.paths:
        raise ConfigError("no input: give URL files on the command line or input.paths in a config")
    check_plan_config(config)
    if config.run.ranks > 1:
        if config.run.rank is not None:
            raise ConfigError("--ranks starts every rank itself; do not combine it with --rank")
        validate_inputs(config.input)
        return launch_ranks(config_file, overrides, config.run.ranks, command="plan")
    info = detect_rank(os.environ, rank=config.run.rank, world_size=config.run.world_size)
    stop = StopFlag()
    with stop_signals(stop):
        try:
            done = plan_step_rank(config, info, should_stop=lambda: bool(stop))
        except Interrupted:
            return EXIT_INTERRUPTED
    if sys.stderr.isatty() and not os.environ.get(CHILD):
        typer.echo(
            f"plan rank {done.rank} of {done.world_size}: {done.rows:,} rows, "
            f"{done.hosts:,} hosts, {done.bytes_read:,} bytes read in {done.seconds:.1f} s",
            err=True,
        )
    return 0
