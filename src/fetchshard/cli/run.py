"""``fetchshard run``: parse the options, call :func:`fetchshard.api.run`, exit with its code."""

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
    S3EndpointOption,
    S3RegionOption,
    SetOption,
    StateDirOption,
    TokenOption,
    UrlColumnOption,
    WorldSizeOption,
    set_pairs,
    user_errors,
)


def split_kinds(words: list[str]) -> tuple[list[str], list[str]]:
    """``--retry-failed [KIND ...]``: the kinds given after the flag land among the inputs
    (a flag takes no values); take back the words that name kinds and are not files."""
    from fetchshard.errors import KIND_WORDS, ConfigError

    kinds, paths = [], []
    for word in words:
        exists = os.path.exists(word)
        if word in KIND_WORDS and exists:
            raise ConfigError(
                f"--retry-failed: {word!r} is both an error kind and a file here; "
                f"write ./{word} for the file"
            )
        if word in KIND_WORDS:
            kinds.append(word)
        elif not exists and word.isidentifier():  # a misspelt kind, not a path
            raise ConfigError(
                f"--retry-failed: {word!r} is neither an error kind nor an input that exists "
                f"(kinds: {', '.join(sorted(KIND_WORDS))})"
            )
        else:
            paths.append(word)
    return kinds, paths


def run_command(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="URL files, globs or folders (txt, csv, tsv, jsonl, parquet; .gz/.zst), "
            "and/or one config.yaml.",
            show_default=False,
        ),
    ] = None,
    output: OutputOption = None,
    ranks: Annotated[
        int | None,
        typer.Option(help="Start N local rank processes (the laptop's way to use all cores)."),
    ] = None,
    rank: RankOption = None,
    world_size: WorldSizeOption = None,
    restart: Annotated[
        bool,
        typer.Option(
            "--restart",
            help="Discard this output folder's previous run (of these ranks) and start over.",
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option(
            "--retry-failed",
            help="Fetch again the items whose row is a failure: of the error kinds named after "
            "the flag (e.g. --retry-failed http_5xx timeout), 'all', or by default the "
            "transient ones. Nothing else is fetched again.",
        ),
    ] = False,
    url_column: UrlColumnOption = None,
    id_column: IdColumnOption = None,
    extra_columns: ExtraColumnsOption = None,
    include: IncludeOption = None,
    exclude: ExcludeOption = None,
    token: TokenOption = None,
    input_format: FormatOption = None,
    contact: Annotated[
        str | None, typer.Option(help="Contact (URL or e-mail) put in the User-Agent.")
    ] = None,
    per_host_rate: Annotated[
        float | None, typer.Option(help="Requests per second per host, over all ranks.")
    ] = None,
    max_in_flight: Annotated[int | None, typer.Option(help="Concurrent fetches per rank.")] = None,
    images: Annotated[
        str | None,
        typer.Option(
            help="Image stage (images.mode): verify (decode check, sizes, hashes; the bytes "
            "kept) or resize."
        ),
    ] = None,
    resize: Annotated[
        int | None,
        typer.Option(
            metavar="PX",
            help="Resize every image to PX (images.image_size; turns on --images resize).",
        ),
    ] = None,
    resize_mode: Annotated[
        str | None,
        typer.Option(help="no, keep_ratio, keep_ratio_largest, center_crop or border."),
    ] = None,
    files: Annotated[
        bool,
        typer.Option(
            "--files",
            help="Write every body as a file under OUT/files/HOST/PATH (output.mode files); "
            "the parts hold each file's path, size, hashes and status.",
        ),
    ] = False,
    state_dir: StateDirOption = None,
    s3_endpoint: S3EndpointOption = None,
    s3_region: S3RegionOption = None,
    log_level: LogLevelOption = None,
    set_: SetOption = None,
) -> None:
    """Fetch every URL of the inputs into Parquet parts under the output folder.

    Options come from embedded defaults, then the config file, then FETCHSHARD_<SECTION>_<KEY>
    environment variables, then these flags (and --set). With --ranks N, N local rank
    processes; else this process is one rank (--rank/--world-size, or SLURM, torchrun...).

    Exit codes: 0 done, 1 failure, 2 bad usage or config, 75 interrupted (rerun the same
    command to resume).
    """
    from fetchshard import api

    with user_errors():
        words = inputs or []
        kinds: list[str] = []
        if retry_failed:  # the kinds named after the flag land among the inputs
            kinds, words = split_kinds(words)
        result = api.run(
            *words,
            options=set_pairs(set_),
            output=output,
            ranks=ranks,
            rank=rank,
            world_size=world_size,
            restart=restart,
            retry_failed=kinds or retry_failed,
            url_column=url_column,
            id_column=id_column,
            extra_columns=extra_columns,
            include=include,
            exclude=exclude,
            token=token,
            input_format=input_format,
            contact=contact,
            per_host_rate=per_host_rate,
            max_in_flight=max_in_flight,
            images=images,
            resize=resize,
            resize_mode=resize_mode,
            files=files,
            state_dir=state_dir,
            s3_endpoint=s3_endpoint,
            s3_region=s3_region,
            log_level=log_level,
            log_to_stderr=True,
            command=["fetchshard", *sys.argv[1:]],
        )
    raise typer.Exit(result.exit_code)
