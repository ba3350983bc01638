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
"""

from __future__ import annotations

import heapq
import math
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
        none = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        if world_size == 1 or total == 0:
            return cls(world_size, {}, *none)
        mean = total / world_size
        tiny = counts <= mean / TINY
        heap = [(0.0, rank) for rank in range(world_size)]
        big_hashes, big_counts = hashes[~tiny], counts[~tiny]
        n_pieces = np.ceil(big_counts * granularity / mean)
        n_pieces = np.minimum(n_pieces, world_size * granularity).astype(np.int64)
        n_pieces = np.maximum(n_pieces, 1)
        size = big_counts / n_pieces
        # Largest pieces first; ties by host hash: the same order on every machine.
        order = np.lexsort((big_hashes, -size))
        pieces: dict[int, list[int]] = {}
        loads = np.zeros(world_size)
        fill = tiny.copy()
        big_index = np.flatnonzero(~tiny)
        for i in order:
            host, k, piece_size = int(big_hashes[i]), int(n_pieces[i]), float(size[i])
            if k == 1 and heap[0][0] + piece_size > mean:
                # No rank has room for this whole host: it joins the small ones that fill
                # what each rank lacks, rather than push the least loaded over the mean.
                fill[big_index[i]] = True
                continue
            ranks = pieces.setdefault(host, [])
            for _ in range(k):
                load, rank = heapq.heappop(heap)
                ranks.append(rank)
                loads[rank] = load + piece_size
                heapq.heappush(heap, (load + piece_size, rank))
        tiny = fill
        tiny_order = np.argsort(hashes[tiny], kind="stable")
        tiny_hosts, tiny_counts = hashes[tiny][tiny_order], counts[tiny][tiny_order]
        tiny_ranks = _fill(loads, tiny_counts, mean)
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
        )

    def rank_of(self, host_hash: int, key_hash: int) -> int:
        """The rank of the item with key hash ``key_hash`` of host ``host_hash``."""
        ranks = self.pieces.get(host_hash)
        if ranks is not None:
            return ranks[(key_hash * len(ranks)) >> 64]
        return self._tiny_rank(host_hash)

    def _tiny_rank(self, host_hash: int) -> int:
        at = int(np.searchsorted(self.tiny_hosts, np.uint64(host_hash)))
        if at < len(self.tiny_hosts) and int(self.tiny_hosts[at]) == host_hash:
            return int(self.tiny_ranks[at])
        return host_hash % self.world_size

    def ranks_of(self, host_hashes: np.ndarray, key_hashes: np.ndarray) -> np.ndarray:
        """:meth:`rank_of` of many items at once (uint64 arrays of equal length)."""
        hosts = np.asarray(host_hashes, dtype=np.uint64)
        keys = np.asarray(key_hashes, dtype=np.uint64)
        out: np.ndarray = (hosts % np.uint64(self.world_size)).astype(np.int64)
        at, found = _find(self.tiny_hosts, hosts)
        out[found] = self.tiny_ranks[at[found]]
        at, hit = _find(self.big_hosts, hosts)
        which = at[hit]
        piece = scaled(keys[hit], self.big_pieces[which].astype(np.uint64))
        out[hit] = self.big_ranks[self.big_starts[which] + piece]
        return out

    def reaches(self, host_hashes: np.ndarray, rank: int) -> np.ndarray:
        """Whether some item of each host may land on ``rank`` (no key needed to rule it out)."""
        hosts = np.asarray(host_hashes, dtype=np.uint64)
        out: np.ndarray = (hosts % np.uint64(self.world_size)).astype(np.int64) == rank
        at, found = _find(self.tiny_hosts, hosts)
        out[found] = self.tiny_ranks[at[found]] == rank
        at, hit = _find(self.big_hosts, hosts)
        out[hit] = np.isin(at[hit], self._big_on(rank))
        return out

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


def _fill(loads: np.ndarray, counts: np.ndarray, mean: float) -> np.ndarray:
    """The ranks of tiny hosts (``counts``, in order) filling each rank up to ``mean``."""
    if not len(counts):
        return np.zeros(0, np.int64)
    room = np.maximum(mean - loads, 0.0)
    if room.sum() <= 0:  # every rank is full already: spread them evenly
        room = np.ones_like(room)
    bounds = np.cumsum(room) * (counts.sum() / room.sum())
    middles = np.cumsum(counts) - counts / 2.0
    ranks = np.searchsorted(bounds, middles, side="right")
    result: np.ndarray = np.minimum(ranks, len(loads) - 1).astype(np.int64)
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
