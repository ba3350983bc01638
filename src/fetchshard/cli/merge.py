"""``fetchshard merge``: the run folder's current rows into one dataset, checked complete."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fetchshard.cli.common import logging_to_stderr, user_errors

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
}


def parse_bytes(text: str, option: str) -> int:
    """``500MB``, ``2GiB``, ``1048576`` -> bytes; anything else a ConfigError naming ``option``."""
    from fetchshard.errors import ConfigError

    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS:
        raise ConfigError(f"{option}: expected a size like 500MB or 2GiB, got {text!r}")
    return int(float(found.group(1)) * _UNITS[unit])


def merge_command(
    run_dir: Annotated[Path, typer.Argument(help="The output folder of `fetchshard run`.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Where the dataset goes (RUN/merged).")
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
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Merge every rank's parts into a Hugging Face dataset: data/ (successes), errors/
    (failures), README.md (the card) and manifest.json; or webdataset shards.

    Exit codes: 0 merged, 1 something missing (named) or failed, 2 bad usage.
    Under srun, each task merges its share of the files.
    """
    from fetchshard.errors import EXIT_OK, ConfigError, RankFailedError

    with user_errors(), logging_to_stderr(log_level):
        from fetchshard.merge.job import MergeOptions

        options = MergeOptions(
            output=output,
            file_bytes=parse_bytes(file_size, "--file-size"),
            file_rows=file_rows,
            row_group_bytes=parse_bytes(row_group_size, "--row-group-size"),
            compression=compression,
            body_as=body_as,
            allow_partial=allow_partial,
            file_format=file_format,
            caption=caption,
            dedup=dedup,
        )
        if ranks is not None and ranks > 1:
            if rank is not None:
                raise ConfigError("--ranks starts every merge rank itself; do not add --rank")
            from fetchshard.launch import start_ranks

            args = [str(run_dir), "--file-size", file_size, "--row-group-size", row_group_size]
            args += ["--body-as", body_as, "--compression", compression, "--log-level", log_level]
            args += ["-o", str(output)] if output is not None else []
            args += ["--file-rows", str(file_rows)] if file_rows is not None else []
            args += ["--allow-partial"] if allow_partial else []
            args += ["--format", file_format]
            args += ["--caption", caption] if caption is not None else []
            args += ["--dedup", dedup] if dedup is not None else []
            head = [sys.executable, "-m", "fetchshard", "merge", *args]
            codes = start_ranks(
                [[*head, "--rank", str(r), "--world-size", str(ranks)] for r in range(ranks)], {}
            )
            failed = [(r, c) for r, c in enumerate(codes) if c != EXIT_OK]
            if failed:
                listed = ", ".join(f"merge rank {r} exited {c}" for r, c in failed)
                raise RankFailedError(f"{len(failed)} of {ranks} merge ranks failed: {listed}")
            return
        _merge_here(run_dir, options, rank, world_size)


def _merge_here(run_dir: Path, options: Any, rank: int | None, world_size: int | None) -> None:
    import logging

    from fetchshard.engine.rank import is_interactive
    from fetchshard.merge.job import merge
    from fetchshard.ranks import detect_rank

    info = detect_rank(os.environ, rank=rank, world_size=world_size)
    with _Watch(info.rank, bar=is_interactive()) as watch:
        outcome = merge(run_dir, options, rank=info.rank, world_size=info.world_size, watch=watch)
    manifest = outcome.manifest
    if manifest is None:
        logging.getLogger("fetchshard").info(
            "merge rank %d: its %d files are done; the others' are not all there yet",
            info.rank,
            outcome.written + outcome.reused,
        )
        return
    counts = manifest.counts
    state = "complete" if manifest.complete else "PARTIAL"
    typer.echo(
        f"{outcome.root}: {state}, {counts['ok']:,} ok and {counts['failed']:,} failed rows "
        f"in {len(manifest.files)} files ({manifest.bytes / 1e6:,.1f} MB)"
        + (f"; {counts['missing']:,} planned items without a row" if counts["missing"] else "")
        + (f"; {counts['duplicates']:,} duplicates left out" if counts.get("duplicates") else "")
    )


class _Watch:
    """A merge's progress: a bar of rows on a terminal, a log line per file elsewhere."""

    def __init__(self, rank: int, *, bar: bool) -> None:
        import logging

        self._log = logging.getLogger("fetchshard")
        self._rank = rank
        self._bar: Any = None
        self._task: Any = None
        if bar:
            from fetchshard.engine.progress import rich_bar

            self._bar = rich_bar("[bold]merging", "rows · {task.fields[detail]}")

    def __enter__(self) -> _Watch:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task("merging", total=None, detail="surveying the parts")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def planned(self, plan: Any, files: int, rows: int) -> None:
        self._files, self._done = files, 0
        if self._bar is not None:  # a log line would break the bar's line
            self._bar.update(self._task, total=rows, detail=f"0/{files} files")
            return
        self._log.info(
            "merge rank %d: %d of the plan's %d files, %s rows",
            self._rank,
            files,
            len(plan.files),
            f"{rows:,}",
        )

    def advanced(self, rows: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, rows)

    def file_done(self, out: Any, written: bool) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(self._task, detail=f"{self._done}/{self._files} files")
            return
        verb = "wrote" if written else "found finished"
        self._log.info("%s %s: %s rows", verb, out.name, f"{out.rows:,}")
