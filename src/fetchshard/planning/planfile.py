"""Reading a plan: a rank of ``fetchshard run`` over a plan step's folder checks the plan
(complete, and made for this run), derives the assignment from every slice's host counts,
and reads only its own runs of each slice.

The counted assignment (assignment.py) is the same one planning without a plan step derives
from the same counts: a plan step's run rank derives its part of it from the counts aggregated
by host-hash range (aggregate.py); a later generation's, from every leftover slice's
(:func:`plan_assignment`). In a slice sorted by (host hash, key hash), a rank's rows are:

- its small hosts: the assignment hands them out in host-hash order, so they are the hosts
  whose hash lies in one interval, minus the heavy hosts inside it;
- each piece of a heavy host it holds: that host's rows in one key-hash range.

Each run's bounds come from the slice's index and one stride of its items, and the rows read
are checked against the assignment: a rank never keeps a row of another.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fetchshard.config import Config
from fetchshard.errors import PlanError
from fetchshard.ledger import ITEM_COLUMNS
from fetchshard.planning.assignment import Assignment, HostCounter, range_start
from fetchshard.planning.fingerprint import difference, plan_fingerprint
from fetchshard.planning.slicefiles import SliceItems, item_ids, read_hosts
from fetchshard.runfolder.documents import PlanManifest, PlanSliceDone
from fetchshard.runfolder.layout import PlanPaths, SliceFiles


def plan_in_use(config: Config, files: list[Path], world_size: int) -> PlanPaths | None:
    """The output folder's plan step, checked complete and made for this run; None when the
    folder has none (planning then reads the input). Raises PlanError otherwise."""
    paths = PlanPaths(config.output.root)
    if not paths.manifest.exists():
        return None
    check_plan(paths, plan_fingerprint(config, files, world_size))
    return paths


def check_plan(paths: PlanPaths, fp: dict[str, Any]) -> PlanManifest:
    """The folder's plan, complete and made for this run (``fp``: plan_fingerprint); else
    one clear PlanError."""
    manifest = PlanManifest.read(paths.manifest)
    if manifest is None:
        raise PlanError(f"{paths.folder} holds no plan (run fetchshard plan first)")
    world = int(fp["world_size"])
    what = difference(manifest.fingerprint, fp)
    if what is not None and manifest.world_size != world:
        raise PlanError(
            f"{paths.folder} was planned for world size {manifest.world_size}, not {world}: "
            f"run with {manifest.world_size} ranks, or rerun fetchshard plan with "
            f"{world} ranks and --restart"
        )
    if what is not None:
        raise PlanError(
            f"{paths.folder} was planned for another run ({what}); rerun fetchshard plan "
            "with --restart"
        )
    missing = [r for r in range(world) if not _slice_done(paths, r, manifest.digest)]
    if missing:
        shown = ", ".join(str(r) for r in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise PlanError(
            f"the plan in {paths.folder} is incomplete: {len(missing)} of {world} plan ranks "
            f"have not finished (rank {shown}); rerun fetchshard plan before fetchshard run"
        )
    return manifest


def _slice_done(paths: PlanPaths, rank: int, digest: str) -> bool:
    """Whether plan rank ``rank``'s slice of this plan (not an older one's) is complete."""
    done = PlanSliceDone.read(paths.slice(rank).done)
    return done is not None and done.plan == digest


def plan_slices(paths: PlanPaths, world_size: int) -> list[SliceFiles]:
    """The slices of a plan step made for ``world_size`` ranks: one per plan rank."""
    return [paths.slice(rank) for rank in range(world_size)]


# A leftover is often a few big hosts' tails, with too few small hosts to fill every rank up
# to the mean: its hosts are cut finer (assignment.py, granularity), as little as it takes for
# the planned loads to end within LEFTOVER_BALANCE of the mean (finer pieces: more runs for
# every rank to find in every slice). At 1/32 of the mean a piece, LPT alone ends within ~3 %.
LEFTOVER_GRANULARITIES = (1, 2, 4, 8, 16, 32)
LEFTOVER_BALANCE = 1.02


def plan_assignment(slices: Sequence[SliceFiles], world_size: int) -> Assignment:
    """The assignment over ``world_size`` ranks from the host counts of every slice (what
    every rank of a later generation derives; a plan step's run rank derives its part from
    the counts summed by range instead, aggregate.py); a leftover's (``keys`` "item") cut
    finer."""
    counter = HostCounter()
    for files in slices:
        counter.add_counts(*read_hosts(files))
    hosts, counts = counter.result()
    if not slices or slices[0].keys != "item":
        return Assignment.from_counts(hosts, counts, world_size)
    mean = max(int(counts.sum()), 1) / world_size
    for (
        granularity
    ) in LEFTOVER_GRANULARITIES:  # the coarsest that balances (the same on every rank)
        assignment = Assignment.from_counts(hosts, counts, world_size, granularity=granularity)
        if assignment.planned_loads(hosts, counts).max() <= LEFTOVER_BALANCE * mean:
            break
    return assignment


@dataclass(frozen=True)
class RankRuns:
    """Which (host hash, key hash) runs hold one rank's rows, whatever the slice."""

    small: tuple[int, int] | None  # the interval of its small hosts' hashes (inclusive)
    skip: tuple[int, ...] = ()  # heavy hosts whose hash lies inside that interval
    pieces: tuple[tuple[int, int, int | None], ...] = field(default=())  # host, key lo, hi

    @classmethod
    def of(cls, assignment: Assignment, rank: int) -> RankRuns:
        if assignment.rank_only not in (None, rank):  # a partial one knows its rank's alone
            raise ValueError(f"an assignment made for rank {assignment.rank_only}, not {rank}")
        if assignment.world_size == 1:  # every host, whole (the assignment lists none)
            return cls((0, 2**64 - 1))
        mine = np.flatnonzero(assignment.tiny_ranks == rank)
        small = None
        skip: tuple[int, ...] = ()
        if len(mine):
            if mine[-1] - mine[0] + 1 != len(mine):  # never: the fill is in hash order
                raise AssertionError("the small hosts of a rank are not one hash interval")
            lo, hi = int(assignment.tiny_hosts[mine[0]]), int(assignment.tiny_hosts[mine[-1]])
            small = (lo, hi)
            big = assignment.big_hosts
            inside = big[(big >= np.uint64(lo)) & (big <= np.uint64(hi))]
            skip = tuple(int(h) for h in inside)
        # The heavy hosts' pieces on this rank, in host hash order: found in the flat array of
        # every piece's rank (in big_hosts' order), not by walking every host's pieces.
        flat = np.flatnonzero(assignment.big_ranks == rank)
        owner = np.searchsorted(assignment.big_starts, flat, side="right") - 1
        index = (flat - assignment.big_starts[owner]).tolist()
        count = assignment.big_pieces[owner].tolist()
        pieces = [
            (host, range_start(i, n), None if i + 1 == n else range_start(i + 1, n))
            for host, i, n in zip(assignment.big_hosts[owner].tolist(), index, count, strict=True)
        ]
        return cls(small, skip, tuple(pieces))

    def spans(self, items: SliceItems, hosts: np.ndarray | None = None) -> list[tuple[int, int]]:
        """The row spans of this rank's rows in one slice, in order. ``hosts``: the slice's
        host hashes (sorted; its hosts file), to search only for the heavy hosts it holds
        (a rank of a leftover may hold dozens, a slice a few of them)."""

        def held(host: int) -> bool:
            if hosts is None:
                return True
            at = int(np.searchsorted(hosts, np.uint64(host)))
            return at < len(hosts) and int(hosts[at]) == host

        spans: list[tuple[int, int]] = []
        if self.small is not None:
            start = items.lower_bound(self.small[0])
            stop = items.host_end(self.small[1])
            for host in filter(held, self.skip):
                cut_from, cut_to = items.lower_bound(host), items.host_end(host)
                if cut_from > start:
                    spans.append((start, cut_from))
                start = max(start, cut_to)
            if stop > start:
                spans.append((start, stop))
        for host, lo, hi in self.pieces:
            if not held(host):
                continue
            begin = items.lower_bound(host, lo)
            end = items.host_end(host) if hi is None else items.lower_bound(host, hi)
            if end > begin:
                spans.append((begin, end))
        return spans


_YIELD_ROWS = 1 << 16  # rows gathered from the slices' runs before they go to the ledger


def rank_tables(
    slices: Sequence[SliceFiles], rank: int, assignment: Assignment, *, sparse: bool = True
) -> Iterator[pa.Table]:
    """This rank's rows of every slice, in slice order, about _YIELD_ROWS at a time (a rank
    has a few runs in each of the slices: many small ones), checked against the assignment.

    ``sparse``: slices that lack most heavy hosts (a leftover's), whose hosts file is read to
    search each for those it holds only. A plan step's slice holds nearly every heavy host
    (each has over mean / TINY / W rows a slice, on average): a search for one it lacks costs
    a stride of its items, where reading every slice's hosts file costs O(H) (issue 33)."""
    runs = RankRuns.of(assignment, rank)
    gathered: list[pa.Table] = []
    count = 0
    for number, files in enumerate(slices):
        hosts = read_hosts(files)[0] if sparse else None
        with SliceItems.open(files) as items:
            for start, stop in runs.spans(items, hosts):
                gathered.append(items.read(start, stop))
                count += stop - start
        if count >= _YIELD_ROWS or (number == len(slices) - 1 and count):
            table = pa.concat_tables(gathered).combine_chunks()
            got = assignment.ranks_of(
                table.column("host_hash").to_numpy(), table.column("key_hash").to_numpy()
            )
            if not (got == rank).all():
                raise PlanError(f"{files.items.parent}: rows of other ranks in rank {rank}'s runs")
            yield table
            gathered, count = [], 0


def ledger_columns(
    table: pa.Table, keys: str = "hash"
) -> tuple[dict[str, Any], np.ndarray, set[tuple[int, str]]]:
    """A slice table as the ledger stages it: columns, positions, and its (host id, host)s
    (``keys``: what its key hashes are, ``SliceFiles.keys``)."""
    columns: dict[str, Any] = {
        "item_id": item_ids(table.column("key_hash").to_numpy(), keys),
        **{
            name: table.column(name)
            for name in ITEM_COLUMNS
            if name != "item_id"  # the low bits of the key hash, above
        },
    }
    pairs = pa.table({"host_id": table.column("host_id"), "host": table.column("host")})
    pairs = pairs.filter(pc.is_valid(pairs.column("host")))
    pairs = pairs.group_by(["host_id", "host"]).aggregate([])
    ids, names = pairs.column("host_id").to_pylist(), pairs.column("host").to_pylist()
    hosts = set(zip(ids, names, strict=True))
    return columns, table.column("position").to_numpy(), hosts


def count_bad(table: pa.Table) -> int:
    return int(pc.sum(pc.is_valid(table.column("error_kind"))).as_py() or 0)
