"""``fetchshard merge``: parse the options, call :func:`fetchshard.api.merge`, print what it
made."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fetchshard.cli.common import S3EndpointOption, S3RegionOption, user_errors


def merge_command(
    run_dir: Annotated[
        str, typer.Argument(help="The output folder of `fetchshard run`, or its s3:// URL.")
    ],
    output: Annotated[
        str | None,
        typer.Option(
            "-o",
            "--output",
            help="Where the dataset goes: a folder (default RUN/merged) or s3://BUCKET/PREFIX.",
        ),
    ] = None,
    file_size: Annotated[
        str, typer.Option("--file-size", help="Target size of each file (all but the last).")
    ] = "500MB",
    file_rows: Annotated[
        int | None, typer.Option("--file-rows", help="Close a file at this many rows too.")
    ] = None,
    row_group_size: Annotated[
        str, typer.Option("--row-group-size", help="Uncompressed bytes per row group.")
    ] = "10MiB",
    body_as: Annotated[
        str,
        typer.Option("--body-as", help="auto (image when every success is one), image or binary."),
    ] = "auto",
    compression: Annotated[str, typer.Option(help="Parquet codec.")] = "zstd",
    file_format: Annotated[
        str,
        typer.Option(
            "--format",
            help="parquet (the Hugging Face layout) or webdataset (00000.tar shards, each "
            "with a 00000.parquet sidecar; the failures stay Parquet).",
        ),
    ] = "parquet",
    caption: Annotated[
        str | None,
        typer.Option(help="webdataset: the input column each sample's KEY.txt holds."),
    ] = None,
    dedup: Annotated[
        str | None,
        typer.Option(
            help="content: keep a body (same sha256) once; duplicates.parquet names the "
            "items dropped and the item each repeats."
        ),
    ] = None,
    allow_partial: Annotated[
        bool,
        typer.Option(
            "--allow-partial",
            help="Merge what is there when ranks are unfinished or parts missing "
            "(the manifest says partial; missing.parquet lists what lacks).",
        ),
    ] = False,
    ranks: Annotated[
        int | None, typer.Option(help="Merge with N local processes (files split among them).")
    ] = None,
    rank: Annotated[int | None, typer.Option(help="This process's merge rank.")] = None,
    world_size: Annotated[int | None, typer.Option(help="Number of merge processes.")] = None,
    s3_endpoint: S3EndpointOption = None,
    s3_region: S3RegionOption = None,
    staging: Annotated[
        Path | None,
        typer.Option(
            help="-o s3://: the dataset is made in a temporary folder here (default: RUN), "
            "uploaded, then removed; a RUN in s3:// has its documents copied here.",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Merge every rank's parts into a Hugging Face dataset: data/ (successes), errors/
    (failures), README.md (the card) and manifest.json; or webdataset shards.

    Under srun, each task merges its share of the files. Into a bucket (-o s3://BUCKET/PREFIX,
    pip install 'fetchshard[s3]'), one process makes the dataset in a temporary folder and
    uploads it, manifest.json last; credentials come from the AWS SDK's chain (environment,
    profile, workload identity).

    Exit codes: 0 merged, 1 something missing (named) or failed, 2 bad usage.
    """
    from fetchshard import api

    with user_errors():
        result = api.merge(
            run_dir,
            output=output,
            file_size=file_size,
            file_rows=file_rows,
            row_group_size=row_group_size,
            body_as=body_as,
            compression=compression,
            format=file_format,
            caption=caption,
            dedup=dedup,
            allow_partial=allow_partial,
            ranks=ranks,
            rank=rank,
            world_size=world_size,
            s3_endpoint=s3_endpoint,
            s3_region=s3_region,
            staging=staging,
            log_level=log_level,
            log_to_stderr=True,
        )
    if result.finished and not (ranks is not None and ranks > 1):  # its ranks said it
        typer.echo(
            f"{result.output}: {'complete' if result.complete else 'PARTIAL'}, "
            f"{result.ok:,} ok and {result.failed:,} failed rows in {result.files} files "
            f"({result.bytes / 1e6:,.1f} MB)"
            + (f"; {result.missing:,} planned items without a row" if result.missing else "")
            + (f"; {result.duplicates:,} duplicates left out" if result.duplicates else "")
        )
