"""fetchshard as a library: ``run``, ``plan``, ``merge`` and ``report`` from Python.

    import fetchshard

    result = fetchshard.run("urls.txt", output="out", options={"fetch.per_host_rate": 5})
    merged = fetchshard.merge("out")
    report = fetchshard.report("out")

Each function takes what its command takes: the inputs (and/or one ``config.yaml``) as
arguments, ``config=`` a config file, a keyword per flag, and ``options=`` any option as a
mapping, like ``--set``: ``{"fetch.per_host_rate": 5}`` or ``{"fetch": {"per_host_rate": 5}}``.
The layers are the CLI's: defaults < config file < ``FETCHSHARD_*`` variables < keywords <
``options``. Everything is checked before any work: a bad option raises
:class:`~fetchshard.errors.ConfigError` and nothing is written. Every error raised is a
:class:`~fetchshard.errors.FetchshardError` (``fetchshard.errors``), whose ``exit_code`` is
what the command exits with; each result is a small frozen record (``exit_code`` where a
command can end early).

The ``fetchshard`` commands are thin layers over these functions (cli/: parse, call, render).
A caller's process is not ours: these functions install no import hook and leave the signal
handlers, the garbage collector's thresholds and logging as they found them (a rank handles
SIGINT/SIGTERM/SIGUSR1 while it runs, so a Ctrl-C stops it cleanly: ``complete`` false,
``exit_code`` 75, rerun to resume). Inside a running event loop (a Jupyter notebook) a run's
rank goes to a child process, as with ``ranks=N``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from fetchshard.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    ConfigError,
    FetchshardError,
    RankFailedError,
    RunError,
    UsageError,
)

if TYPE_CHECKING:
    from fetchshard.config import Config
    from fetchshard.merging.documents import MergeManifest
    from fetchshard.merging.job import MergeOptions, MergeOutcome
    from fetchshard.reporting import Report
    from fetchshard.runfolder.documents import LeftoverDone, PlanSliceDone
    from fetchshard.runfolder.objectstore import BucketURL, S3Settings
    from fetchshard.runfolder.view import RunFolder

__all__ = [
    "MergeResult",
    "PlanResult",
    "RunResult",
    "merge",
    "plan",
    "report",
    "run",
]

StrPath: TypeAlias = "str | os.PathLike[str]"
CONFIG_SUFFIXES = (".yaml", ".yml")
HF_SCHEME = "hf://"  # an input that is a Hugging Face repo (hub/input.py)


@dataclass(frozen=True, slots=True)
class RunResult:
    """What :func:`run` did, for the ranks it ran (all of them with ``ranks=N``)."""

    complete: bool  # every rank ran has its whole slice committed
    items: int  # items planned for those ranks (0 for a rank stopped while planning)
    ok: int  # committed rows: successes...
    failed: int  # ...and failures (``error_kind`` says why)
    output: Path  # the output folder (of a run into a bucket: its state folder)
    ranks: tuple[int, ...]  # the ranks this call ran
    world_size: int
    # The generation they ran in (0 unless the run began with another world size); the counts
    # above are theirs in it: of a later one, what they took over of the leftover.
    generation: int = 0

    @property
    def pending(self) -> int:
        """Items without a row yet (a rerun fetches them)."""
        return max(self.items - self.ok - self.failed, 0)

    @property
    def exit_code(self) -> int:
        """0 complete, 75 stopped early (rerun the same call to resume)."""
        return EXIT_OK if self.complete else EXIT_INTERRUPTED


@dataclass(frozen=True, slots=True)
class PlanResult:
    """What :func:`plan` did: the plan ranks it ran and the slices they left."""

    complete: bool  # every plan rank ran has its slice in place
    output: Path  # the output folder (the plan is under ``output/plan``)
    ranks: tuple[int, ...]
    world_size: int  # the plan's, which the run must use
    slices: tuple[PlanSliceDone, ...]  # the done slices of those ranks (of the input)
    # On a run folder whose next generation it prepares (another world size): its number
    # (0: a plan of the input), and the leftover slices those plan ranks wrote.
    generation: int = 0
    leftovers: tuple[LeftoverDone, ...] = ()

    @property
    def rows(self) -> int:
        """Input rows read by the slices."""
        return sum(s.rows for s in self.slices)

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.complete else EXIT_INTERRUPTED


@dataclass(frozen=True, slots=True)
class MergeResult:
    """What :func:`merge` made. The counts are the manifest's once it is written."""

    output: Path | str  # the merged folder, or its s3:// URL
    finished: bool  # every file is in place and manifest.json written (false: a merge rank
    # of several whose others are not done yet)
    complete: bool  # finished with a row for every planned item (false: --allow-partial)
    ok: int  # rows in data/ (or the shards)
    failed: int  # rows in errors/
    missing: int  # planned items without a row (a partial merge)
    duplicates: int  # successes left out by dedup="content"
    files: int
    bytes: int


# -- run ------------------------------------------------------------------------------------


def run(
    *inputs: StrPath | Iterable[StrPath],
    config: StrPath | None = None,
    options: Mapping[str, Any] | None = None,
    output: StrPath | None = None,
    ranks: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    restart: bool = False,
    retry_failed: bool | str | Sequence[str] = False,
    url_column: str | None = None,
    id_column: str | None = None,
    extra_columns: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    token: str | None = None,
    input_format: str | None = None,
    contact: str | None = None,
    per_host_rate: float | None = None,
    max_in_flight: int | None = None,
    images: str | None = None,
    resize: int | None = None,
    resize_mode: str | None = None,
    files: bool = False,
    state_dir: StrPath | None = None,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
    log_level: str | None = None,
    log_to_stderr: bool = False,
    command: Sequence[str] | None = None,
) -> RunResult:
    """Fetch every URL of ``inputs`` into Parquet parts under ``output`` (``fetchshard run``).

    ``inputs``: URL files, globs or folders (txt, csv, tsv, jsonl, parquet; .gz/.zst), and/or
    one config.yaml; ``ranks=N`` starts N local rank processes, else this process runs one
    rank (``rank``/``world_size``, or the launcher's environment: SLURM, torchrun...).
    ``retry_failed``: True (the transient kinds), ``"all"`` or error kinds: fetch again the
    items whose row is such a failure. ``resize=PX`` turns on ``images="resize"``; ``files``
    writes every body as a file (``output.mode: files``). ``log_to_stderr``: also write the
    log lines to stderr at ``run.log_level``, as the command does. ``command``: what the
    ranks record as the command that made the data (the dataset card prints it, secrets
    hidden); by default this call, as ``fetchshard.run urls.txt output=out ...``. The rest as
    ``--help`` says. Safe to call again after any crash or stop: it resumes.
    """
    arguments = dict(locals())  # first: the call as made, to record (_call_words)
    flags: dict[str, Any] = {
        "output.dir": output,
        "run.ranks": ranks,
        "run.rank": rank,
        "run.world_size": world_size,
        "run.restart": True if restart else None,
        **_input_flags(url_column, id_column, extra_columns, input_format, log_level),
        "input.include": list(include) if include else None,
        "input.exclude": list(exclude) if exclude else None,
        "hub.token": token,
        "fetch.contact": contact,
        "fetch.per_host_rate": per_host_rate,
        "fetch.max_in_flight": max_in_flight,
        "images.mode": images or ("resize" if resize is not None else None),
        "images.image_size": resize,
        "images.resize_mode": resize_mode,
        "output.mode": "files" if files else None,
        "output.state_dir": os.fspath(state_dir) if state_dir is not None else None,
        "output.s3_endpoint": s3_endpoint,
        "output.s3_region": s3_region,
    }
    with _library_errors():
        if resize is not None and images not in (None, "resize"):
            raise ConfigError(f"--resize resizes images; it does not go with --images {images}")
        kinds = _retry_kinds(retry_failed)
        if kinds:
            flags["run.retry_failed"] = kinds
        words = _input_words(inputs)
        recorded = _call_words("run", words, arguments) if command is None else list(command)
        job = _rank_job("run", words, config, options, flags, recorded=recorded)
        with _stderr_log(job.config.run.log_level if log_to_stderr else None):
            return _run(job)


def _run(job: _RankJob) -> RunResult:
    """One rank in this process, or (``run.ranks`` > 1, or inside a running event loop) rank
    processes launched from here."""
    from fetchshard.ranks import detect_rank

    config = job.config
    output = config.output.root
    count = config.run.ranks
    if count > 1:
        _before_launch(config, count)
        code = _launch(job, count, range(count), output=output)
        return _run_result(output, range(count), count, complete=code == EXIT_OK)
    info = detect_rank(os.environ, rank=config.run.rank, world_size=config.run.world_size)
    if _in_event_loop():  # a notebook's: the rank's own loop cannot run in this thread
        code = _launch(job, info.world_size, [info.rank], output=output)
        return _run_result(output, [info.rank], info.world_size, complete=code == EXIT_OK)
    # Only a rank needs the engine (aiohttp, ~0.25 s to import); --ranks starts its ranks
    # sooner without it.
    from fetchshard.engine.rank import is_interactive, run_rank

    outcome = run_rank(config, info, interactive=is_interactive(), command=job.recorded)
    return _run_result(output, [info.rank], info.world_size, complete=outcome.complete)


def _before_launch(config: Config, count: int) -> None:
    """What the ranks would refuse, refused once by the launcher: a plan step not complete or
    not this run's; another run's folder; a new generation while the current one runs (which
    the launcher otherwise begins for its ranks)."""
    from fetchshard.inputs import validate_inputs
    from fetchshard.planning.generations import join_generation, uses_input_plan
    from fetchshard.planning.planfile import plan_in_use
    from fetchshard.runfolder.layout import RunPaths
    from fetchshard.runfolder.remote import run_storage

    files = validate_inputs(config.input)
    # Into a bucket: reached here (a missing bucket or key is one line, not one a rank).
    with run_storage(config.output) as storage:
        if storage.restore(RunPaths(config.output.root).run_json) and not config.run.restart:
            storage.check_rebuildable()  # a lost state folder: its world size from the bucket
        if config.run.restart or uses_input_plan(config.output.root, count):
            plan_in_use(config, files, count)  # complete, its own
            return
        join_generation(config, files, count, _warn, storage=storage)


def _warn(message: str) -> None:
    logging.getLogger("fetchshard").warning(message)


def _run_result(
    output: Path, ranks: Iterable[int], world_size: int, *, complete: bool
) -> RunResult:
    """The counts the ranks left in their documents (stats: committed rows; progress: the
    slice's size), the same whether they ran here or in child processes."""
    from fetchshard.runfolder.documents import ProgressSnapshot, RankStats
    from fetchshard.runfolder.generations import read_generations
    from fetchshard.runfolder.layout import RunPaths

    generations = read_generations(output)
    current = generations[-1].number if generations else 0
    paths = RunPaths(output, current)  # the generation those ranks ran in
    ran = tuple(ranks)
    items = ok = failed = 0
    for r in ran:
        stats = RankStats.read(paths.stats(r))
        progress = ProgressSnapshot.read(paths.progress(r))
        if stats is not None:
            ok, failed = ok + stats.stats.ok, failed + stats.stats.failed
        if progress is not None and progress.total is not None:
            items += progress.total
    return RunResult(
        complete=complete,
        items=items,
        ok=ok,
        failed=failed,
        output=output,
        ranks=ran,
        world_size=world_size,
        generation=current,
    )


# -- plan -----------------------------------------------------------------------------------


def plan(
    *inputs: StrPath | Iterable[StrPath],
    config: StrPath | None = None,
    options: Mapping[str, Any] | None = None,
    output: StrPath | None = None,
    ranks: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    restart: bool = False,
    url_column: str | None = None,
    id_column: str | None = None,
    extra_columns: Sequence[str] | None = None,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    token: str | None = None,
    input_format: str | None = None,
    state_dir: StrPath | None = None,
    log_level: str | None = None,
    log_to_stderr: bool = False,
) -> PlanResult:
    """Split the input for a large run (``fetchshard plan``): plan rank r of W reads only its
    1/W of the input and writes it sorted by host under ``output/plan``; a run of the same
    world size, input and options then reads its share from there. ``ranks=W`` starts W local
    plan ranks; rerunning redoes only the ranks that did not finish. ``restart`` discards a
    plan made for another input or world size."""
    flags: dict[str, Any] = {
        "output.dir": output,
        "run.ranks": ranks,
        "run.rank": rank,
        "run.world_size": world_size,
        "run.restart": True if restart else None,
        **_input_flags(url_column, id_column, extra_columns, input_format, log_level),
        "input.include": list(include) if include else None,
        "input.exclude": list(exclude) if exclude else None,
        "hub.token": token,
        "output.state_dir": os.fspath(state_dir) if state_dir is not None else None,
    }
    with _library_errors():
        job = _rank_job("plan", inputs, config, options, flags)
        with _stderr_log(job.config.run.log_level if log_to_stderr else None):
            return _plan(job)


def _plan(job: _RankJob) -> PlanResult:
    from fetchshard.engine.stop import StopFlag, stop_signals
    from fetchshard.planning import Interrupted
    from fetchshard.planning.generations import uses_input_plan
    from fetchshard.planning.leftover import plan_generation_step
    from fetchshard.planning.step import check_plan_config, plan_step_rank
    from fetchshard.ranks import detect_rank

    config = job.config
    output = config.output.root
    count = config.run.ranks
    world = count if count > 1 else config.run.world_size
    if world is None:
        world = detect_rank(os.environ, rank=config.run.rank, world_size=None).world_size
    of_input = config.run.restart or uses_input_plan(output, world)
    if of_input:
        check_plan_config(config)
    if count > 1:
        if of_input:
            from fetchshard.inputs import validate_inputs

            validate_inputs(config.input)
        else:
            _before_launch(config, count)  # begins the generation the plan ranks prepare
        code = _launch(job, count, range(count))
        return _plan_result(output, range(count), count, complete=code == EXIT_OK)
    info = detect_rank(os.environ, rank=config.run.rank, world_size=config.run.world_size)
    stop = StopFlag()
    with stop_signals(stop):
        try:
            if not of_input:
                number, leftovers = plan_generation_step(
                    config, info, should_stop=lambda: bool(stop)
                )
                return PlanResult(
                    True, output, (info.rank,), info.world_size, (), number, tuple(leftovers)
                )
            done = plan_step_rank(config, info, should_stop=lambda: bool(stop))
        except Interrupted:
            return _plan_result(output, [info.rank], info.world_size, complete=False)
    return PlanResult(True, output, (info.rank,), info.world_size, (done,))


def _plan_result(
    output: Path, ranks: Iterable[int], world_size: int, *, complete: bool
) -> PlanResult:
    from fetchshard.planning.leftover import leftovers_of
    from fetchshard.runfolder.documents import PlanSliceDone
    from fetchshard.runfolder.generations import read_generations
    from fetchshard.runfolder.layout import PlanPaths

    ran = tuple(ranks)
    generations = read_generations(output)
    if len(generations) > 1 and generations[-1].world_size == world_size:
        number = generations[-1].number
        leftovers = leftovers_of(output, generations, number, ran)
        return PlanResult(complete, output, ran, world_size, (), number, tuple(leftovers))
    paths = PlanPaths(output)
    slices = (PlanSliceDone.read(paths.slice(r).done) for r in ran)
    return PlanResult(complete, output, ran, world_size, tuple(s for s in slices if s))


# -- merge ----------------------------------------------------------------------------------


def merge(
    run_dir: StrPath,
    *,
    output: StrPath | None = None,
    file_size: int | str = "500MB",
    file_rows: int | None = None,
    row_group_size: int | str = "10MiB",
    body_as: str = "auto",
    compression: str = "zstd",
    format: str = "parquet",
    caption: str | None = None,
    dedup: str | None = None,
    allow_partial: bool = False,
    ranks: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
    staging: StrPath | None = None,
    log_level: str = "info",
    log_to_stderr: bool = False,
) -> MergeResult:
    """Merge every rank's parts of ``run_dir`` into one dataset (``fetchshard merge``): by
    default ``run_dir/merged`` in the Hugging Face layout (data/, errors/, README.md,
    manifest.json), or webdataset shards with ``format="webdataset"``. Sizes are bytes or
    text like ``"500MB"``, ``"2GiB"``. Raises :class:`~fetchshard.errors.RunError` naming
    what is missing when a rank is unfinished (``allow_partial`` merges what is there).
    ``ranks=K`` merges with K local processes; ``rank``/``world_size`` (or srun) make this
    process one of several, each writing its share of the files.

    ``output="s3://bucket/prefix"``: the dataset is made in a temporary folder in ``staging``
    (default: ``run_dir``), then uploaded, ``manifest.json`` last, and the folder removed; one
    merge process. ``s3_endpoint``/``s3_region`` (default: ``FETCHSHARD_S3_ENDPOINT`` /
    ``FETCHSHARD_S3_REGION``) say where the S3 API is; credentials come from the SDK's chain
    (environment, profile, workload identity). The bucket is reached before any work."""
    from fetchshard.merging.job import MergeOptions
    from fetchshard.runfolder.layout import find_run_root
    from fetchshard.runfolder.objectstore import S3Settings, output_location

    with _library_errors():
        source = output_location(os.fspath(run_dir), what="RUN")
        if source is not None and output is None:
            output = str(dataclasses.replace(source, prefix=source.key("merged")))
        bucket = output_location(os.fspath(output)) if output is not None else None
        if bucket is None and source is None and (s3_endpoint or s3_region or staging):
            raise ConfigError(
                "--s3-endpoint, --s3-region and --staging: only with s3://... (RUN or -o)"
            )
        options = MergeOptions(
            output=Path(output) if output is not None and bucket is None else None,
            file_bytes=parse_bytes(file_size, "--file-size"),
            file_rows=file_rows,
            row_group_bytes=parse_bytes(row_group_size, "--row-group-size"),
            compression=compression,
            body_as=body_as,
            allow_partial=allow_partial,
            file_format=format,
            caption=caption,
            dedup=dedup,
        )
        with _stderr_log(log_level if log_to_stderr else None):
            settings = S3Settings.resolve(os.environ, endpoint=s3_endpoint, region=s3_region)
            where = Path(staging) if staging is not None else None
            if source is not None:
                return _merge_from_bucket(
                    source, options, bucket, settings, where, ranks, rank, world_size
                )
            run_dir = find_run_root(Path(run_dir))  # a mirror's is inside it
            if bucket is not None:
                if (ranks or 1) > 1:
                    raise ConfigError("-o s3://: one merge process makes the dataset (no --ranks)")
                return _merge_to_bucket(
                    Path(run_dir), options, bucket, settings, where, rank, world_size
                )
            if ranks is not None and ranks > 1:
                if rank is not None:
                    raise ConfigError("--ranks starts every merge rank itself; do not add --rank")
                return _merge_launched(
                    Path(run_dir), options, ranks, file_size, row_group_size, log_level
                )
            return _merge_here(Path(run_dir), options, rank, world_size)


def _merge_from_bucket(
    source: BucketURL,
    options: MergeOptions,
    bucket: BucketURL | None,
    settings: S3Settings,
    staging: Path | None,
    ranks: int | None,
    rank: int | None,
    world_size: int | None,
) -> MergeResult:
    """Merge a run in a bucket (its documents copied to a temporary folder in ``staging``,
    its parts read where they are) into a bucket or a local folder."""
    from fetchshard.runfolder.remote import bucket_run

    if _merge_world(rank, world_size) > 1 or (ranks or 1) > 1:
        raise ConfigError(
            "a run in s3://: one merge process makes the dataset (no --ranks, --rank or srun)"
        )
    with bucket_run(source, settings, parent=staging) as folder:
        run_dir = folder.paths.root
        if bucket is not None:
            return _merge_to_bucket(
                run_dir, options, bucket, settings, staging or run_dir, rank, world_size, folder
            )
        return _merge_here(run_dir, options, rank, world_size, folder)


def _merge_world(rank: int | None, world_size: int | None) -> int:
    """The world size a merge process is one of (srun's, or the flags')."""
    from fetchshard.ranks import detect_rank

    return detect_rank(os.environ, rank=rank, world_size=world_size).world_size


def _merge_to_bucket(
    run_dir: Path,
    options: MergeOptions,
    bucket: BucketURL,
    settings: S3Settings,
    staging: Path | None,
    rank: int | None,
    world_size: int | None,
    folder: RunFolder | None = None,
) -> MergeResult:
    """Check everything, reach the bucket, then merge into staging and upload."""
    from fetchshard.engine.rank import is_interactive
    from fetchshard.merging.bucket import merge_into_bucket
    from fetchshard.merging.progress import MergeProgress
    from fetchshard.runfolder.objectstore import MAX_PUT_BYTES, ObjectStore

    if _merge_world(rank, world_size) > 1:
        raise ConfigError(
            "-o s3://: one merge process makes the whole dataset (no --rank/--world-size, "
            "no srun -n N)"
        )
    # A file ends a little past --file-size; each goes up in one PUT of at most 5 GiB.
    if options.file_bytes > MAX_PUT_BYTES * 4 // 5:
        raise ConfigError("--file-size: at most 4GiB with -o s3:// (one upload per file)")
    with ObjectStore(bucket.bucket, settings) as store:
        store.check()
        with MergeProgress(0, bar=is_interactive()) as watch:
            outcome, _ = merge_into_bucket(
                run_dir, options, bucket, store, staging=staging, watch=watch, folder=folder
            )
    return _merge_result(str(bucket), outcome.manifest, outcome)


def _merge_here(
    run_dir: Path,
    options: MergeOptions,
    rank: int | None,
    world_size: int | None,
    folder: RunFolder | None = None,
) -> MergeResult:
    from fetchshard.engine.rank import is_interactive
    from fetchshard.merging.job import merge as merge_job
    from fetchshard.merging.progress import MergeProgress
    from fetchshard.ranks import detect_rank

    info = detect_rank(os.environ, rank=rank, world_size=world_size)
    with MergeProgress(info.rank, bar=is_interactive()) as watch:
        outcome = merge_job(
            run_dir, options, rank=info.rank, world_size=info.world_size, watch=watch, folder=folder
        )
    if outcome.manifest is None:
        logging.getLogger("fetchshard").info(
            "merge rank %d: its %d files are done; the others' are not all there yet",
            info.rank,
            outcome.written + outcome.reused,
        )
    return _merge_result(outcome.root, outcome.manifest, outcome)


def _merge_launched(
    run_dir: Path,
    options: MergeOptions,
    count: int,
    file_size: int | str,
    row_group_size: int | str,
    log_level: str,
) -> MergeResult:
    """``ranks=K``: K merge processes of this merge, each ``fetchshard merge --rank r``."""
    from fetchshard.launch import start_ranks
    from fetchshard.merging.documents import MergeManifest
    from fetchshard.runfolder.layout import MergedPaths

    _main_thread("merge")
    args = [str(run_dir), "--file-size", str(file_size)]
    args += ["--row-group-size", str(row_group_size), "--body-as", options.body_as]
    args += ["--compression", options.compression, "--log-level", log_level]
    args += ["-o", str(options.output)] if options.output is not None else []
    args += ["--file-rows", str(options.file_rows)] if options.file_rows is not None else []
    args += ["--allow-partial"] if options.allow_partial else []
    args += ["--format", options.file_format]
    args += ["--caption", options.caption] if options.caption is not None else []
    args += ["--dedup", options.dedup] if options.dedup is not None else []
    head = [sys.executable, "-m", "fetchshard", "merge", *args]
    codes = start_ranks(
        [[*head, "--rank", str(r), "--world-size", str(count)] for r in range(count)], {}
    )
    failed = [(r, c) for r, c in enumerate(codes) if c != EXIT_OK]
    if failed:
        listed = ", ".join(f"merge rank {r} exited {c}" for r, c in failed)
        raise RankFailedError(f"{len(failed)} of {count} merge ranks failed: {listed}")
    root = options.output or run_dir / "merged"
    return _merge_result(root, MergeManifest.read(MergedPaths(root).manifest), None)


def _merge_result(
    root: Path | str, manifest: MergeManifest | None, outcome: MergeOutcome | None
) -> MergeResult:
    if manifest is None:  # this rank's files only: the plan's counts
        ok = outcome.plan.ok if outcome else 0
        failed = outcome.plan.failed if outcome else 0
        files = len(outcome.plan.files) if outcome else 0
        return MergeResult(
            output=root,
            finished=False,
            complete=False,
            ok=ok,
            failed=failed,
            missing=0,
            duplicates=0,
            files=files,
            bytes=0,
        )
    counts = manifest.counts
    return MergeResult(
        output=root,
        finished=True,
        complete=manifest.complete,
        ok=counts["ok"],
        failed=counts["failed"],
        missing=counts.get("missing", 0),
        duplicates=counts.get("duplicates", 0),
        files=len(manifest.files),
        bytes=manifest.bytes,
    )


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


def parse_bytes(value: int | str, option: str) -> int:
    """``500MB``, ``2GiB``, ``1048576`` (or an int) -> bytes; else a ConfigError naming
    ``option``."""
    import re

    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS:
        raise ConfigError(f"{option}: expected a size like 500MB or 2GiB, got {value!r}")
    return int(float(found.group(1)) * _UNITS[unit])


# -- report ---------------------------------------------------------------------------------


def report(
    run_dir: StrPath,
    *,
    html: StrPath | None = None,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
) -> Report:
    """How far the job in ``run_dir`` is, how fast, when it ends, which ranks need a look and
    what fails (``fetchshard report``; ``.to_bytes()`` is its ``--json``). Only reads the
    folder, so it is safe on a live job. ``html``: also write the report there as one
    self-contained page. ``run_dir`` may be a run in a bucket (``s3://bucket/prefix``; its
    endpoint and region as for :func:`merge`)."""
    from fetchshard.reporting import build_report
    from fetchshard.runfolder.objectstore import S3Settings, output_location
    from fetchshard.runfolder.view import RunFolder

    with _library_errors():
        location = output_location(os.fspath(run_dir), what="RUN")
        if location is None:
            if s3_endpoint or s3_region:
                raise ConfigError("--s3-endpoint, --s3-region: only for a run in s3://...")
            result = build_report(RunFolder(Path(run_dir)))
        else:
            from fetchshard.runfolder.remote import bucket_run

            settings = S3Settings.resolve(os.environ, endpoint=s3_endpoint, region=s3_region)
            with bucket_run(location, settings) as folder:
                result = build_report(folder)
        if html is not None:
            _write_html(result, Path(html))
        return result


def _write_html(result: Report, path: Path) -> None:
    """Write the page atomically (a reader never sees half of it), with a new file's mode."""
    from fetchshard.reporting.html import render_html
    from fetchshard.runfolder.storage import write_atomic

    write_atomic(path, render_html(result).encode())
    mask = os.umask(0)  # mkstemp made it 0600: give it the mode of any new file
    os.umask(mask)
    path.chmod(0o666 & ~mask)


# -- what run and plan share ----------------------------------------------------------------


@dataclass(frozen=True)
class _RankJob:
    """A command whose processes are ranks (run, plan): its config, and the overrides a
    launcher hands its ranks."""

    command: str
    config: Config
    config_file: Path | None
    overrides: dict[str, Any]
    recorded: tuple[str, ...] = ()  # the command line its ranks record (secrets hidden)


def _rank_job(
    command: str,
    inputs: Iterable[StrPath | Iterable[StrPath]],
    config: StrPath | None,
    options: Mapping[str, Any] | None,
    flags: Mapping[str, Any],
    *,
    recorded: Sequence[str] = (),
) -> _RankJob:
    """Flags, input paths and ``options`` over the config file (a rank started by ``ranks=N``
    gets its launcher's as data, below its own, and records its launcher's command line
    instead of ``recorded``); checked before any work."""
    from fetchshard.config import load_config
    from fetchshard.launch import inherited_command, inherited_overrides
    from fetchshard.redact import redact_command

    _main_thread(command)
    config_file, paths = _split_inputs(inputs, config)
    overrides = inherited_overrides(os.environ)
    overrides.update({k: _plain(v) for k, v in flags.items() if v is not None})
    if paths:
        overrides["input.paths"] = [
            p if p.startswith(HF_SCHEME) else os.path.abspath(p) for p in paths
        ]
    overrides.update(_option_pairs(options))
    loaded = load_config(config_file, overrides=overrides)
    if not loaded.input.paths:
        raise ConfigError("no input: give URL files on the command line or input.paths in a config")
    inp = loaded.input
    if inp.include or inp.exclude or any(p.startswith(HF_SCHEME) for p in inp.paths):
        from fetchshard.hub.input import prepare  # lists the repo once for the run

        loaded = prepare(loaded)
    if loaded.run.ranks > 1 and loaded.run.rank is not None:
        raise ConfigError("--ranks starts every rank itself; do not combine it with --rank")
    recorded = inherited_command(os.environ) or recorded
    return _RankJob(command, loaded, config_file, overrides, tuple(redact_command(recorded)))


def _launch(
    job: _RankJob, world_size: int, ranks: Iterable[int], *, output: Path | None = None
) -> int:
    from fetchshard.launch import launch_ranks

    return launch_ranks(
        job.config_file,
        job.overrides,
        world_size,
        ranks=list(ranks),
        output=output,  # with it, the job's progress (report.live): one bar on a terminal
        interactive=output is not None and sys.stderr.isatty(),
        command=job.command,
        recorded=job.recorded,
    )


def _input_flags(
    url_column: str | None,
    id_column: str | None,
    extra_columns: Sequence[str] | None,
    input_format: str | None,
    log_level: str | None,
) -> dict[str, Any]:
    """The config keys of the input options run and plan share."""
    return {
        "input.url_column": url_column,
        "input.id_column": id_column,
        "input.extra_columns": list(extra_columns) if extra_columns is not None else None,
        "input.format": input_format,
        "run.log_level": log_level,
    }


def _input_words(inputs: Iterable[StrPath | Iterable[StrPath]]) -> list[str]:
    """The inputs as given (paths, or collections of them), as one list of words."""
    words: list[str] = []
    for item in inputs:
        if isinstance(item, str | os.PathLike):
            words.append(os.fspath(item))
            continue
        for path in item:
            if not isinstance(path, str | os.PathLike):
                raise ConfigError(f"inputs: expected paths, got {path!r}")
            words.append(os.fspath(path))
    return words


def _split_inputs(
    inputs: Iterable[StrPath | Iterable[StrPath]], config: StrPath | None
) -> tuple[Path | None, list[str]]:
    """A ``*.yaml`` among the inputs is the config file (at most one, with ``config``)."""
    words = _input_words(inputs)
    configs = [w for w in words if w.lower().endswith(CONFIG_SUFFIXES)]
    if config is not None:
        configs.insert(0, os.fspath(config))
    if len(configs) > 1:
        raise ConfigError(f"give at most one config file, not {', '.join(configs)}")
    others = [w for w in words if not w.lower().endswith(CONFIG_SUFFIXES)]
    return (Path(configs[0]) if configs else None), others


def _call_words(function: str, inputs: Sequence[str], arguments: Mapping[str, Any]) -> list[str]:
    """A library call as the words its ranks record: ``fetchshard.run``, the inputs, each
    keyword given a value (``output=out``), then each option (``fetch.per_host_rate=5``);
    the values of the options that hold secrets hidden, as on a command line (redact.py)."""
    from fetchshard.redact import REDACTED, secret_option

    words = [f"fetchshard.{function}", *inputs]
    for name, value in arguments.items():
        if (
            name not in ("inputs", "options", "command")
            and value is not None
            and value is not False
        ):
            words.append(f"{name}={REDACTED if name == 'token' else _word(value)}")
    for key, value in _option_pairs(arguments.get("options")).items():
        words.append(f"{key}={REDACTED if secret_option(key) else _word(value)}")
    return words


def _word(value: Any) -> str:
    """A keyword's or option's value as a word: text as it is, the rest as Python writes it."""
    if isinstance(value, str | os.PathLike):
        return os.fspath(value)
    return repr(_plain(value))


def _retry_kinds(retry_failed: bool | str | Sequence[str]) -> list[str]:
    """``retry_failed`` as run.retry_failed: True -> the transient kinds."""
    if retry_failed is True:
        return ["transient"]
    if not retry_failed:
        return []
    if isinstance(retry_failed, str):
        return [retry_failed]
    return list(retry_failed)


def _option_pairs(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"fetch.per_host_rate": 5}`` and ``{"fetch": {"per_host_rate": 5}}`` alike, as
    dotted keys (a key without a dot and not a mapping is refused by the config)."""
    pairs: dict[str, Any] = {}
    for key, value in (options or {}).items():
        if not isinstance(key, str):
            raise ConfigError(f"options: {key!r} is not an option name like fetch.per_host_rate")
        if "." not in key and isinstance(value, Mapping):
            pairs.update({f"{key}.{name}": _plain(v) for name, v in value.items()})
        else:
            pairs[key] = _plain(value)
    return pairs


def _plain(value: Any) -> Any:
    """Paths as text, collections as lists: what the config reads and ranks get as JSON."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _main_thread(command: str) -> None:
    """Ranks and launchers handle the stop signals, which Python delivers to the main thread
    only."""
    if threading.current_thread() is not threading.main_thread():
        raise UsageError(
            f"fetchshard.{command}() must be called from the main thread (it handles SIGINT "
            "and SIGTERM to stop cleanly); use a process, not a thread, to run it beside "
            "other work"
        )


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def _library_errors() -> Iterator[None]:
    """The OS's errors (disk full, permissions, a file where a folder should be...) as
    :class:`RunError`, so a caller catches one tree."""
    try:
        yield
    except FetchshardError:
        raise
    except OSError as exc:
        raise RunError(str(exc)) from exc


@contextlib.contextmanager
def _stderr_log(level: str | None) -> Iterator[None]:
    """fetchshard's log lines on stderr for the block at ``level`` (None: none), with the pid
    in a rank of many; the ``fetchshard`` logger's level as it was afterwards (a rank sets
    it to its log file's)."""
    logger = logging.getLogger("fetchshard")
    before = logger.level
    handler: logging.Handler | None = None
    if level is not None:
        from fetchshard.environment import CHILD, CHILD_STDERR_LEVEL, SLURM_RANK
        from fetchshard.redact import RedactingFormatter

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
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(before)
