"""Which rank fetches which host's items, from the hosts' item counts: balanced whatever the skew.

Issue 19. A fixed ``spread`` cannot be right for a skewed input: with 10 M URLs over 200,000
hosts in a Zipf(1.3) shape and 400 ranks, ``spread: 16`` gives the busiest rank 9.3 × the
mean. Here each host's spread comes from its share of the work, derived by every rank alike
from the counts alone (no communication, no clock, no randomness):

- the mean load is ``m = items / world_size``; a host with ``c`` items is cut into
  ``ceil(c / m)`` pieces (at most the world size) by ranges of its URLs' hash (piece
  ``key_hash * pieces >> 64``: in (host, key) hash order a piece is one run): a host with
  fewer items than a rank's mean is one piece, on one rank (one pool, its whole rate,
  exact politeness);
- every piece of a host above ``m / TINY`` items, largest first (ties by host hash), goes to
  the rank with the least work so far (LPT scheduling), except a one-piece host that would
  take even that rank over the mean: it joins the tiny hosts;
- the *tiny* hosts, in host-hash order, then fill what each rank lacks of ``m`` (water-filling
  over the cumulative counts, vectorized): nearly all are at most 1 % of a rank (the others
  were too big for the room left, so small too), and every rank ends within about one of
  them of the mean; in host-hash order, a rank's tiny hosts are one interval of hashes;
- a rank's share of a host's rate is the host's rate × (its pieces on that rank / pieces), so
  the shares of every host sum to its configured rate exactly.

Hashes are planning's (``fetchshard.urls.hash64``: XXH3-64 of the normalized host and of the
item key). Pure: unit-tested on generated Zipf inputs (tests/unit/planning/test_assignment.py).

After a plan step, a run rank derives its own part of the same assignment without every
host's count (issue 33): from each host-hash range's summary (its heavy hosts, a total of the
others: :class:`RangeSummary`, :class:`CountedRanges`) and the counts of the few ranges whose
small hosts the fill may give it (:meth:`Assignment.for_rank`; planning/aggregate.py reads
them), bit for bit what :meth:`Assignment.from_counts` gives that rank
(tests/unit/planning/test_aggregate.py).
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

TINY = 100  # a host of at most mean / TINY items is placed by its hash alone


@dataclass(frozen=True, slots=True)
class Assignment:
    """Host pieces to ranks. ``pieces[h]`` lists the rank of each piece of host hash ``h``;
    the tiny hosts' ranks are ``tiny_ranks`` beside their sorted hashes ``tiny_hosts``; a
    host in neither (not counted) lives on ``h mod world_size``."""

    world_size: int
    pieces: dict[int, tuple[int, ...]]
    tiny_hosts: np.ndarray  # uint64, sorted
    tiny_ranks: np.ndarray  # int64, beside them
    # ``pieces`` as arrays for ranks_of, made once: the heavy hosts sorted, each one's piece
    # count and the start of its ranks in one flat array.
    big_hosts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    big_pieces: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    big_starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    big_ranks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # A rank's own assignment from aggregated counts (:meth:`for_rank`): made for rank
    # ``rank_only``, it knows every heavy host but only the small hosts whose hash lies in
    # ``tiny_span`` (inclusive; lo > hi: none). None: every host is known (from_counts).
    rank_only: int | None = None
    tiny_span: tuple[int, int] | None = None

    @classmethod
    def from_counts(
        cls, host_hashes: np.ndarray, counts: np.ndarray, world_size: int, *, granularity: int = 1
    ) -> Assignment:
        """The assignment for hosts (``host_hashes``, uint64, distinct) with ``counts`` items.

        ``granularity`` g: a host's pieces hold at most 1/g of the mean, so that the largest
        piece, which bounds how far LPT can miss the mean, is that small. 1 (a piece per mean,
        a host below the mean whole) suits an input of many hosts, whose tiny ones fill every
        rank up; a later generation's leftover, often a few big hosts' tails, needs finer."""
        if world_size < 1:
            raise ValueError("world_size must be at least 1")
        hashes = np.asarray(host_hashes, dtype=np.uint64)
        counts = np.asarray(counts, dtype=np.int64)
        total = int(counts.sum())
        if world_size == 1 or total == 0:
            return cls._of(world_size, {}, np.zeros(0, np.uint64), np.zeros(0, np.int64))
        mean = total / world_size
        tiny = _is_tiny(counts, mean)
        big_index = np.flatnonzero(~tiny)
        placed = _place_heavy(hashes[big_index], counts[big_index], mean, world_size, granularity)
        fill = tiny.copy()
        fill[big_index[placed.joined]] = True
        tiny_order = np.argsort(hashes[fill], kind="stable")
        tiny_hosts, tiny_counts = hashes[fill][tiny_order], counts[fill][tiny_order]
        tiny_ranks = _fill(placed.loads, tiny_counts, mean)
        return cls._of(world_size, placed.pieces, tiny_hosts, tiny_ranks)

    @classmethod
    def for_rank(
        cls,
        ranges: CountedRanges,
        rank: int,
        read_range: Callable[[int], tuple[np.ndarray, np.ndarray]],
    ) -> Assignment:
        """Rank ``rank``'s part of the assignment :meth:`from_counts` gives over the same
        hosts, from the ranges' summaries and the counts of only the ranges holding its small
        hosts (``read_range(r)``: range r's host hashes, sorted, and their rows; called for
        :meth:`CountedRanges.ranges_for` alone). Partial: see ``rank_only``."""
        needed = ranges.ranges_for(rank)
        return ranges.assignment(rank, {r: read_range(r) for r in needed})

    @classmethod
    def _of(
        cls,
        world_size: int,
        pieces: dict[int, list[int]],
        tiny_hosts: np.ndarray,
        tiny_ranks: np.ndarray,
        *,
        rank_only: int | None = None,
        tiny_span: tuple[int, int] | None = None,
    ) -> Assignment:
        big = np.sort(np.fromiter(pieces, dtype=np.uint64, count=len(pieces)))
        lists = [pieces[int(h)] for h in big]
        counts_of = np.array([len(r) for r in lists], dtype=np.int64)
        return cls(
            world_size,
            {h: tuple(r) for h, r in pieces.items()},
            tiny_hosts,
            tiny_ranks,
            big,
            counts_of,
            np.concatenate(([0], np.cumsum(counts_of)[:-1])).astype(np.int64),
            np.fromiter((r for rs in lists for r in rs), np.int64, int(counts_of.sum())),
            rank_only,
            tiny_span,
        )

    def rank_of(self, host_hash: int, key_hash: int) -> int:
        """The rank of the item with key hash ``key_hash`` of host ``host_hash``."""
        ranks = self.pieces.get(host_hash)
        if ranks is not None:
            return ranks[(key_hash * len(ranks)) >> 64]
        return self._tiny_rank(host_hash)

    def _tiny_rank(self, host_hash: int) -> int:
        heavy = np.array([host_hash in self.pieces])  # ranks_of_host asks for any host
        self._check_known(np.array([host_hash], np.uint64), heavy)
        at = int(np.searchsorted(self.tiny_hosts, np.uint64(host_hash)))
        if at < len(self.tiny_hosts) and int(self.tiny_hosts[at]) == host_hash:
            return int(self.tiny_ranks[at])
        return host_hash % self.world_size

    def ranks_of(self, host_hashes: np.ndarray, key_hashes: np.ndarray) -> np.ndarray:
        """:meth:`rank_of` of many items at once (uint64 arrays of equal length)."""
        hosts = np.asarray(host_hashes, dtype=np.uint64)
        keys = np.asarray(key_hashes, dtype=np.uint64)
        out: np.ndarray = (hosts % np.uint64(self.world_size)).astype(np.int64)
        at, hit = _find(self.big_hosts, hosts)
        self._check_known(hosts, hit)
        tiny_at, found = _find(self.tiny_hosts, hosts)
        out[found] = self.tiny_ranks[tiny_at[found]]
        which = at[hit]
        piece = scaled(keys[hit], self.big_pieces[which].astype(np.uint64))
        out[hit] = self.big_ranks[self.big_starts[which] + piece]
        return out

    def reaches(self, host_hashes: np.ndarray, rank: int) -> np.ndarray:
        """Whether some item of each host may land on ``rank`` (no key needed to rule it out)."""
        hosts = np.asarray(host_hashes, dtype=np.uint64)
        out: np.ndarray = (hosts % np.uint64(self.world_size)).astype(np.int64) == rank
        at, hit = _find(self.big_hosts, hosts)
        self._check_known(hosts, hit)
        tiny_at, found = _find(self.tiny_hosts, hosts)
        out[found] = self.tiny_ranks[tiny_at[found]] == rank
        out[hit] = np.isin(at[hit], self._big_on(rank))
        return out

    def _check_known(self, hosts: np.ndarray, heavy: np.ndarray) -> None:
        """A partial assignment (for_rank) refuses to place a small host it does not know:
        it would answer ``hash mod world_size``, the rank of a host nobody counted."""
        if self.tiny_span is None:
            return
        lo, hi = (np.uint64(v) for v in self.tiny_span)
        unknown = ~heavy & ((hosts < lo) | (hosts > hi))
        if unknown.any():
            raise ValueError(
                f"this assignment was made for rank {self.rank_only} from aggregated counts: "
                f"it does not know host {int(hosts[unknown][0])}"
            )

    def _big_on(self, rank: int) -> np.ndarray:
        """Indices into ``big_hosts`` of the heavy hosts with a piece on ``rank``."""
        pieces = np.flatnonzero(self.big_ranks == rank)  # into the flat big_ranks
        owners: np.ndarray = np.unique(np.searchsorted(self.big_starts, pieces, "right") - 1)
        return owners

    def split_shares(self, rank: int) -> dict[int, Fraction]:
        """``rank``'s share of each host it fetches only part of (host hash -> share)."""
        out: dict[int, Fraction] = {}
        for index in self._big_on(rank).tolist():
            host = int(self.big_hosts[index])
            share = self.share(host, rank)
            if share != 1:
                out[host] = share
        return out

    def planned_loads(self, host_hashes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The rows each rank is planned to get from these counts: a piece of a heavy host
        counts as the host's rows / pieces (the items in it vary with their URLs' hashes)."""
        hosts = np.asarray(host_hashes, dtype=np.uint64)
        counts = np.asarray(counts, dtype=np.float64)
        loads = np.zeros(self.world_size)
        at, heavy = _find(self.big_hosts, hosts)
        for host_at, rows in zip(at[heavy].tolist(), counts[heavy].tolist(), strict=True):
            n, start = int(self.big_pieces[host_at]), int(self.big_starts[host_at])
            np.add.at(loads, self.big_ranks[start : start + n], rows / n)
        light = ~heavy
        ranks = self.ranks_of(hosts[light], np.zeros(int(light.sum()), np.uint64))
        np.add.at(loads, ranks, counts[light])
        return loads

    def spread_of(self, host_hash: int) -> int:
        """Over how many pieces the host is cut (1: a single rank)."""
        return len(self.pieces.get(host_hash, (0,)))

    def ranks_of_host(self, host_hash: int) -> frozenset[int]:
        """The ranks that fetch some of the host's items."""
        return frozenset(self.pieces.get(host_hash, (self._tiny_rank(host_hash),)))

    def share(self, host_hash: int, rank: int) -> Fraction:
        """The exact fraction of the host's items, and of its rate, that ``rank`` takes."""
        ranks = self.pieces.get(host_hash)
        if ranks is None:
            return Fraction(1 if self._tiny_rank(host_hash) == rank else 0)
        return Fraction(ranks.count(rank), len(ranks))

    def rate_share(self, host_hash: int, rank: int, rate: float) -> float:
        """``rank``'s share of the host's global ``rate`` (they sum to ``rate`` exactly)."""
        return rate * float(self.share(host_hash, rank))


class HostCounter:
    """Rows per host hash, added a batch at a time in memory bounded by the hosts seen."""

    _FOLD = 1 << 20  # pending (hash, count) pairs folded together past this many

    def __init__(self) -> None:
        self._hashes: list[np.ndarray] = []
        self._counts: list[np.ndarray] = []
        self._pending = 0

    def add(self, host_hashes: np.ndarray) -> None:
        if not len(host_hashes):
            return
        hashes, counts = np.unique(host_hashes, return_counts=True)
        self.add_counts(hashes, counts)

    def add_counts(self, hashes: np.ndarray, counts: np.ndarray) -> None:
        self._hashes.append(np.asarray(hashes, dtype=np.uint64))
        self._counts.append(np.asarray(counts, dtype=np.int64))
        self._pending += len(hashes)
        if self._pending > self._FOLD and len(self._hashes) > 1:
            self._fold()

    def _fold(self) -> None:
        hashes = np.concatenate(self._hashes)
        unique, inverse = np.unique(hashes, return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate(self._counts)).astype(np.int64)
        self._hashes, self._counts, self._pending = [unique], [counts], len(unique)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._hashes:
            return np.zeros(0, np.uint64), np.zeros(0, np.int64)
        self._fold()
        return self._hashes[0], self._counts[0]


def _find(table: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of ``values``: its index in the sorted ``table``, and whether it is there."""
    if not len(table):
        return np.zeros(len(values), np.int64), np.zeros(len(values), bool)
    at = np.minimum(np.searchsorted(table, values), len(table) - 1)
    found: np.ndarray = table[at] == values
    return at, found


def _is_tiny(counts: np.ndarray, mean: float) -> np.ndarray:
    """The hosts of at most ``mean / TINY`` items: placed by the fill alone."""
    tiny: np.ndarray = counts <= mean / TINY
    return tiny


@dataclass(frozen=True, slots=True)
class _Placed:
    """The heavy hosts placed: each one's pieces' ranks, the ranks' loads, and which hosts
    (a mask over those given) joined the small ones instead."""

    pieces: dict[int, list[int]]
    loads: np.ndarray
    joined: np.ndarray


def _place_heavy(
    big_hashes: np.ndarray, big_counts: np.ndarray, mean: float, world_size: int, granularity: int
) -> _Placed:
    """LPT over the pieces of the heavy hosts (``big_hashes``, distinct, in any order)."""
    heap = [(0.0, rank) for rank in range(world_size)]
    n_pieces = np.ceil(big_counts * granularity / mean)
    n_pieces = np.minimum(n_pieces, world_size * granularity).astype(np.int64)
    n_pieces = np.maximum(n_pieces, 1)
    size = big_counts / n_pieces
    # Largest pieces first; ties by host hash: the same order on every machine.
    order = np.lexsort((big_hashes, -size))
    pieces: dict[int, list[int]] = {}
    loads = np.zeros(world_size)
    joined = np.zeros(len(big_hashes), bool)
    for i in order:
        host, k, piece_size = int(big_hashes[i]), int(n_pieces[i]), float(size[i])
        if k == 1 and heap[0][0] + piece_size > mean:
            # No rank has room for this whole host: it joins the small ones that fill
            # what each rank lacks, rather than push the least loaded over the mean.
            joined[i] = True
            continue
        ranks = pieces.setdefault(host, [])
        for _ in range(k):
            load, rank = heapq.heappop(heap)
            ranks.append(rank)
            loads[rank] = load + piece_size
            heapq.heappush(heap, (load + piece_size, rank))
    return _Placed(pieces, loads, joined)


def _fill(loads: np.ndarray, counts: np.ndarray, mean: float) -> np.ndarray:
    """The ranks of tiny hosts (``counts``, in order) filling each rank up to ``mean``."""
    if not len(counts):
        return np.zeros(0, np.int64)
    return _fill_ranks(_fill_bounds(loads, counts.sum(), mean), counts, np.int64(0))


def _fill_bounds(loads: np.ndarray, tiny_total: np.int64, mean: float) -> np.ndarray:
    """Where each rank's share of the tiny hosts' cumulative rows ends: rank r gets the
    hosts whose middle lies in [bounds[r-1], bounds[r]) (the last one, the rest)."""
    room = np.maximum(mean - loads, 0.0)
    if room.sum() <= 0:  # every rank is full already: spread them evenly
        room = np.ones_like(room)
    bounds: np.ndarray = np.cumsum(room) * (tiny_total / room.sum())
    return bounds


def _fill_ranks(bounds: np.ndarray, counts: np.ndarray, offset: np.int64) -> np.ndarray:
    """The ranks of consecutive tiny hosts (``counts``, in hash order) after ``offset`` rows
    of those before them. Integer sums first, then one conversion: the middles of a run of
    them are bit for bit those of the same hosts among all of them."""
    middles = (offset + np.cumsum(counts)) - counts / 2.0
    ranks = np.searchsorted(bounds, middles, side="right")
    result: np.ndarray = np.minimum(ranks, len(bounds) - 1).astype(np.int64)
    return result


def scaled(keys: np.ndarray, n: np.ndarray) -> np.ndarray:
    """``(keys * n) >> 64`` for uint64 ``keys`` and ``n`` below 2**32, exactly (the piece of
    each key among ``n`` equal hash ranges)."""
    low32 = np.uint64(0xFFFFFFFF)
    hi, lo = keys >> np.uint64(32), keys & low32
    out: np.ndarray = ((hi * n + ((lo * n) >> np.uint64(32))) >> np.uint64(32)).astype(np.int64)
    return out


def pieces_needed(count: int, total: int, world_size: int) -> int:
    """How many pieces a host of ``count`` items is cut into (see the module's rules)."""
    if world_size <= 1 or total == 0:
        return 1
    return max(1, min(world_size, math.ceil(count / (total / world_size))))


# ---------------------------------------------------------------- from aggregated counts
#
# A plan step's run ranks derive the same assignment without every rank reading every
# host's count (planning/aggregate.py): the hosts are cut into ``world_size`` ranges of their
# hash, each range's counts summed once; a rank then needs every heavy host (LPT places them
# all) and, of the small ones, only the totals of each range, except for the few ranges whose
# small hosts the fill may give it.


def range_start(index: int, n: int) -> int:
    """The smallest hash of range ``index`` of ``n`` equal hash ranges, ceil(index 2**64 / n)
    (2**64 for index n): the hashes h with ``scaled(h, n) == index``. A heavy host's pieces
    are such ranges of its key hashes, the aggregated counts such ranges of host hashes."""
    return -((-index << 64) // n)


def range_of(hashes: np.ndarray, n: int) -> np.ndarray:
    """The range of ``n`` each of ``hashes`` lies in (see :func:`range_start`)."""
    return scaled(np.asarray(hashes, dtype=np.uint64), np.uint64(n))


@dataclass(frozen=True, slots=True)
class RangeSummary:
    """One host-hash range's counts as every rank needs them: its heavy hosts (those of more
    than mean / TINY rows, which from_counts places by LPT) one by one, the others as a
    count of hosts and of rows."""

    heavy_hosts: np.ndarray  # uint64, sorted
    heavy_rows: np.ndarray  # int64, beside them
    light_hosts: int
    light_rows: int

    @classmethod
    def of(cls, hashes: np.ndarray, rows: np.ndarray, total: int, world_size: int) -> RangeSummary:
        """The summary of a range's counts (``hashes`` sorted) when every range holds
        ``total`` rows (the threshold is from_counts': mean = total / world_size)."""
        rows = np.asarray(rows, dtype=np.int64)
        heavy = ~_is_tiny(rows, total / world_size)
        return cls(
            np.asarray(hashes, dtype=np.uint64)[heavy],
            rows[heavy],
            int((~heavy).sum()),
            int(rows[~heavy].sum()),
        )


@dataclass(frozen=True)
class CountedRanges:
    """What every rank derives alike from the summaries of all ``world_size`` ranges: the
    heavy hosts placed exactly as :meth:`Assignment.from_counts` places them (the same LPT,
    order and ties), and where the fill's rank bounds lie over the small hosts' cumulative
    rows, each range's at its offset. Which ranges a rank must read (:meth:`ranges_for`) and
    its partial assignment from their counts (:meth:`assignment`) follow."""

    world_size: int
    total: int
    placed: _Placed | None  # None: nothing to place (one rank, or no rows)
    heavy: Assignment  # the pieces of every heavy host placed, no small host yet
    joined: np.ndarray  # the heavy hosts that joined the fill, sorted
    fill_hosts: np.ndarray  # per range: the hosts the fill places (small + joined)
    fill_rows: np.ndarray  # per range: their rows
    offsets: np.ndarray  # per range: the fill's rows in the ranges before it
    bounds: np.ndarray | None  # _fill_bounds; None when the fill has no host

    @classmethod
    def of(cls, world_size: int, total: int, ranges: Sequence[RangeSummary]) -> CountedRanges:
        """From the summaries of ranges 0 .. world_size - 1 of ``total`` rows in all."""
        if world_size < 1:
            raise ValueError("world_size must be at least 1")
        if len(ranges) != world_size:
            raise ValueError(f"{len(ranges)} range summaries for world size {world_size}")
        zeros = np.zeros(world_size, np.int64)
        if sum(r.light_rows + int(r.heavy_rows.sum()) for r in ranges) != total:
            raise ValueError(f"the ranges' rows do not add up to {total}")
        none = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        if world_size == 1 or total == 0:  # from_counts places nothing either
            empty = Assignment._of(world_size, {}, *none)
            return cls(world_size, total, None, empty, none[0], zeros, zeros, zeros, None)
        heavy = np.concatenate([r.heavy_hosts for r in ranges])
        heavy_rows = np.concatenate([r.heavy_rows for r in ranges])
        where = range_of(heavy, world_size)
        expected = np.repeat(np.arange(world_size), [len(r.heavy_hosts) for r in ranges])
        if (where != expected).any() or (heavy[1:] <= heavy[:-1]).any():  # no np.diff: unsigned
            raise ValueError("a range's heavy hosts are not its own, or not sorted")
        mean = total / world_size
        placed = _place_heavy(heavy, heavy_rows, mean, world_size, 1)
        fill_hosts = np.array([r.light_hosts for r in ranges], np.int64)
        fill_rows = np.array([r.light_rows for r in ranges], np.int64)
        np.add.at(fill_hosts, where[placed.joined], 1)
        np.add.at(fill_rows, where[placed.joined], heavy_rows[placed.joined])
        offsets = np.cumsum(fill_rows) - fill_rows
        bounds = None
        if fill_hosts.sum():
            bounds = _fill_bounds(placed.loads, fill_rows.sum(), mean)
        return cls(
            world_size,
            total,
            placed,
            Assignment._of(world_size, placed.pieces, *none),
            heavy[placed.joined],
            fill_hosts,
            fill_rows,
            offsets,
            bounds,
        )

    def ranges_for(self, rank: int) -> list[int]:
        """The ranges whose counts ``rank`` needs: those where the fill may place one of its
        small hosts (every range between the first and the last one that holds any)."""
        if self.bounds is None:
            return []
        low = -np.inf if rank == 0 else self.bounds[rank - 1]
        high = np.inf if rank == self.world_size - 1 else self.bounds[rank]
        # The middles of range r's fill hosts lie within [offsets[r], offsets[r] + fill_rows[r]]
        # and the rank's within [low, high): a range is needed only where the two meet.
        meet = (self.offsets <= high) & (self.offsets + self.fill_rows >= low)
        needed = np.flatnonzero(meet & (self.fill_hosts > 0))
        if not len(needed):
            return []
        span = np.arange(needed[0], needed[-1] + 1)
        return [int(r) for r in span[self.fill_hosts[span] > 0]]

    def assignment(
        self, rank: int, counts: Mapping[int, tuple[np.ndarray, np.ndarray]]
    ) -> Assignment:
        """Rank ``rank``'s assignment, given ``counts`` (host hashes, sorted, and rows) of
        every range :meth:`ranges_for` names: its heavy hosts, everyone's pieces and the
        small hosts of those ranges are exactly from_counts'; it knows no other small host."""
        if self.placed is None:  # from_counts' assignment places nothing: complete as it is
            return self.heavy
        hosts, ranks = [np.zeros(0, np.uint64)], [np.zeros(0, np.int64)]
        needed = self.ranges_for(rank)
        mean = self.total / self.world_size
        for index in needed:
            hashes, rows = counts[index]
            hashes = np.asarray(hashes, dtype=np.uint64)
            rows = np.asarray(rows, dtype=np.int64)
            fill = _is_tiny(rows, mean) | np.isin(hashes, self.joined)
            if fill.sum() != self.fill_hosts[index] or rows[fill].sum() != self.fill_rows[index]:
                raise ValueError(f"range {index}'s counts do not match its summary")
            assert self.bounds is not None  # a needed range has fill hosts
            hosts.append(hashes[fill])
            ranks.append(_fill_ranks(self.bounds, rows[fill], self.offsets[index]))
        span = (1, 0)  # lo > hi: no small host known
        if needed:
            span = (range_start(needed[0], self.world_size),
                    range_start(needed[-1] + 1, self.world_size) - 1)  # fmt: skip
        return dataclasses.replace(
            self.heavy,
            tiny_hosts=np.concatenate(hosts),
            tiny_ranks=np.concatenate(ranks),
            rank_only=rank,
            tiny_span=span,
        )
