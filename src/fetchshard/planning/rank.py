"""Planning one rank of ``fetchshard run``: check its ledger belongs to this run, then keep
the rank's slice of the input in its ledger (DESIGN.md step 2).

With ``spread: auto`` the counting pass (:func:`count_hosts`: rows per host hash) comes first
and gives the assignment; then one pass of the row selector (select.py) over the input, or,
after a plan step, the rank's runs of every slice (planfile.py), its part of the assignment
from the host counts aggregated by host-hash range (aggregate.py). The rank's shares of the
hosts it fetches only part of are recorded with the plan (``ledger.meta.host_shares``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fetchshard.config import Config
from fetchshard.errors import RunMismatchError
from fetchshard.faults import crash_point
from fetchshard.inputs import InputSet, open_inputs, read_ahead
from fetchshard.ledger import Ledger, to_batch
from fetchshard.output.extras import serialize_schema
from fetchshard.planning import Interrupted
from fetchshard.planning.aggregate import rank_assignment
from fetchshard.planning.assignment import Assignment, HostCounter
from fetchshard.planning.fingerprint import difference
from fetchshard.planning.placement import FixedSpread, Placement, RankShares, is_counted
from fetchshard.planning.planfile import (
    count_bad,
    ledger_columns,
    plan_assignment,
    plan_slices,
    rank_tables,
)
from fetchshard.planning.select import Selector
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.layout import PlanPaths, SliceFiles

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RankPlanResult:
    """What planning one rank did (``fetchshard.PlanResult`` is the plan step's)."""

    rows: int  # input rows read (blank lines are not rows)
    kept: int  # rows of this rank
    new: int  # items new to the ledger (kept minus duplicates)
    bad: int  # kept rows that are not fetchable URLs
    skipped: bool  # the ledger already held a complete plan


def plan_rank(
    ledger: Ledger,
    config: Config,
    rank: RankInfo,
    fp: dict[str, Any],
    inputs: InputSet | None = None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] | None = None,
    on_count: Callable[[int], None] | None = None,
    from_plan: PlanPaths | None = None,
    from_slices: Sequence[SliceFiles] | None = None,
) -> RankPlanResult:
    """Stream the input once and insert this rank's slice into the ledger (idempotent).

    ``inputs``: the files the run resolved and checked (and fingerprinted); by default they
    are resolved from ``config.input`` here. ``from_plan``: read the slice from the plan
    step's files instead (planfile.py), which the caller has checked; ``from_slices``: from
    these slices (a later generation's leftover slices, leftover.py), all written."""
    recorded = ledger.meta.fingerprint
    what = None if recorded is None else difference(recorded, fp)
    if what is not None:
        raise RunMismatchError(
            f"{ledger.path} was planned for a different run ({what}); "
            "rerun with --restart to discard it and start over"
        )
    if ledger.meta.planned:
        if ledger.items_missing():
            raise RunMismatchError(
                f"{ledger.files.items} is missing, but {ledger.path} records a plan that "
                "needs it; rerun with --restart to start over"
            )
        return RankPlanResult(rows=0, kept=0, new=0, bad=0, skipped=True)
    if recorded is None:
        ledger.meta.fingerprint = fp

    inp = config.input
    inputs = inputs or open_inputs(inp)
    if from_plan is not None:
        # Its part of the assignment from the host counts aggregated by range (summed here
        # first if no rank has yet), not from every slice's: aggregate.py.
        assignment = rank_assignment(
            from_plan,
            rank.world_size,
            rank.rank,
            lock_wait=config.run.lock_wait,
            should_stop=should_stop,
        )
        slices = plan_slices(from_plan, rank.world_size)
        return _plan_from_slices(
            ledger, rank, inputs, slices, assignment, should_stop, on_batch, sparse=False
        )
    if from_slices is not None:
        assignment = plan_assignment(from_slices, rank.world_size)
        return _plan_from_slices(
            ledger, rank, inputs, from_slices, assignment, should_stop, on_batch, sparse=True
        )
    spread = config.partition.spread
    placement: Placement
    shares = RankShares(rank.rank)
    if not is_counted(spread):
        placement = FixedSpread(rank.world_size, int(spread))
    elif rank.world_size == 1:
        placement = FixedSpread(1, 1)
    else:
        hosts, counts = count_hosts(
            inputs, inp.max_url_length, should_stop=should_stop, on_batch=on_count
        )
        assignment = Assignment.from_counts(hosts, counts, rank.world_size)
        placement = assignment
        shares = RankShares.counted(assignment, rank.rank)
    selector = Selector(placement, rank.rank, inp.max_url_length)
    rows = kept = bad = 0
    schema_seen = ledger.meta.extras_schema is not None
    ledger.begin_plan()
    try:
        for batches, batch in enumerate(read_ahead(inputs.batches()), 1):
            if should_stop():
                raise Interrupted("planning interrupted")
            schema: str | None = None
            if not schema_seen:
                schema = serialize_schema(batch.extras.schema) if batch.extras is not None else ""
                schema_seen = True
            mine = selector.select(batch)
            rows += len(batch.urls)
            kept += mine.kept
            bad += mine.bad
            staged = mine.batches(batch.extras, batch.first_row)
            ledger.insert_planned(mine.hosts, staged, extras_schema=schema)
            crash_point("plan_batch", batches)
            if on_batch is not None:
                on_batch(rows)
        new = ledger.finish_plan(host_shares=shares.to_json())
    finally:
        ledger.discard_plan()
    log.info(
        "planned %d of %d input rows for this rank (%d new, %d duplicates, %d bad URLs)",
        kept,
        rows,
        new,
        kept - new,
        bad,
    )
    return RankPlanResult(rows=rows, kept=kept, new=new, bad=bad, skipped=False)


def _plan_from_slices(
    ledger: Ledger,
    rank: RankInfo,
    inputs: InputSet,
    slices: Sequence[SliceFiles],
    assignment: Assignment,
    should_stop: Callable[[], bool],
    on_batch: Callable[[int], None] | None,
    *,
    sparse: bool,
) -> RankPlanResult:
    """Planning from slices: this rank's runs of every slice into the ledger (``assignment``:
    the rank's, complete or its partial one: it is asked only about this rank's hosts;
    ``sparse``: planfile.rank_tables')."""
    shares = RankShares.counted(assignment, rank.rank)
    rows = bad = 0
    ledger.begin_plan()
    try:
        schema: str | None = extras_schema_of(inputs)
        for table in rank_tables(slices, rank.rank, assignment, sparse=sparse):
            if should_stop():
                raise Interrupted("planning interrupted")
            columns, positions, hosts = ledger_columns(table, slices[0].keys)
            staged = [(to_batch(columns, len(table)), positions)]
            ledger.insert_planned(hosts, staged, extras_schema=schema)
            schema = None
            rows += len(table)
            bad += count_bad(table)
            if on_batch is not None:
                on_batch(rows)
        if schema is not None:
            ledger.meta.extras_schema = schema
        new = ledger.finish_plan(host_shares=shares.to_json())
    finally:
        ledger.discard_plan()
    log.info(
        "planned %d rows for this rank from the %s in %s (%d slices; %d new, %d duplicates, "
        "%d bad URLs)",
        rows,
        "leftover" if slices and slices[0].keys == "item" else "plan",
        slices[0].items.parent if slices else "-",
        len(slices),
        new,
        rows - new,
        bad,
    )
    return RankPlanResult(rows=rows, kept=rows, new=new, bad=bad, skipped=False)


def extras_schema_of(inputs: InputSet) -> str:
    """The extras schema the ledger records ("" without extras), as the batches carry it."""
    schema = inputs.specs[0].extras_schema if inputs.specs else None
    return serialize_schema(schema) if schema is not None else ""


def rank_shares(ledger: Ledger, config: Config, rank: RankInfo) -> RankShares:
    """The rank's share of each host's rate, as its plan placed the hosts."""
    spread = config.partition.spread
    later_generation = (ledger.meta.fingerprint or {}).get("generation", 0) != 0
    if not is_counted(spread) and not later_generation:  # a leftover is always counted
        return RankShares(rank.rank, FixedSpread(rank.world_size, int(spread)))
    return RankShares.from_json(rank.rank, ledger.meta.host_shares)


def count_hosts(
    inputs: InputSet,
    max_url_length: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] | None = None,
    fast: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The counting pass: the input rows of every host (``hash64`` of the host, sorted, and
    its count; rows that are no fetchable URL count under ``hash64("")``)."""
    selector = Selector(FixedSpread(1, 1), 0, max_url_length)
    counter = HostCounter()
    rows = 0
    for batch in read_ahead(inputs.batches()):
        if should_stop():
            raise Interrupted("planning interrupted while counting hosts")
        counter.add(selector.host_hashes(batch, fast=fast))
        rows += len(batch.urls)
        if on_batch is not None:
            on_batch(rows)
    return counter.result()
