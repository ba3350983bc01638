"""One rank from start to finish: claim the folder, plan, recover, fetch, write its documents."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetchshard import __version__
from fetchshard.config import Config, to_plain
from fetchshard.engine.eventloop import run_event_loop
from fetchshard.engine.progress import Progress
from fetchshard.engine.retry import throttled_host_bound, url_time_bound
from fetchshard.engine.stages import Stage, columns_with, configured_stages
from fetchshard.engine.stop import StopFlag, stop_signals
from fetchshard.environment import CHILD
from fetchshard.errors import EXIT_INTERRUPTED, EXIT_OK, select_kinds
from fetchshard.inputs import InputSet, open_inputs
from fetchshard.inputs.specs import RESERVED_COLUMNS
from fetchshard.ledger import Ledger
from fetchshard.output.files import clear_partial, file_columns
from fetchshard.output.parts import recover
from fetchshard.planning import Interrupted
from fetchshard.planning.fingerprint import claim_run_folder, fingerprint
from fetchshard.planning.generations import check_fence, generation_fingerprint, join_generation
from fetchshard.planning.leftover import SealContext, plan_generation_rank
from fetchshard.planning.planfile import plan_in_use
from fetchshard.planning.rank import RankPlanResult, plan_rank, rank_shares
from fetchshard.ranks import RankInfo, cpus_available
from fetchshard.redact import RedactingFormatter, redact_command
from fetchshard.runfolder.documents import DoneMarker, RankStats
from fetchshard.runfolder.generations import Generation
from fetchshard.runfolder.layout import PlanPaths, RunPaths
from fetchshard.runfolder.lock import rank_lock
from fetchshard.runfolder.remote import run_storage
from fetchshard.runfolder.storage import Storage, fsync_path
from fetchshard.stats import Stats

log = logging.getLogger("fetchshard")


@dataclass(frozen=True, slots=True)
class RankOutcome:
    complete: bool
    stats: Stats

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.complete else EXIT_INTERRUPTED


def run_rank(
    config: Config,
    info: RankInfo,
    *,
    interactive: bool = False,
    stages: tuple[Stage, ...] | None = None,
    command: Sequence[str] = (),
) -> RankOutcome:
    """Run one rank of a job; safe to call again after any crash (it resumes).

    ``stages``: those between fetch and write; by default the ones the config asks for.
    ``command``: the command line (or library call) that started the job, recorded in the
    rank's stats (secrets hidden) for the dataset card."""
    if stages is None:
        stages = configured_stages(config)
    # Extra input columns keep clear of every output column: the stages', ``path``, ``md5``...
    reserved = columns_with(stages).extended(file_columns(config)).names | RESERVED_COLUMNS
    inputs = open_inputs(config.input, reserved=reserved)
    with run_storage(config.output) as storage:
        return _run_rank(config, info, inputs, storage, interactive, stages, command)


def _run_rank(
    config: Config,
    info: RankInfo,
    inputs: InputSet,
    storage: Storage,
    interactive: bool,
    stages: tuple[Stage, ...],
    command: Sequence[str],
) -> RankOutcome:
    root = config.output.root
    restart = config.run.restart
    # A state folder lost with its machine starts from the run's own run.json, in the bucket.
    if storage.restore(RunPaths(root).run_json) and not restart:
        storage.check_rebuildable()
    if restart:  # everything starts over as generation 0
        generation = Generation(0, info.world_size)
        generations = [generation]
    else:
        generations, generation = join_generation(
            config, inputs.files, info.world_size, log.warning, storage=storage
        )
    paths = RunPaths(root, generation.number)
    from_plan = (
        plan_in_use(config, inputs.files, info.world_size) if not generation.number else None
    )
    fp = generation_fingerprint(
        fingerprint(config, inputs.files, info.world_size, planned=from_plan is not None),
        generation.number,
    )
    # Held for the rank's whole life: exactly-once rests on one writer per rank.
    with rank_lock(
        paths.lock(info.rank), info.rank, wait=config.run.lock_wait, on_wait=log.warning
    ):
        if not restart:
            check_fence(root, generation)  # before anything is written
        if generation.number == 0:
            claim_run_folder(paths, fp, info, restart=restart, storage=storage)
        handler = _log_to_file(paths.log(info.rank), config.run.log_level)
        try:
            stop = StopFlag()
            with stop_signals(stop):
                planner = _Planner(
                    config, info, fp, inputs, stop, from_plan, generations, generation, storage
                )
                return _rank(
                    config, info, paths, storage, planner, stop, interactive, stages, command
                )
        finally:
            logging.getLogger("fetchshard").removeHandler(handler)
            handler.close()


def _log_to_file(path: Path, level: str) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level.upper())
    root = logging.getLogger("fetchshard")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)
    return handler


@dataclass(frozen=True)
class _Planner:
    """How the rank plans: from the input (or a plan step) in generation 0, from the
    leftover of the generation before in a later one."""

    config: Config
    info: RankInfo
    fp: dict[str, Any]
    inputs: InputSet
    stop: StopFlag
    from_plan: PlanPaths | None
    generations: list[Generation]
    generation: Generation
    storage: Storage

    def plan(self, ledger: Ledger, progress: Progress) -> RankPlanResult:
        def read(rows: int) -> None:
            progress.update(state="planning", input_rows=rows)

        if self.generation.number:
            ctx = SealContext(
                self.config.output.root,
                self.config,
                self.inputs,
                self.generations,
                should_stop=lambda: bool(self.stop),
                storage=self.storage,
            )
            return plan_generation_rank(
                ledger, ctx, self.info, self.fp, self.generation.number, on_batch=read
            )
        return plan_rank(
            ledger,
            self.config,
            self.info,
            self.fp,
            inputs=self.inputs,
            should_stop=lambda: bool(self.stop),
            on_batch=read,
            on_count=read,
            from_plan=self.from_plan,
        )


def _rank(
    config: Config,
    info: RankInfo,
    paths: RunPaths,
    storage: Storage,
    planner: _Planner,
    stop: StopFlag,
    interactive: bool,
    stages: tuple[Stage, ...],
    command: Sequence[str],
) -> RankOutcome:
    from fetchshard.engine.job import FetchJob  # the fetch engine: aiohttp, ~0.25 s

    rank = info.rank
    log.info("fetchshard %s as %s, %d CPUs", __version__, info.describe, cpus_available(os.environ))
    if paths.generation:
        log.info("generation %d of this run", paths.generation)
    for stage in stages:
        log.info("stage %s: %s", stage.name, getattr(stage, "describe", stage.name))
    progress = Progress(
        paths.progress(rank),
        info,
        interactive=interactive,
        interval=config.run.progress_interval,
        storage=storage,
    )
    with Ledger(paths.ledger_paths(rank)) as ledger:
        progress.update(state="planning")
        try:
            result = planner.plan(ledger, progress)
        except Interrupted:
            progress.update(state="interrupted", force=True)
            progress.close()
            return RankOutcome(False, Stats())
        if result.skipped:
            log.info("plan found in the ledger; resuming")
        next_part = recover(paths, rank, ledger, storage=storage)
        if config.run.retry_failed:
            _requeue_failed(ledger, paths, storage, rank, config.run.retry_failed)
        counts = ledger.counts()
        log.info(
            "slice: %d items, %d committed, %d to do",
            counts.total,
            counts.committed,
            counts.pending,
        )
        progress.set_total(counts.total, counts.committed, ledger.error_counts())
        log.info(
            "one URL can hold this rank at most %.0fs, a host answering only 429/503 at most "
            "%.0fs (README: how long the tail can be)",
            url_time_bound(config.fetch),
            throttled_host_bound(config.fetch, rank_shares(ledger, config, info).widest),
        )
        session = Stats()
        if counts.pending and not stop:
            job = FetchJob(
                config, info, paths, ledger, next_part, progress, stop, stages, storage=storage
            )
            session = run_event_loop(job.fetch_all())
        counts = ledger.counts()
        complete = counts.pending == 0
        totals = _totals(ledger, session)
        # Before the documents that say the rank stopped: a reader then finds the ledger
        # that goes with them.
        storage.snapshot_ledger(paths.ledger_paths(rank))
        now = time.time()
        RankStats(
            rank=rank,
            world_size=info.world_size,
            complete=complete,
            stats=totals,
            written_at=now,
            settings=to_plain(config),
            command=redact_command(command),
        ).write(paths.stats(rank), durable=True, storage=storage)
        progress.finish("done" if complete else "interrupted", counts.committed, totals)
        storage.flush()  # the last progress document in place before the done marker
        if complete:
            clear_partial(paths, rank)  # every item committed: nothing of it is unfinished
            DoneMarker(
                rank=rank, world_size=info.world_size, items=counts.total, completed_at=now
            ).write(paths.done(rank), durable=True, storage=storage)
            log.info(
                "rank %d done: %d items, %d ok, %d failed",
                rank,
                counts.total,
                counts.committed - counts.failed,
                counts.failed,
            )
        else:
            log.warning(
                "rank %d stopped with %d items to do; rerun to resume", rank, counts.pending
            )
        return RankOutcome(complete, totals)


def _requeue_failed(
    ledger: Ledger, paths: RunPaths, storage: Storage, rank: int, words: tuple[str, ...]
) -> int:
    """Put the committed failures ``words`` name back in the queue (``--retry-failed``)."""
    kinds = select_kinds(words)
    ids = ledger.failed_items(kinds)
    named = "of any kind" if kinds is None else f"({', '.join(words)})"
    if not len(ids):
        log.info("no failed items %s to fetch again", named)
        return 0
    # First: a done marker beside pending items would tell merge the rank is complete.
    done = paths.done(rank)
    storage.remove(done)  # here and where it is published
    if done.parent.is_dir():
        fsync_path(done.parent)
    count = ledger.requeue(ids)
    log.info("fetching %d failed items %s again; their old rows stay until replaced", count, named)
    return count


def _totals(ledger: Ledger, session: Stats) -> Stats:
    """Rank totals: committed rows from the ledger, counters summed over every session."""
    before = Stats.from_dict(ledger.meta.session_stats or {})
    counters = before + session
    ledger.meta.session_stats = counters.to_dict()
    errors = ledger.error_counts()
    failed = sum(errors.values())
    items = ledger.counts().committed
    counters.items, counters.failed, counters.ok = items, failed, items - failed
    counters.errors.clear()
    counters.errors.update(errors)
    return counters


def is_interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get(CHILD) is None
