"""Issue 33: a plan step's run rank derives its part of the counted assignment from the host
counts aggregated by host-hash range, exactly what every slice's counts give that rank
(assignment.py: CountedRanges, Assignment.for_rank), and the ranges are summed once into the
plan folder, a range without its document again (aggregate.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from fetchshard.errors import PlanError
from fetchshard.planning.aggregate import aggregate, hosts_between, rank_assignment, read_counts
from fetchshard.planning.assignment import (
    Assignment,
    CountedRanges,
    HostCounter,
    RangeSummary,
    range_of,
    range_start,
)
from fetchshard.planning.planfile import RankRuns
from fetchshard.planning.slicefiles import HOSTS
from fetchshard.runfolder.documents import PlanManifest, PlanSliceDone, RangeCounts
from fetchshard.runfolder.layout import PlanPaths

HOSTS_DRAWN = 200_000


def _zipf_counts(items: int, exponent: float, seed: int, hosts: int = HOSTS_DRAWN) -> np.ndarray:
    weights = 1.0 / np.arange(1, hosts + 1) ** exponent
    counts = np.random.default_rng(seed).multinomial(items, weights / weights.sum())
    return counts[counts > 0]


def _hashes(n: int, seed: int) -> np.ndarray:
    """``n`` distinct host hashes, uniform like XXH3's, in random order."""
    drawn = np.unique(np.random.default_rng(seed).integers(0, 2**64, n + 64, dtype=np.uint64))
    return np.random.default_rng(seed + 1).permutation(drawn)[:n]


def _by_range(
    hashes: np.ndarray, counts: np.ndarray, world: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each host-hash range's counts, sorted by hash, as a counts file holds them."""
    order = np.argsort(hashes)
    hashes, counts = hashes[order], np.asarray(counts, np.int64)[order]
    cuts = np.searchsorted(range_of(hashes, world), np.arange(world + 1))
    return [(hashes[cuts[r] : cuts[r + 1]], counts[cuts[r] : cuts[r + 1]]) for r in range(world)]


def _every_rank_as_from_counts(
    hashes: np.ndarray, counts: np.ndarray, world: int, seed: int = 0
) -> tuple[CountedRanges, list[int]]:
    """Check, for every rank, that its partial assignment agrees with from_counts' in all a
    run rank uses; returns the ranges and how many ranges' counts each rank read."""
    full = Assignment.from_counts(hashes, counts, world)
    per_range = _by_range(hashes, counts, world)
    total = int(np.sum(counts))
    ranges = CountedRanges.of(
        world, total, [RangeSummary.of(h, c, total, world) for h, c in per_range]
    )
    sorted_hashes = np.sort(hashes)
    rng = np.random.default_rng(seed)
    reads = []
    for rank in range(world):
        read: list[int] = []

        def read_range(number: int, read: list[int] = read) -> tuple[np.ndarray, np.ndarray]:
            read.append(number)
            return per_range[number]

        part = Assignment.for_rank(ranges, rank, read_range)
        assert read == ranges.ranges_for(rank)
        reads.append(len(read))
        # What rank.py's from_plan path asks: the rank's runs, its shares, its rows' ranks.
        assert RankRuns.of(part, rank) == RankRuns.of(full, rank), rank
        assert part.split_shares(rank) == full.split_shares(rank), rank
        if part.tiny_span is None:  # nothing left for the fill to place: complete
            known = sorted_hashes
        else:
            lo, hi = part.tiny_span
            known = sorted_hashes[
                np.searchsorted(sorted_hashes, np.uint64(lo)) : np.searchsorted(
                    sorted_hashes, np.uint64(hi), side="right"
                )
            ]
            in_span = (full.tiny_hosts >= np.uint64(lo)) & (full.tiny_hosts <= np.uint64(hi))
            assert np.array_equal(part.tiny_hosts, full.tiny_hosts[in_span])
            assert np.array_equal(part.tiny_ranks, full.tiny_ranks[in_span])
        mine = full.tiny_hosts[full.tiny_ranks == rank]
        assert np.isin(mine, part.tiny_hosts).all() or part.tiny_span is None
        probe = np.concatenate([known, full.big_hosts, full.big_hosts])
        keys = rng.integers(0, 2**64, len(probe), dtype=np.uint64)
        assert np.array_equal(part.ranks_of(probe, keys), full.ranks_of(probe, keys)), rank
    return ranges, reads


@pytest.mark.parametrize("world", [8, 400])
@pytest.mark.parametrize("exponent", [1.1, 1.3, 1.5])
def test_every_rank_gets_exactly_its_part_of_the_assignment_from_all_counts(
    exponent: float, world: int
) -> None:
    items = 2_000_000 if world == 8 else 10_000_000
    counts = _zipf_counts(items, exponent, seed=int(exponent * 10) + world)
    hashes = _hashes(len(counts), seed=world)
    ranges, reads = _every_rank_as_from_counts(hashes, counts, world)
    assert ranges.heavy.pieces, "heavy hosts cut into pieces"
    # The ranks' fill intervals and the ranges cut one line: at most 2W - 1 meetings, so a
    # rank reads the counts of about two ranges (O(H / W) hosts), never every one.
    assert sum(reads) <= 2 * world, reads
    assert max(reads) < world // 2 or world == 8


def test_heavy_hosts_that_join_the_fill_are_counted_at_their_hash() -> None:
    """LPT's "one piece that fits nowhere joins the small hosts" rule: 8 ranks of mean
    100,000 rows, eight hosts of 85,000 fill every rank to 85,000, then four of 20,000 fit
    nowhere: they join the fill, in their ranges, among 400 small hosts."""
    counts = np.array([85_000] * 8 + [20_000] * 4 + [100] * 400, np.int64)
    hashes = _hashes(len(counts), seed=5)
    ranges, _ = _every_rank_as_from_counts(hashes, counts, 8)
    assert sorted(ranges.joined.tolist()) == sorted(hashes[8:12].tolist())
    full = Assignment.from_counts(hashes, counts, 8)
    assert np.isin(hashes[8:12], full.tiny_hosts).all()


@pytest.mark.parametrize("world", [1, 2, 8])
def test_hosts_on_the_bounds_of_the_ranges(world: int) -> None:
    starts = [range_start(r, world) for r in range(world)]
    edge = sorted({0, 2**64 - 1, *starts, *(s - 1 for s in starts if s), *(s + 1 for s in starts)})
    hashes = np.array(edge, np.uint64)
    assert range_of(np.array(starts, np.uint64), world).tolist() == list(range(world))
    inside = np.array([s - 1 for s in starts[1:]], np.uint64)
    assert range_of(inside, world).tolist() == list(range(world - 1))
    rng = np.random.default_rng(world)
    counts = rng.integers(1, 50, len(hashes))
    counts[:: max(len(hashes) // 3, 1)] = 5_000  # some heavy ones on the edges too
    _every_rank_as_from_counts(hashes, counts, world)


def test_ranges_without_hosts_and_a_world_larger_than_the_hosts() -> None:
    counts = _zipf_counts(40_000, 1.3, seed=7, hosts=60)
    hashes = _hashes(len(counts), seed=7)
    ranges, reads = _every_rank_as_from_counts(hashes, counts, 400)
    assert (ranges.fill_hosts == 0).sum() > 300  # most ranges hold no host
    assert sum(reads) <= 2 * 400


def test_every_rank_full_already_spreads_the_fill_evenly() -> None:
    """_fill's "room.sum() <= 0" branch: a host of every rank's mean cut in two leaves no
    room, and hosts of no rows (a count file never has them; from_counts takes them) are
    spread by the even room instead."""
    hashes = _hashes(5, seed=9)
    counts = np.array([10, 0, 0, 0, 0], np.int64)
    ranges, _ = _every_rank_as_from_counts(hashes, counts, 2)
    assert ranges.placed is not None
    assert np.maximum(ranges.total / 2 - ranges.placed.loads, 0.0).sum() <= 0
    assert ranges.fill_hosts.sum() == 4


def test_no_rows_gives_the_empty_assignment() -> None:
    hashes = _hashes(3, seed=11)
    ranges, reads = _every_rank_as_from_counts(hashes, np.zeros(3, np.int64), 4)
    assert reads == [0, 0, 0, 0] and ranges.placed is None


def test_a_partial_assignment_refuses_hosts_it_does_not_know() -> None:
    counts = _zipf_counts(200_000, 1.3, seed=13, hosts=5_000)
    hashes = _hashes(len(counts), seed=13)
    world = 16
    per_range = _by_range(hashes, counts, world)
    total = int(counts.sum())
    ranges = CountedRanges.of(
        world, total, [RangeSummary.of(h, c, total, world) for h, c in per_range]
    )
    part = Assignment.for_rank(ranges, 3, lambda r: per_range[r])
    assert part.rank_only == 3 and part.tiny_span is not None
    far = (ranges.ranges_for(3)[-1] + 2) % world
    stranger = per_range[far][0][~np.isin(per_range[far][0], part.big_hosts)][:1]
    with pytest.raises(ValueError, match="made for rank 3"):
        part.ranks_of(stranger, np.zeros(1, np.uint64))
    with pytest.raises(ValueError, match="made for rank 3"):
        part.rank_of(int(stranger[0]), 0)
    with pytest.raises(ValueError, match="made for rank 3"):
        RankRuns.of(part, 4)
    heavy = int(part.big_hosts[0])  # every heavy host is known, wherever it lies
    assert part.ranks_of_host(heavy) == Assignment.from_counts(hashes, counts, world).ranks_of_host(
        heavy
    )


def test_summaries_that_do_not_add_up_are_refused() -> None:
    counts = np.array([500, 3, 4], np.int64)
    hashes = _hashes(3, seed=15)
    per_range = _by_range(hashes, counts, 2)
    summaries = [RangeSummary.of(h, c, 507, 2) for h, c in per_range]
    with pytest.raises(ValueError, match="add up"):
        CountedRanges.of(2, 508, summaries)
    with pytest.raises(ValueError, match="not its own"):
        CountedRanges.of(2, 507, summaries[::-1])
    low = RangeSummary(np.array([5, 3], np.uint64), np.array([100, 100], np.int64), 0, 0)
    none = RangeSummary(np.zeros(0, np.uint64), np.zeros(0, np.int64), 0, 0)
    with pytest.raises(ValueError, match="not sorted"):  # unsigned: a fall is no negative step
        CountedRanges.of(2, 200, [low, none])


# ----------------------------------------------------------------- the plan folder's files


def _write_hosts(path: Path, hashes: np.ndarray, rows: np.ndarray, batches: int = 1) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"host_hash": hashes, "rows": rows}, schema=HOSTS)
    with ipc.new_file(str(path), HOSTS) as writer:
        step = max(-(-len(table) // batches), 1)
        for start in range(0, len(table), step):
            writer.write_table(table.slice(start, step))


def _plan(
    tmp_path: Path, world: int, seed: int = 17
) -> tuple[PlanPaths, str, np.ndarray, np.ndarray]:
    """A plan folder of ``world`` slices' host counts (Zipf rows spread over the slices, one
    file in several record batches, one slice empty), its manifest and done documents;
    returns it with every host's total rows."""
    paths = PlanPaths(tmp_path)
    manifest = PlanManifest(fingerprint={"world_size": world, "seed": seed}, fetchshard_version="t")
    manifest.write(paths.manifest)
    counts = _zipf_counts(300_000, 1.2, seed=seed, hosts=20_000)
    hashes = _hashes(len(counts), seed=seed)
    rng = np.random.default_rng(seed)
    host_of_row = np.repeat(np.arange(len(counts)), counts)
    slice_of_row = rng.integers(0, world - 1, len(host_of_row))  # the last slice: empty
    for rank in range(world):
        mine = host_of_row[slice_of_row == rank]
        which, rows = np.unique(mine, return_counts=True)
        order = np.argsort(hashes[which])
        _write_hosts(paths.slice(rank).hosts, hashes[which][order], rows[order], 1 + rank % 3)
        PlanSliceDone(
            rank=rank, world_size=world, plan=manifest.digest, rows=len(mine), items=len(mine),
            hosts=len(which), bytes_read=0, seconds=0.0, completed_at=0.0,
        ).write(paths.slice(rank).done)  # fmt: skip
    return paths, manifest.digest, hashes, counts


def test_every_range_is_summed_once_and_each_rank_derives_its_part(tmp_path: Path) -> None:
    world = 6
    paths, digest, hashes, counts = _plan(tmp_path, world)
    full = Assignment.from_counts(hashes, counts, world)
    for rank in range(world):
        part = rank_assignment(paths, world, rank, lock_wait=5)
        assert RankRuns.of(part, rank) == RankRuns.of(full, rank)
        assert part.split_shares(rank) == full.split_shares(rank)
    # Rank 0 found no range summed and no other rank running: it summed them all, once.
    per_range = _by_range(hashes, counts, world)
    for number in range(world):
        files = paths.range_counts(number)
        doc = RangeCounts.read(files.done)
        assert doc is not None and doc.plan == digest and doc.total == int(counts.sum())
        got_hashes, got_rows = read_counts(files, doc)
        assert np.array_equal(got_hashes, per_range[number][0])
        assert np.array_equal(got_rows, per_range[number][1])
        want = RangeSummary.of(*per_range[number], int(counts.sum()), world)
        assert doc.heavy_hosts == want.heavy_hosts.tolist()
        assert doc.light_rows == want.light_rows
    stamps = {p: p.stat().st_mtime_ns for p in paths.counts_folder.rglob("*.json")}
    assert len(stamps) == world
    assert aggregate(paths, digest, world, 3, lock_wait=5) == 0
    assert stamps == {p: p.stat().st_mtime_ns for p in paths.counts_folder.rglob("*.json")}


def test_a_range_without_its_document_or_of_another_plan_is_summed_again(
    tmp_path: Path,
) -> None:
    world = 5
    paths, digest, _, _ = _plan(tmp_path, world)
    assert aggregate(paths, digest, world, 0, lock_wait=5) == world
    good = {n: paths.range_counts(n).counts.read_bytes() for n in range(world)}
    stamps = {n: paths.range_counts(n).done.stat().st_mtime_ns for n in range(world)}
    # A crash between the counts file and its document: a file, maybe cut short, no document.
    paths.range_counts(2).done.unlink()
    paths.range_counts(2).counts.write_bytes(good[2][:100])
    # A document of an older plan.
    old = RangeCounts.read(paths.range_counts(4).done)
    assert old is not None
    RangeCounts(**{**old.__dict__, "plan": "0" * 16}).write(paths.range_counts(4).done)
    assert aggregate(paths, digest, world, 1, lock_wait=5) == 2
    assert {n: paths.range_counts(n).counts.read_bytes() for n in range(world)} == good
    for n in (0, 1, 3):
        assert paths.range_counts(n).done.stat().st_mtime_ns == stamps[n], "redone"


def _hold(lock: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Another process holding a range's lock for ``seconds`` (then leaving, nothing done)."""
    code = (
        "import sys, time; from pathlib import Path; "
        "from fetchshard.runfolder.lock import rank_lock\n"
        "with rank_lock(Path(sys.argv[1]), 9, wait=0):\n"
        "    print('held', flush=True); time.sleep(float(sys.argv[2]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(lock), str(seconds)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline() == b"held\n"
    return proc


def test_a_range_another_process_sums_is_waited_for_then_taken_over(tmp_path: Path) -> None:
    world = 4
    paths, digest, _, _ = _plan(tmp_path, world)
    holder = _hold(paths.range_counts(2).lock, 1.0)
    started = time.monotonic()
    try:
        # The others summed here at once; range 2 once its holder left without finishing.
        assert aggregate(paths, digest, world, 0, lock_wait=10) == world
    finally:
        holder.wait(timeout=10)
    assert time.monotonic() - started >= 0.9
    assert RangeCounts.read(paths.range_counts(2).done) is not None


def test_a_range_held_longer_than_the_lock_wait_is_a_plan_error(tmp_path: Path) -> None:
    world = 4
    paths, digest, _, _ = _plan(tmp_path, world)
    holder = _hold(paths.range_counts(1).lock, 30)
    try:
        with pytest.raises(PlanError, match=r"range 1's lock is held by pid .*run\.lock_wait"):
            aggregate(paths, digest, world, 3, lock_wait=0.6)
    finally:
        holder.kill()
        holder.wait()
    done = [n for n in range(world) if paths.range_counts(n).done.exists()]
    assert done == [0, 2, 3]


@pytest.mark.parametrize("spread", ["even", "clustered"])
def test_a_run_of_a_hosts_file_is_what_searchsorted_finds(spread: str, tmp_path: Path) -> None:
    rng = np.random.default_rng(19)
    if spread == "even":
        hashes = np.unique(rng.integers(0, 2**64, 50_000, dtype=np.uint64))
    else:  # the guess misses: every hash in one small corner
        hashes = np.unique(rng.integers(2**40, 2**41, 50_000, dtype=np.uint64))
    rows = rng.integers(1, 100, len(hashes))
    path = tmp_path / "hosts.arrow"
    _write_hosts(path, hashes, rows, batches=3)
    bounds = [0, 1, 2**40, 2**41, 2**63, 2**64 - 1, *hashes[::4999].tolist()]
    bounds += [h + 1 for h in hashes[::7001].tolist()] + [range_start(r, 7) for r in range(7)]
    for lo in bounds:
        for hi in [lo, lo + 1, lo + 2**50, 2**64]:
            got_hashes, got_rows = hosts_between(path, lo, hi)
            keep = (hashes >= np.uint64(lo)) & (
                np.ones(len(hashes), bool) if hi >= 2**64 else hashes < np.uint64(hi)
            )
            assert np.array_equal(got_hashes, hashes[keep]), (lo, hi)
            assert np.array_equal(got_rows, rows[keep])


def test_the_ranges_summed_are_the_slices_counts_summed(tmp_path: Path) -> None:
    world = 7
    paths, digest, _, _ = _plan(tmp_path, world, seed=21)
    aggregate(paths, digest, world, 0, lock_wait=5)
    counter = HostCounter()
    for rank in range(world):
        counter.add_counts(*hosts_between(paths.slice(rank).hosts, 0, 2**64))
    every, rows = counter.result()
    got = []
    for number in range(world):
        doc = RangeCounts.read(paths.range_counts(number).done)
        assert doc is not None
        got.append(read_counts(paths.range_counts(number), doc))
    assert np.array_equal(np.concatenate([h for h, _ in got]), every)
    assert np.array_equal(np.concatenate([r for _, r in got]), rows)


def test_once_summed_a_run_rank_reads_no_slice_s_host_counts(tmp_path: Path) -> None:
    """The point of issue 33: with the ranges summed, planning a run rank from the plan reads
    the ranges' documents and counts, and its runs of the slices, but no slice's hosts file
    (each one, and every one, O(W x H) in all): with them gone, every rank still plans, each
    item on the rank the counts of the whole input give it."""
    from fetchshard.config import load_config
    from fetchshard.inputs import open_inputs
    from fetchshard.ledger import Ledger
    from fetchshard.planning.planfile import plan_in_use
    from fetchshard.planning.rank import count_hosts, plan_rank
    from fetchshard.planning.step import plan_step_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import ledger_paths
    from fetchshard.urls import hash64, normalize_url

    world = 5
    src, out = tmp_path / "urls.txt", tmp_path / "out"
    rng = np.random.default_rng(23)
    weights = 1.0 / np.arange(1, 301) ** 1.3
    hosts = rng.choice(300, 20_000, p=weights / weights.sum())
    urls = [f"http://h{h}.example.org/{i}" for i, h in enumerate(hosts)]
    src.write_text("".join(f"{u}\n" for u in urls))
    config = load_config(environ={}, overrides={"input.paths": [str(src)], "output.dir": str(out)})
    for rank in range(world):
        plan_step_rank(config, RankInfo(rank, world, "test"))
    paths = plan_in_use(config, [src], world)
    assert paths is not None
    rank_assignment(paths, world, 0, lock_wait=5)  # sums every range
    for rank in range(world):
        paths.slice(rank).hosts.unlink()
    counted, counts = count_hosts(open_inputs(config.input), config.input.max_url_length)
    full = Assignment.from_counts(counted, counts, world)
    parsed = [normalize_url(u) for u in urls]
    want = full.ranks_of(
        np.array([hash64(p.host) for p in parsed], np.uint64),
        np.array([hash64(p.url) for p in parsed], np.uint64),
    )
    kept = 0
    for rank in range(world):
        with Ledger(ledger_paths(tmp_path / f"rank-{rank}.sqlite")) as ledger:
            done = plan_rank(
                ledger, config, RankInfo(rank, world, "test"), {"fp": 1}, from_plan=paths
            )
        assert done.kept == int((want == rank).sum()), rank
        kept += done.kept
    assert kept == len(urls)
