"""``fetchshard plan``: parse the options, call :func:`fetchshard.api.plan`, exit with its code
(on a terminal, one line of what the rank read)."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from fetchshard.cli.common import (
    ExcludeOption,
    ExtraColumnsOption,
    FormatOption,
    IdColumnOption,
    IncludeOption,
    LogLevelOption,
    OutputOption,
    RankOption,
    SetOption,
    StateDirOption,
    TokenOption,
    UrlColumnOption,
    WorldSizeOption,
    set_pairs,
    user_errors,
)


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
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    token: TokenOption = None,
    input_format: FormatOption = None,
    state_dir: StateDirOption = None,
    log_level: LogLevelOption = None,
    set_: SetOption = None,
) -> None:
    """Split the input for a large job: rank r of W reads only its 1/W of the input (byte
    ranges of text, row groups of Parquet) and writes it sorted by host under OUT/plan.

    Then `fetchshard run` with the same world size, input and options reads each rank's share
    from there instead of reading the whole input. Run it as its own job step before the run
    (`srun -n W fetchshard plan config.yaml`, or `--ranks W`); rerunning it redoes only the
    ranks that did not finish.

    On a run folder whose run stopped with another number of ranks, it prepares the next
    generation instead: once every rank of the run is stopped, plan rank r of W writes its
    share of what they left (README: Generations), which `fetchshard run` with W ranks then
    spreads without reading it all again.

    Exit codes: 0 done, 1 failure, 2 bad usage or config, 75 interrupted (rerun to go on).
    """
    from fetchshard import api
    from fetchshard.environment import CHILD

    with user_errors():
        result = api.plan(
            *(inputs or []),
            options=set_pairs(set_),
            output=output,
            ranks=ranks,
            rank=rank,
            world_size=world_size,
            restart=restart,
            url_column=url_column,
            id_column=id_column,
            extra_columns=extra_columns,
            include=include,
            exclude=exclude,
            token=token,
            input_format=input_format,
            state_dir=state_dir,
            log_level=log_level,
            log_to_stderr=True,
        )
    tell = result.complete and sys.stderr.isatty() and not os.environ.get(CHILD)
    one = result.slices[0] if len(result.slices) == 1 else None
    if tell and one is not None:
        typer.echo(
            f"plan rank {one.rank} of {one.world_size}: {one.rows:,} rows, "
            f"{one.hosts:,} hosts, {one.bytes_read:,} bytes read in {one.seconds:.1f} s",
            err=True,
        )
    elif tell and result.generation and len(result.ranks) == 1:
        items = sum(s.items for s in result.leftovers)
        typer.echo(
            f"generation {result.generation}, plan rank {result.ranks[0]} of "
            f"{result.world_size}: {len(result.leftovers)} leftover slices, {items:,} items",
            err=True,
        )
    raise typer.Exit(result.exit_code)
