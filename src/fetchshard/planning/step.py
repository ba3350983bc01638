"""``fetchshard plan``: one rank reads its 1/W of the input and writes it for the run's ranks.

Rank p of W reads only its slice (inputs/slices.py), normalizes and hashes every row as
planning does (select.Selector), counts the rows of every host and writes the slice sorted by
(host hash, key hash) (slicefiles.py), then its PlanSliceDone last. A slice larger than
``plan.memory`` is sorted in runs spilled to ``plan/spill/rank-p/`` and merged (spill.py),
into the same bytes. No rank waits for another: ``fetchshard run`` then derives the
assignment from every slice's host counts and reads its own runs of each slice (planfile.py).
A slice whose done document exists is never redone; one interrupted is redone whole (its
files and spilled runs are removed, never appended to).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from fetchshard.config import Config, MiB
from fetchshard.errors import ConfigError
from fetchshard.faults import crash_point
from fetchshard.inputs import InputSet, open_inputs, read_ahead
from fetchshard.planning import Interrupted
from fetchshard.planning.fingerprint import claim_plan_folder, plan_fingerprint
from fetchshard.planning.placement import FixedSpread, is_counted
from fetchshard.planning.select import Selector
from fetchshard.planning.slicefiles import SORT_KEYS, SliceWriter, as_items
from fetchshard.planning.spill import MergeShape, OverBudget, RunSorter
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.documents import PlanSliceDone
from fetchshard.runfolder.layout import PlanPaths, SliceFiles
from fetchshard.runfolder.lock import rank_lock
from fetchshard.runfolder.storage import LOCAL, Storage

log = logging.getLogger(__name__)


def plan_step_rank(
    config: Config,
    info: RankInfo,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    storage: Storage = LOCAL,
) -> PlanSliceDone:
    """Plan rank ``info.rank``'s slice of the input (idempotent: a done slice is kept)."""
    check_plan_config(config)
    inputs = open_inputs(config.input)
    paths = PlanPaths(config.output.root)
    fp = plan_fingerprint(config, inputs.files, info.world_size)
    files = paths.slice(info.rank)
    with rank_lock(files.lock, info.rank, wait=config.run.lock_wait, on_wait=log.warning):
        manifest = claim_plan_folder(paths, fp, info, restart=config.run.restart, storage=storage)
        done = PlanSliceDone.read(files.done)
        if done is not None and done.plan == manifest.digest:
            log.info("plan rank %d: slice already planned (%d rows); kept", info.rank, done.rows)
            return done
        for path in files.files():  # an interrupted slice is redone whole
            storage.remove(path)
        return _plan_slice(config, info, paths, inputs, manifest.digest, should_stop, storage)


def check_plan_config(config: Config) -> None:
    if not is_counted(config.partition.spread):
        raise ConfigError(
            "fetchshard plan places hosts by their counts: partition.spread must be auto, "
            f"not {config.partition.spread!r}"
        )


def over_budget(
    exc: OverBudget, budget: int, what: str, rows: str, alternative: str | None = None
) -> ConfigError:
    """The one line a ``plan.memory`` too small to sort ``what`` (a plan rank's slice, a
    leftover) says: the ``rows`` handed over at once exceed a run, and the budget that would
    do (or ``alternative``)."""
    text = (
        f"plan.memory: {budget} bytes cannot sort {what}: {rows} {exc.held} bytes, more than "
        f"a run (a third of it); set plan.memory to at least {exc.needed} "
        f"({-(-exc.needed // MiB)} MiB)"
    )
    return ConfigError(text if alternative is None else f"{text}, or {alternative}")


def write_sorted(
    files: SliceFiles, sorter: RunSorter, storage: Storage, should_stop: Callable[[], bool]
) -> tuple[int, int]:
    """Publish a slice's files from its sorter's rows (a plan rank's or a leftover's), then
    remove its spilled runs; return (rows, hosts)."""
    with SliceWriter(files, storage) as writer, contextlib.closing(sorter.sorted()) as pieces:
        for piece in pieces:
            if should_stop():
                raise Interrupted("planning interrupted")
            writer.add(piece)
        written, hosts = writer.publish()
    if files.spill is not None:
        storage.remove(files.spill)
    return written, hosts


def _plan_slice(
    config: Config,
    info: RankInfo,
    paths: PlanPaths,
    inputs: InputSet,
    digest: str,
    should_stop: Callable[[], bool],
    storage: Storage,
) -> PlanSliceDone:
    started = time.monotonic()
    part = inputs.slice(info.rank, info.world_size)
    files = paths.slice(info.rank)
    selector = Selector(FixedSpread(1, 1), 0, config.input.max_url_length)  # every row kept
    budget = config.plan.memory
    sorter = RunSorter(
        SORT_KEYS,
        MergeShape.of(budget),
        files.spill_run,
        on_spill=lambda n: crash_point("plan_step_spill", n),
        should_stop=should_stop,
    )
    rows = 0
    for batches, batch in enumerate(read_ahead(part.batches()), 1):
        if should_stop():
            raise Interrupted("plan step interrupted")
        picked = selector.select(batch)
        if picked.kept:
            table = as_items(picked.plan_rows(batch.extras, batch.first_row))
            try:
                sorter.add(table)
            except OverBudget as exc:
                raise over_budget(
                    exc,
                    budget,
                    f"plan rank {info.rank}'s slice",
                    "the rows of one input batch take",
                    f"input.batch_rows below {config.input.batch_rows}",
                ) from None
        rows += len(batch.urls)
        crash_point("plan_step_batch", batches)
    written, hosts = write_sorted(files, sorter, storage, should_stop)
    crash_point("plan_step_written", 1)
    done = PlanSliceDone(
        rank=info.rank,
        world_size=info.world_size,
        plan=digest,
        rows=rows,
        items=written,
        hosts=hosts,
        bytes_read=part.bytes_read,
        seconds=round(time.monotonic() - started, 3),
        completed_at=time.time(),
    )
    done.write(paths.slice(info.rank).done, durable=True, storage=storage)
    log.info(
        "plan rank %d of %d: %d rows of %d hosts from %d bytes of the input in %.1fs%s",
        info.rank,
        info.world_size,
        rows,
        hosts,
        part.bytes_read,
        done.seconds,
        f" (sorted in {sorter.spilled} runs spilled to disk)" if sorter.spilled else "",
    )
    return done
