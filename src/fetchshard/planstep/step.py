"""``fetchshard plan``: one rank reads its 1/W of the input and writes it for the run's ranks.

Rank p of W reads only its slice (inputs/slices.py), normalizes and hashes every row as
planning does (plan._Slicer), counts the rows of every host and writes the slice sorted by
(host hash, key hash) (slicefiles.py), then its PlanSliceDone last. No rank waits for another:
``fetchshard run`` then derives the assignment from every slice's host counts and reads its
own runs of each slice (planstep/reader.py). A slice whose done document exists is never
redone; one interrupted is redone whole (its files are replaced, never appended to).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa

from fetchshard import __version__
from fetchshard.config import Config
from fetchshard.errors import ConfigError, PlanError
from fetchshard.faults import crash_point
from fetchshard.inputs import InputSet, open_inputs, read_ahead
from fetchshard.partition import Partitioner
from fetchshard.placement import is_counted
from fetchshard.plan import Interrupted, _Slicer, plan_fingerprint
from fetchshard.planstep.slicefiles import ITEMS, write_slice
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.documents import PlanManifest, PlanSliceDone
from fetchshard.runfolder.layout import PlanPaths
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
    paths = PlanPaths(Path(config.output.dir))
    fp = plan_fingerprint(config, inputs.files, info.world_size)
    with rank_lock(
        paths.lock(info.rank), info.rank, wait=config.run.lock_wait, on_wait=log.warning
    ):
        manifest = _claim(paths, fp, info, restart=config.run.restart, storage=storage)
        done = PlanSliceDone.read(paths.done(info.rank))
        if done is not None and done.plan == manifest.digest:
            log.info("plan rank %d: slice already planned (%d rows); kept", info.rank, done.rows)
            return done
        for path in paths.slice_files(info.rank):  # an interrupted slice is redone whole
            storage.remove(path)
        return _plan_slice(config, info, paths, inputs, manifest.digest, should_stop, storage)


def check_plan_config(config: Config) -> None:
    if not is_counted(config.partition.spread):
        raise ConfigError(
            "fetchshard plan places hosts by their counts: partition.spread must be auto, "
            f"not {config.partition.spread!r}"
        )


def _claim(
    paths: PlanPaths, fp: dict[str, Any], info: RankInfo, *, restart: bool, storage: Storage
) -> PlanManifest:
    """Refuse a plan folder made for another input or world size (unless ``restart``: then
    this rank's files go, and rank 0's also those of ranks beyond the world size); write
    and return the manifest."""
    old = PlanManifest.read(paths.manifest)
    if old is not None and old.fingerprint != fp:
        if not restart:
            raise PlanError(
                f"{paths.folder} holds a plan for {_difference(old.fingerprint, fp)}; rerun "
                "fetchshard plan with --restart to make a new one"
            )
        for path in paths.slice_files(info.rank):
            storage.remove(path)
        if info.rank == 0:
            for other in range(info.world_size, old.world_size):
                for path in paths.slice_files(other):
                    storage.remove(path)
    manifest = PlanManifest(fingerprint=fp, fetchshard_version=__version__)
    data = manifest.to_bytes()
    current = paths.manifest.read_bytes() if paths.manifest.exists() else None
    if current != data:
        storage.write_atomic(paths.manifest, data, durable=True)
    return manifest


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("world_size") != new.get("world_size"):
        return f"world size {old.get('world_size')}, not {new.get('world_size')}"
    return "another input or input options"


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
    slicer = _Slicer(Partitioner(1, 1), 0, config.input.max_url_length)  # every row is kept
    tables = []
    rows = 0
    for batches, batch in enumerate(read_ahead(part.batches()), 1):
        if should_stop():
            raise Interrupted("plan step interrupted")
        picked = slicer.select(batch)
        if picked.kept:
            tables.append(picked.plan_rows(batch.extras, batch.first_row))
        rows += len(batch.urls)
        crash_point("plan_step_batch", batches)
    items = pa.concat_tables(tables) if tables else ITEMS.empty_table()
    written, hosts = write_slice(paths, info.rank, items, storage)
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
    done.write(paths.done(info.rank), durable=True, storage=storage)
    log.info(
        "plan rank %d of %d: %d rows of %d hosts from %d bytes of the input in %.1fs",
        info.rank,
        info.world_size,
        rows,
        hosts,
        part.bytes_read,
        done.seconds,
    )
    return done
