"""Host counts aggregated once (issue 33): what a rank of ``fetchshard run`` reads of a plan
step to derive its assignment is O(heavy hosts + W), not every slice's host counts (O(W x H):
91 MB a rank at 10^8 rows over 200,000 hosts and 400 ranks).

Two phases through the plan folder, like the plan step itself (no rank talks to another):

A. Every slice's hosts file is sorted by host hash, so its part of host-hash range r of W
   (hashes [ceil(r 2**64 / W), ceil((r + 1) 2**64 / W)), assignment.range_start) is one run
   of it, found by a search: nothing is written for this phase.
B. Range r's counts are that run summed over every slice, written once to
   ``plan/counts/range-r.arrow`` (host_hash, rows; sorted), then its RangeCounts document,
   last: the range's rows, its heavy hosts (above mean / TINY rows: the hosts the assignment
   places one by one) and its other hosts' rows. The ranks of ``fetchshard run`` do it before
   they plan (:func:`aggregate`): each its own range first, then any range without its
   document whose lock is free, then they wait for the ranges others are summing. A range
   without its document is summed again whole, one with it never; a plan made before this
   module has no counts/ folder and gets it on its first run.

Then a rank reads every range's document and the counts of the few ranges where the fill may
place its small hosts (:func:`rank_assignment`), and derives exactly its part of the
assignment every slice's counts give (assignment.py, ``CountedRanges``). A later generation's
leftover slices still take every slice's counts (planfile.plan_assignment), cut as finely as
their balance needs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import mmap
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from fetchshard.errors import PlanError, RankLockedError
from fetchshard.faults import crash_point
from fetchshard.planning import Interrupted
from fetchshard.planning.assignment import (
    Assignment,
    CountedRanges,
    HostCounter,
    RangeSummary,
    range_start,
)
from fetchshard.planning.slicefiles import HOSTS, map_random
from fetchshard.runfolder.documents import PlanManifest, PlanSliceDone, RangeCounts
from fetchshard.runfolder.layout import PlanPaths, RangeFiles, tmp_of
from fetchshard.runfolder.lock import POLL, holder_of, rank_lock
from fetchshard.runfolder.storage import LOCAL, Storage

log = logging.getLogger(__name__)

_HOST_BYTES = 16  # a host's hash and rows in a hosts or counts file


def rank_assignment(
    paths: PlanPaths,
    world_size: int,
    rank: int,
    *,
    lock_wait: float,
    should_stop: Callable[[], bool] = lambda: False,
    storage: Storage = LOCAL,
) -> Assignment:
    """Rank ``rank``'s part of the plan's counted assignment (the plan checked complete and
    this run's: planfile.check_plan), every range's counts summed first if need be."""
    manifest = PlanManifest.read(paths.manifest)
    if manifest is None:
        raise PlanError(f"{paths.folder} holds no plan (run fetchshard plan first)")
    started = time.monotonic()
    summed = aggregate(
        paths,
        manifest.digest,
        world_size,
        rank,
        lock_wait=lock_wait,
        should_stop=should_stop,
        storage=storage,
    )
    docs = read_ranges(paths, manifest.digest, world_size)
    try:
        ranges = CountedRanges.of(world_size, docs[0].total, [summary(d) for d in docs])
    except ValueError as exc:
        raise PlanError(f"{paths.counts_folder} is damaged ({exc}): remove it to redo it") from exc
    read: list[int] = []

    def read_range(number: int) -> tuple[np.ndarray, np.ndarray]:
        read.append(number)
        return read_counts(paths.range_counts(number), docs[number])

    try:
        assignment = Assignment.for_rank(ranges, rank, read_range)
    except ValueError as exc:
        raise PlanError(f"{paths.counts_folder} is damaged ({exc}): remove it to redo it") from exc
    log.info(
        "assignment from the host counts aggregated in %s (%d of %d ranges summed here): "
        "%d heavy hosts, the small hosts of %d ranges (%s) read, %.2fs",
        paths.counts_folder,
        summed,
        world_size,
        sum(len(d.heavy_hosts) for d in docs),
        len(read),
        ", ".join(str(r) for r in read) or "none",
        time.monotonic() - started,
    )
    return assignment


def aggregate(
    paths: PlanPaths,
    digest: str,
    world_size: int,
    me: int,
    *,
    lock_wait: float,
    should_stop: Callable[[], bool] = lambda: False,
    storage: Storage = LOCAL,
) -> int:
    """Make sure every host-hash range of the plan ``digest`` has its counts: range ``me``
    first, then every one without its document whose lock is free (from ``me`` on, so that
    ranks starting together spread out), then wait for those other processes hold; when none
    is finished for ``lock_wait`` seconds, PlanError. Returns how many this process summed."""
    order = [(me + i) % world_size for i in range(world_size)]
    folder = paths.range_counts(0).done.parent
    names = {r: paths.range_counts(r).done.name for r in order}
    finished: set[int] = set()
    total: int | None = None  # the plan's rows, read once if this process sums a range
    summed = 0
    progress_at = time.monotonic()
    told = False
    while True:
        # One listing a round, not a read per range: 400 ranks may be waiting on 400 ranges.
        listed = set(os.listdir(folder)) if folder.is_dir() else set()
        before = len(finished)
        finished |= {
            r
            for r in order
            if r not in finished
            and names[r] in listed
            and _summed(paths.range_counts(r), digest, world_size)
        }
        missing = [r for r in order if r not in finished]
        if not missing:
            return summed
        for number in missing:
            if should_stop():
                raise Interrupted("planning interrupted while aggregating host counts")
            files = paths.range_counts(number)
            try:
                with rank_lock(files.lock, me, wait=0):
                    if not _summed(files, digest, world_size):  # maybe finished since listed
                        if total is None:
                            total = plan_rows(paths, world_size)
                        summed += 1
                        sum_range(paths, digest, world_size, number, total, summed, storage)
            except RankLockedError:
                continue  # another process is summing it
            finished.add(number)
        if len(finished) > before:
            progress_at = time.monotonic()
            continue
        if should_stop():
            raise Interrupted("planning interrupted while waiting for host counts")
        if time.monotonic() - progress_at > lock_wait:
            lock = paths.range_counts(missing[0]).lock
            raise PlanError(
                f"no host-hash range of the plan in {paths.folder} was summed for {lock_wait:g}s "
                f"while {len(missing)} are missing: range {missing[0]}'s lock is "
                f"{holder_of(lock)}; is it still running? (run.lock_wait)"
            )
        if not told:
            log.info("waiting for %d host-hash ranges other ranks are summing", len(missing))
            told = True
        time.sleep(POLL)


def _summed(files: RangeFiles, digest: str, world_size: int) -> bool:
    """Whether the range's counts of this plan (not an older one's) are in place."""
    done = RangeCounts.read(files.done)
    return done is not None and done.plan == digest and done.world_size == world_size


def plan_rows(paths: PlanPaths, world_size: int) -> int:
    """The rows of every slice of the plan (what from_counts' mean is of)."""
    total = 0
    for rank in range(world_size):
        done = PlanSliceDone.read(paths.slice(rank).done)
        if done is None:
            raise PlanError(f"the plan in {paths.folder} is incomplete: plan rank {rank}")
        total += done.items
    return total


def sum_range(
    paths: PlanPaths,
    digest: str,
    world_size: int,
    number: int,
    total: int,
    count: int = 1,
    storage: Storage = LOCAL,
) -> RangeCounts:
    """Sum range ``number``'s run of every slice's hosts file into its counts file, then
    write its document (``count``: the how-manyth range of this process, for the crash
    point). The caller holds the range's lock."""
    started = time.monotonic()
    files = paths.range_counts(number)
    for path in (files.done, files.counts, tmp_of(files.counts)):  # redone whole
        storage.remove(path)
    lo, hi = range_start(number, world_size), range_start(number + 1, world_size)
    counter = HostCounter()
    bytes_read = 0
    for rank in range(world_size):
        hashes, rows = hosts_between(paths.slice(rank).hosts, lo, hi)
        counter.add_counts(hashes, rows)
        bytes_read += _HOST_BYTES * len(hashes)
    hashes, rows = counter.result()
    _publish(files.counts, hashes, rows, storage)
    crash_point("range_counts_written", count)
    found = RangeSummary.of(hashes, rows, total, world_size)
    done = RangeCounts(
        number=number,
        world_size=world_size,
        plan=digest,
        total=total,
        rows=int(rows.sum()),
        hosts=len(hashes),
        heavy_hosts=[int(h) for h in found.heavy_hosts],
        heavy_rows=[int(r) for r in found.heavy_rows],
        light_rows=found.light_rows,
        bytes_read=bytes_read,
        seconds=round(time.monotonic() - started, 3),
        completed_at=time.time(),
    )
    done.write(files.done, durable=True, storage=storage)
    log.info(
        "host-hash range %d of %d: %d rows of %d hosts (%d heavy) summed over %d slices, %.2fs",
        number,
        world_size,
        done.rows,
        done.hosts,
        len(done.heavy_hosts),
        world_size,
        done.seconds,
    )
    return done


def _publish(path: Path, hashes: np.ndarray, rows: np.ndarray, storage: Storage) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_of(path)
    table = pa.table({"host_hash": hashes, "rows": rows}, schema=HOSTS)
    with ipc.new_file(str(tmp), HOSTS) as writer:
        writer.write_table(table)
    storage.publish(tmp, path)


def hosts_between(path: Path, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The hosts of a slice's hosts file (slicefiles.HOSTS, sorted) whose hash lies in
    [lo, hi), and their rows: one run of it, copied out.

    The file is memory-mapped with read-ahead off: the search touches a few pages around
    where the bounds lie (host hashes are even, so they are guessed closely), and a cold
    read fetches those pages alone rather than 128 KiB around each (W ranks read each file).
    """
    mapped = map_random(path)
    try:
        return _between(mapped, lo, hi)
    finally:
        # The arrays above were copies: nothing points into the mapping once _between is
        # done, unless an exception's traceback still does (then it closes when freed).
        with contextlib.suppress(BufferError):
            mapped.close()


def _between(mapped: mmap.mmap, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    reader = ipc.open_file(pa.py_buffer(mapped))
    hashes: list[np.ndarray] = [np.zeros(0, np.uint64)]
    rows: list[np.ndarray] = [np.zeros(0, np.int64)]
    for number in range(reader.num_record_batches):
        batch = reader.get_batch(number)
        column = batch.column(0).to_numpy()  # a view of the mapping: only searched pages read
        start = _search(column, lo)
        stop = len(column) if hi >= 2**64 else _search(column, hi)
        hashes.append(column[start:stop].astype(np.uint64))  # copies
        rows.append(batch.column(1).to_numpy()[start:stop].astype(np.int64))
    return np.concatenate(hashes), np.concatenate(rows)


def _search(hashes: np.ndarray, value: int) -> int:
    """``np.searchsorted(hashes, value)`` over sorted, evenly spread 64-bit hashes: first in
    a window around where the value falls (its position varies by about sqrt(n)), a page or
    two, and over the whole array only when the window misses."""
    n = len(hashes)
    guess = (value * n) >> 64
    half = 4 * math.isqrt(n) + 64
    lo, hi = max(guess - half, 0), min(guess + half, n)
    target = np.uint64(value)
    if (lo == 0 or hashes[lo - 1] < target) and (hi == n or hashes[hi] >= target):
        return lo + int(np.searchsorted(hashes[lo:hi], target))
    return int(np.searchsorted(hashes, target))


def read_ranges(paths: PlanPaths, digest: str, world_size: int) -> list[RangeCounts]:
    """Every range's document of the plan ``digest``, checked whole and of one plan."""
    docs = []
    for number in range(world_size):
        doc = RangeCounts.read(paths.range_counts(number).done)
        if doc is None or doc.plan != digest or doc.world_size != world_size:
            raise PlanError(f"{paths.range_counts(number).done} is missing or of another plan")
        docs.append(doc)
    if len({d.total for d in docs}) != 1:
        raise PlanError(f"the ranges in {paths.counts_folder} were summed for different plans")
    return docs


def summary(doc: RangeCounts) -> RangeSummary:
    """The document's counts as assignment.py takes them."""
    return RangeSummary(
        np.array(doc.heavy_hosts, dtype=np.uint64),
        np.array(doc.heavy_rows, dtype=np.int64),
        doc.hosts - len(doc.heavy_hosts),
        doc.light_rows,
    )


def read_counts(files: RangeFiles, doc: RangeCounts) -> tuple[np.ndarray, np.ndarray]:
    """A range's counts (host hashes, sorted, and rows), read whole (a few hundred KB at
    most) and checked against its document."""
    with pa.OSFile(str(files.counts), "rb") as source:
        table = ipc.open_file(source).read_all()
    hashes = table.column("host_hash").to_numpy().astype(np.uint64)
    rows = table.column("rows").to_numpy().astype(np.int64)
    if len(hashes) != doc.hosts or int(rows.sum()) != doc.rows:
        raise PlanError(f"{files.counts} does not match its document: the plan is damaged")
    return hashes, rows
