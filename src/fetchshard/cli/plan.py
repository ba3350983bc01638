"""``fetchshard plan``: each rank reads 1/W of the input and writes it for ``fetchshard run``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fetchshard.cli.common import (
    ExtraColumnsOption,
    FormatOption,
    IdColumnOption,
    LogLevelOption,
    OutputOption,
    RankOption,
    SetOption,
    UrlColumnOption,
    WorldSizeOption,
    input_flags,
    logging_to_stderr,
    user_errors,
)
from fetchshard.cli.run import check_rank_options, rank_command_config, split_inputs


def plan_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="URL files, globs or folders, and/or one config.yaml (as for run).",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = None,
    ranks: Annotated[
        int | None, typer.Option(help="Start N local plan ranks (the world size of the run).")
    ] = None,
    rank: RankOption = None,
    world_size: WorldSizeOption = None,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Discard a plan made for another input or world size."),
    ] = False,
    url_column: UrlColumnOption = None,
    id_column: IdColumnOption = None,
    extra_columns: ExtraColumnsOption = None,
    input_format: FormatOption = None,
    log_level: LogLevelOption = None,
    set_: SetOption = None,
) -> None:
    """Split the input for a large job: rank r of W reads only its 1/W of the input (byte
    ranges of text, row groups of Parquet) and writes it sorted by host under OUT/plan.

    Then `fetchshard run` with the same world size, input and options reads each rank's share
    from there instead of reading the whole input. Run it as its own job step before the run
    (`srun -n W fetchshard plan config.yaml`, or `--ranks W`); rerunning it redoes only the
    ranks that did not finish. Exit codes: 0 done, 1 failure, 2 bad usage or config, 75
    interrupted (rerun to go on).
    """
    config_file, paths = split_inputs(inputs or [])
    flags: dict[str, Any] = {
        "output.dir": output,
        "run.ranks": ranks,
        "run.rank": rank,
        "run.world_size": world_size,
        "run.restart": True if restart else None,
        **input_flags(url_column, id_column, extra_columns, input_format, log_level),
    }
    with user_errors():
        config, overrides = rank_command_config(config_file, paths, flags, set_)
        with logging_to_stderr(config.run.log_level):
            code = _plan(config, config_file, overrides)
    raise typer.Exit(code)


def _plan(config: Any, config_file: Path | None, overrides: dict[str, Any]) -> int:
    from fetchshard.engine.stop import StopFlag, stop_signals
    from fetchshard.environment import CHILD
    from fetchshard.errors import EXIT_INTERRUPTED
    from fetchshard.inputs import validate_inputs
    from fetchshard.launch import launch_ranks
    from fetchshard.plan import Interrupted
    from fetchshard.planstep.step import check_plan_config, plan_step_rank
    from fetchshard.ranks import detect_rank

    check_rank_options(config)
    check_plan_config(config)
    if config.run.ranks > 1:
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
