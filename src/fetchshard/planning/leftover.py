"""Planning a rank of generation g >= 1: the leftover of generation g-1, spread anew.

Two phases through the run folder, like the plan step (no rank talks to another):

1. **Leftover slices.** Every rank of the generation before (a *source*; with
   ``--retry-failed`` every rank of every earlier generation) gets one slice:
   ``gen-000g/leftover/gen-000j-rank-N.*``, the items of its ledger without a committed row
   (and the requeued ones, and with ``--retry-failed`` the chosen failures whose row is still
   current), sorted by (host hash, key hash) as the plan step's slices are (slicefiles.py),
   within ``plan.memory`` as a plan rank sorts its slice (runs spilled to
   ``gen-000g/leftover/spill/gen-000j-rank-N/`` and merged, spill.py), then its
   :class:`LeftoverDone` last. Source i is written by rank ``i % W`` of the new
   generation; one whose owner is not running is written by whichever rank needs it. A source
   rank of generation g-1 is first brought to a committed state: its crash recovery
   (output/parts.recover) runs, its unfinished transfers go, and a rank that never finished
   planning is planned now, as it would have planned itself. The items committed rows stand
   for are never read again.
2. **This rank's runs.** The counted assignment over the new world size from every slice's
   host counts (balanced on the leftover), and this rank's runs of each slice into its ledger
   (planfile.py), exactly as from a plan step.

A new rank reads about 1/W of the old ledgers (its sources' items files and committed ids),
every slice's host counts and sparse index, and its own runs: O(N/W + S x hosts per slice)
for N planned items and S sources, never every old ledger whole (ARCHITECTURE.md).

In a leftover slice, an item's host hash is its host id (a 63-bit hash already) with a top
bit added (``host_hash & ID_MASK`` is the host id, as the rate shares want), and its key hash
its item id scrambled (slicefiles.item_keys): a stopped rank leaves each host's highest ids,
which the scrambling spreads over a heavy host's pieces.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from fetchshard.config import Config
from fetchshard.errors import RankLockedError, RunFolderError
from fetchshard.faults import crash_point
from fetchshard.inputs import InputSet, open_inputs
from fetchshard.ledger import ItemFile, Ledger, read_current_rows, read_only
from fetchshard.output.files import clear_partial
from fetchshard.output.parts import recover
from fetchshard.planning import Interrupted
from fetchshard.planning.generations import generation_fingerprint, join_generation, wait_stopped
from fetchshard.planning.slicefiles import (
    CARRIED,
    ITEMS,
    SORT_KEYS,
    item_keys,
    write_carried,
)
from fetchshard.planning.spill import MergeShape, OverBudget, RunSorter
from fetchshard.planning.step import over_budget, write_sorted
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.documents import LeftoverDone, RunManifest
from fetchshard.runfolder.generations import Generation, leftover_sources
from fetchshard.runfolder.layout import GenerationPaths, PlanPaths, RunPaths, SliceFiles, tmp_of
from fetchshard.runfolder.lock import POLL, is_locked, rank_lock
from fetchshard.runfolder.storage import LOCAL, Storage

if TYPE_CHECKING:
    from fetchshard.planning.rank import RankPlanResult

log = logging.getLogger(__name__)

_TOP = np.uint64(1 << 63)


@dataclass(frozen=True, slots=True)
class Source:
    """A rank of an earlier generation whose leftover a generation takes over."""

    generation: int
    rank: int


def sources(generations: list[Generation], number: int) -> list[Source]:
    """The sources of generation ``number``, in slice order."""
    return [Source(g, r) for g, r in leftover_sources(generations, number)]


def slices(root: Path, generations: list[Generation], number: int) -> list[SliceFiles]:
    paths = GenerationPaths(root, number)
    return [paths.leftover(s.generation, s.rank) for s in sources(generations, number)]


def sealed(root: Path, number: int, source: Source) -> LeftoverDone | None:
    """The source's leftover for generation ``number``, if written."""
    done = LeftoverDone.read(
        GenerationPaths(root, number).leftover(source.generation, source.rank).done
    )
    return done if done is not None and done.generation == number else None


@dataclass
class SealContext:
    """What writing a leftover may need: to plan a source rank that never planned."""

    root: Path
    config: Config
    inputs: InputSet
    generations: list[Generation]
    should_stop: Callable[[], bool]
    storage: Storage = LOCAL


def prepare(ctx: SealContext, number: int, me: int | None) -> None:
    """Make sure every source of generation ``number`` has its leftover written: rank ``me``'s
    own first, then any whose owner is not running (None: every missing one, at once)."""
    found = sources(ctx.generations, number)
    world = ctx.generations[number].world_size
    for i, source in enumerate(found):
        if me is not None and i % world == me and sealed(ctx.root, number, source) is None:
            seal(ctx, number, source)
    own_lock = RunPaths(ctx.root, number)
    paths = GenerationPaths(ctx.root, number)
    done_names = [paths.leftover(s.generation, s.rank).done.name for s in found]
    told = False
    while True:
        # One listing a round, not a read per slice: 400 ranks may be waiting on 400 slices.
        folder = paths.leftover(0, 0).done.parent
        written = set(os.listdir(folder)) if folder.is_dir() else set()
        missing = [(i, s) for i, s in enumerate(found) if done_names[i] not in written]
        if not missing:
            return
        progressed = False
        for i, source in missing:
            owner = i % world
            # Never probe our own lock: closing any descriptor of it would release it.
            if me is None or owner == me or not is_locked(own_lock.lock(owner)):
                progressed |= seal(ctx, number, source) is not None
        if not progressed:
            if ctx.should_stop():
                raise Interrupted("planning interrupted while waiting for leftovers")
            if not told:
                log.info("waiting for %d leftover slices other ranks are writing", len(missing))
                told = True
            time.sleep(POLL)


def seal(ctx: SealContext, number: int, source: Source) -> LeftoverDone | None:
    """Write the source's leftover for generation ``number`` unless another process is on it
    (None); a slice already written is kept, one interrupted is written again whole."""
    files = GenerationPaths(ctx.root, number).leftover(source.generation, source.rank)
    carried = GenerationPaths(ctx.root, number).carried(source.generation, source.rank)
    try:
        with rank_lock(files.lock, source.rank, wait=0):
            done = sealed(ctx.root, number, source)
            if done is not None:
                return done
            for path in [*files.files(), carried, tmp_of(carried)]:
                ctx.storage.remove(path)
            return _seal(ctx, number, source, files, carried)
    except RankLockedError:
        return None


def _seal(
    ctx: SealContext, number: int, source: Source, files: SliceFiles, carried_path: Path
) -> LeftoverDone:
    if ctx.should_stop():
        raise Interrupted("planning interrupted")
    started = time.monotonic()
    old = RunPaths(ctx.root, source.generation)
    ledger_files = old.ledger_paths(source.rank)
    if source.generation == number - 1:  # the generation that just stopped
        with Ledger(ledger_files) as ledger:
            if not ledger.meta.planned:
                _plan_source(ctx, ledger, source)
            # A part published before its commit is adopted (from the bucket, for a run there).
            recover(old, source.rank, ledger, storage=ctx.storage)
            ledger.fold_commits()
        # A reader elsewhere (merge from a bucket) reads the source's ledger as it is now.
        ctx.storage.snapshot_ledger(ledger_files)
        clear_partial(old, source.rank)
    elif not ledger_files.db.exists():
        raise RunFolderError(f"{ledger_files.db} is missing: the run folder is damaged")
    later = [
        g.retry_kinds()
        for g in ctx.generations[source.generation + 1 : number]
        if g.retry_failed is not None
    ]
    chosen_kinds = (
        ctx.generations[number].retry_kinds()
        if ctx.generations[number].retry_failed is not None
        else frozenset()
    )
    budget = ctx.config.plan.memory
    shape = MergeShape.of(budget)
    # As a plan rank sorts its slice: a source rank of a 10^10-row job over 400 ranks may
    # leave 25 M rows, ~15 GB sorted in memory.
    sorter = RunSorter(
        SORT_KEYS,
        shape,
        files.spill_run,
        on_spill=lambda n: crash_point("leftover_spill", n),
        should_stop=ctx.should_stop,
    )

    def hold(rows: pa.Table) -> None:
        try:
            for piece in _fitting(rows, shape.run_bytes):
                sorter.add(piece)
        except OverBudget as exc:
            raise over_budget(
                exc, budget, f"the leftover of {files.name}", "one of its rows takes"
            ) from None

    carried, kept, errors = leftover(
        ledger_files.db,
        ledger_files.items,
        chosen_kinds,
        later,
        previous=source.generation == number - 1,
        sink=hold,
    )
    written, hosts = write_sorted(files, sorter, ctx.storage, ctx.should_stop)
    write_carried(carried_path, carried, ctx.storage)
    crash_point("leftover_written", 1)
    bytes_read = sum(p.stat().st_size for p in (ledger_files.db, ledger_files.items) if p.exists())
    done = LeftoverDone(
        generation=number,
        source_generation=source.generation,
        source_rank=source.rank,
        items=written,
        hosts=hosts,
        carried=len(carried),
        committed=kept,
        bytes_read=bytes_read,
        seconds=round(time.monotonic() - started, 3),
        completed_at=time.time(),
        carried_errors=errors,
    )
    done.write(files.done, durable=True, storage=ctx.storage)
    log.info(
        "leftover of generation %d rank %d: %d items of %d hosts (%d with a row taken up "
        "again), %d rows kept, %.2fs%s",
        source.generation,
        source.rank,
        written,
        hosts,
        len(carried),
        kept,
        done.seconds,
        f" (sorted in {sorter.spilled} runs spilled to disk)" if sorter.spilled else "",
    )
    return done


def _fitting(rows: pa.Table, limit: int) -> Iterator[pa.Table]:
    """``rows`` in pieces of at most ``limit`` bytes (halved until they fit; a row is never
    cut). The items file's batches were cut when the source planned (2048 rows, whatever
    plan.memory): at 16 MiB a batch of 3 KB rows exceeds a run, its halves do not."""
    if rows.nbytes <= limit or len(rows) <= 1:
        yield rows
        return
    half = len(rows) // 2
    yield from _fitting(rows.slice(0, half), limit)
    yield from _fitting(rows.slice(half), limit)


def _plan_source(ctx: SealContext, ledger: Ledger, source: Source) -> None:
    """Plan a source rank that never finished planning, as it would have itself."""
    from fetchshard.planning.rank import plan_rank  # rank.py plans generations from here

    generation = ctx.generations[source.generation]
    info = RankInfo(source.rank, generation.world_size, f"generation {generation.number}")
    run = RunManifest.read(RunPaths(ctx.root).run_json)
    if run is None:
        raise RunFolderError(f"{ctx.root} has no run.json")
    log.info(
        "rank %d of generation %d never finished planning: planning it now",
        source.rank,
        generation.number,
    )
    fp = run.fingerprint  # generation 0's; a later one's differs in the world size
    from_plan = PlanPaths(ctx.root) if fp.get("plan") else None
    from_slices = None
    if generation.number:
        prepare(ctx, generation.number, None)  # its own leftover slices first
        shared = {k: v for k, v in fp.items() if k != "plan"}
        shared["world_size"] = generation.world_size
        fp = generation_fingerprint(shared, generation.number)
        from_plan, from_slices = None, slices(ctx.root, ctx.generations, generation.number)
    plan_rank(
        ledger,
        ctx.config,
        info,
        fp,
        ctx.inputs,
        should_stop=ctx.should_stop,
        from_plan=from_plan,
        from_slices=from_slices,
    )


def leftover(
    db: Path,
    items: Path,
    chosen: frozenset[str] | None,
    taken_later: list[frozenset[str] | None],
    *,
    previous: bool,
    sink: Callable[[pa.Table], None],
) -> tuple[pa.Table, int, dict[str, int]]:
    """A source ledger's leftover as slice rows (:data:`slicefiles.ITEMS`), handed to
    ``sink`` a batch of the items file at a time, in file order (never gathered here: the
    sink sorts them within its budget); returned, the (item id, part) of its committed rows
    taken up again, how many of its rows stay current and, by error kind, the failures
    among those taken up.

    From the ``previous`` generation: its items without a current row, those requeued (their
    row stays until replaced) and its failures of the ``chosen`` kinds (None: any; empty:
    none). From an older one (``--retry-failed``), whose other items the generation after it
    took over long ago: only its failures of the ``chosen`` kinds that no generation since
    took up (``taken_later``: the kinds each later retrying generation took)."""
    rows = read_current_rows(db)
    hosts = _host_names(db)
    failure = np.array([k is not None for k in rows.error_kind], bool) & ~rows.requeued
    gone = np.zeros(len(rows), bool)  # rows a later generation took up already
    for kinds in taken_later:
        gone |= failure & _kinds_match(rows.error_kind, kinds)
    retry = failure & ~gone & _kinds_match(rows.error_kind, chosen)
    if previous:
        again = rows.requeued | retry
    else:
        gone |= rows.requeued
        again = retry
    host_ids = np.array(sorted(hosts), np.int64)
    host_names = pa.array([hosts[h] for h in host_ids.tolist()], pa.string())
    carried_ids, carried_parts = [], []
    position = 0
    if not items.exists():
        raise RunFolderError(f"{items} is missing, but {db} records a plan that needs it")
    reader = ItemFile(items)
    try:
        for batch in reader.batches():
            ids = batch.column("item_id").to_numpy()
            at = np.minimum(np.searchsorted(rows.item_id, ids), max(len(rows) - 1, 0))
            hit = rows.item_id[at] == ids if len(rows) else np.zeros(len(ids), bool)
            has_row_again = hit & again[at] if len(rows) else hit
            take = (~hit | has_row_again) if previous else has_row_again
            if has_row_again.any():
                carried_ids.append(ids[has_row_again])
                carried_parts.append(rows.part[at[has_row_again]])
            if take.any():
                sink(
                    _slice_rows(
                        batch.filter(pa.array(take)),
                        position + np.flatnonzero(take),
                        host_ids,
                        host_names,
                    )
                )
            position += batch.num_rows
    finally:
        reader.close()
    carried = pa.table(
        {
            "item_id": np.concatenate(carried_ids) if carried_ids else np.zeros(0, np.int64),
            "part": np.concatenate(carried_parts) if carried_parts else np.zeros(0, np.int64),
        },
        schema=CARRIED,
    )
    kept = int((~again & ~gone).sum())
    errors = Counter(str(kind) for kind in rows.error_kind[retry])
    return carried, kept, dict(sorted(errors.items()))


def _kinds_match(kinds: np.ndarray, chosen: frozenset[str] | None) -> np.ndarray:
    if chosen is None:
        return np.ones(len(kinds), bool)
    return np.array([k in chosen for k in kinds], bool)


def _slice_rows(
    batch: pa.RecordBatch, positions: np.ndarray, host_ids: np.ndarray, host_names: pa.Array
) -> pa.Table:
    item_id = batch.column("item_id").to_numpy().astype(np.uint64)
    host_id = batch.column("host_id").to_numpy()
    at = np.minimum(np.searchsorted(host_ids, host_id), max(len(host_ids) - 1, 0))
    known = host_ids[at] == host_id if len(host_ids) else np.zeros(len(host_id), bool)
    names = host_names.take(pa.array(at)) if len(host_ids) else pa.nulls(len(host_id), pa.string())
    names = pa.compute.if_else(pa.array(known), names, pa.scalar(None, pa.string()))
    columns: dict[str, Any] = {
        "host_hash": _with_top_bit(host_id.astype(np.uint64)),
        "key_hash": item_keys(item_id),
        "position": positions.astype(np.int64),
        "host_id": batch.column("host_id"),
        "host": names,
    }
    for name in ITEMS.names:
        if name not in columns:
            columns[name] = batch.column(name)
    return pa.table(columns).select(ITEMS.names).cast(ITEMS)


def _with_top_bit(ids: np.ndarray) -> np.ndarray:
    """A 63-bit hash made 64 bits wide (its lowest bit copied on top), its low bits kept."""
    out: np.ndarray = ids | ((ids & np.uint64(1)) * _TOP)
    return out


def _host_names(db: Path) -> dict[int, str]:
    with read_only(db) as conn:
        return {int(h): str(n) for h, n in conn.execute("SELECT host_id, host FROM hosts")}


def plan_generation_rank(
    ledger: Ledger,
    ctx: SealContext,
    info: RankInfo,
    fp: dict[str, Any],
    number: int,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> RankPlanResult:
    """Plan rank ``info.rank`` of generation ``number`` >= 1 (idempotent, like plan_rank):
    once generation ``number - 1`` is stopped, every leftover slice, then its runs."""
    from fetchshard.planning.rank import plan_rank

    if not ledger.meta.planned:
        wait_stopped(
            ctx.root,
            ctx.generations[number - 1],
            lock_wait=ctx.config.run.lock_wait,
            on_wait=log.warning,
        )
        prepare(ctx, number, info.rank)
    return plan_rank(
        ledger,
        ctx.config,
        info,
        fp,
        ctx.inputs,
        should_stop=ctx.should_stop,
        on_batch=on_batch,
        from_slices=slices(ctx.root, ctx.generations, number),
    )


def plan_generation_step(
    config: Config, info: RankInfo, *, should_stop: Callable[[], bool] = lambda: False
) -> tuple[int, list[LeftoverDone]]:
    """``fetchshard plan`` on a run folder whose next generation has ``info.world_size``
    ranks: begin it (once the current one is stopped) and write plan rank ``info.rank``'s
    share of its leftover slices (phase 1), so that its run ranks only read their runs.
    Returns the generation and the leftovers written or found of that share."""
    root = config.output.root
    inputs = open_inputs(config.input)
    generations, generation = join_generation(config, inputs.files, info.world_size, log.warning)
    if generation.number == 0:  # the run is still at this world size: nothing to prepare
        return 0, []
    wait_stopped(
        root,
        generations[generation.number - 1],
        lock_wait=config.run.lock_wait,
        on_wait=log.warning,
    )
    ctx = SealContext(root, config, inputs, generations, should_stop)
    for i, source in enumerate(sources(generations, generation.number)):
        mine = i % info.world_size == info.rank
        if mine and sealed(root, generation.number, source) is None:
            seal(ctx, generation.number, source)  # None: another process is writing it
    return generation.number, leftovers_of(root, generations, generation.number, [info.rank])


def leftovers_of(
    root: Path, generations: list[Generation], number: int, ranks: Iterable[int]
) -> list[LeftoverDone]:
    """The leftover slices of generation ``number`` that plan ranks ``ranks`` write."""
    world = generations[number].world_size
    mine = set(ranks)
    found = []
    for i, source in enumerate(sources(generations, number)):
        done = sealed(root, number, source) if i % world in mine else None
        if done is not None:
            found.append(done)
    return found
