"""Which rank fetches an item, and each rank's share of a host's rate, under either rule.

``partition.spread`` names the rule. ``auto`` (the default): the counted host assignment
(:class:`fetchshard.planning.assignment.Assignment`), derived from the hosts' item counts,
which planning counts first. A number: the fixed spread (:class:`FixedSpread`), every host
over that many buckets. Planning asks a :class:`Placement` for ranks; the fetch phase asks
:class:`RankShares` for rates, which planning records in the ledger for the hosts a rank
fetches only part of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from fetchshard.planning.assignment import Assignment
from fetchshard.urls import ID_MASK, hash64

AUTO = "auto"
ASSIGNMENT_VERSION = 1  # the counted assignment's rules (assignment.py); in the fingerprint


class Placement(Protocol):
    """A rule giving every item its rank from the hashes of its host and key."""

    @property
    def world_size(self) -> int: ...

    def ranks_of(self, host_hashes: np.ndarray, key_hashes: np.ndarray) -> np.ndarray: ...

    def reaches(self, host_hashes: np.ndarray, rank: int) -> np.ndarray: ...


def is_counted(spread: int | str) -> bool:
    """Whether ``partition.spread`` asks for the counted assignment."""
    return spread == AUTO


@dataclass(frozen=True, slots=True)
class FixedSpread:
    """``rank = (h(host) + h(key) mod spread) mod world_size`` (see DESIGN.md): every host
    over ``spread`` buckets, whatever its size. ``FixedSpread(1, 1)`` keeps every item on
    rank 0 (a world of one, the counting pass, a plan step's slice)."""

    world_size: int
    spread: int

    def rank_of(self, host: str, key: str) -> int:
        bucket = hash64(key) % self.spread
        return (hash64(host) + bucket) % self.world_size

    def owned_buckets(self, host: str, rank: int) -> int:
        """How many of a host's ``spread`` buckets land on ``rank``."""
        if self.spread >= self.world_size:
            full, extra = divmod(self.spread, self.world_size)
            # Buckets 0..spread-1 land on ranks start, start+1, ... (wrapping), so the
            # first `extra` ranks after `start` own one more bucket than the others.
            offset = (rank - hash64(host)) % self.world_size
            return full + (1 if offset < extra else 0)
        offset = (rank - hash64(host)) % self.world_size
        return 1 if offset < self.spread else 0

    def rate_share(self, host: str, rank: int, rate: float) -> float:
        """This rank's exact share of a host's global rate."""
        return rate * self.owned_buckets(host, rank) / self.spread

    # The same rule on hashes (``hash64`` of the host and of the key), as planning uses it.

    def ranks_of(self, host_hashes: np.ndarray, key_hashes: np.ndarray) -> np.ndarray:
        """:meth:`rank_of` of many items at once (uint64 arrays of equal length)."""
        world = np.uint64(self.world_size)
        buckets = np.asarray(key_hashes, dtype=np.uint64) % np.uint64(self.spread)
        offsets = np.asarray(host_hashes, dtype=np.uint64) % world
        out: np.ndarray = ((offsets + buckets) % world).astype(np.int64)
        return out

    def reaches(self, host_hashes: np.ndarray, rank: int) -> np.ndarray:
        """Whether some bucket of each host lands on ``rank``: ranks offset .. offset+spread-1."""
        offsets = (np.asarray(host_hashes, dtype=np.uint64) % np.uint64(self.world_size)).astype(
            np.int64
        )
        out: np.ndarray = (rank - offsets) % self.world_size < self.spread
        return out

    def share_of(self, host: str, rank: int) -> Fraction:
        """The exact fraction of a host's items, and of its rate, that ``rank`` takes."""
        return Fraction(self.owned_buckets(host, rank), self.spread)


@dataclass(frozen=True, slots=True)
class RankShares:
    """One rank's share of each of its hosts' rates (and items).

    With a fixed spread it is computed; with the counted assignment a host is either wholly
    on the rank (share 1) or one of the ``split`` hosts planning recorded, by host id."""

    rank: int
    fixed: FixedSpread | None = None
    split: Mapping[int, Fraction] = field(default_factory=dict)

    def of(self, host_id: int, host: str) -> Fraction:
        if self.fixed is not None:
            return self.fixed.share_of(host, self.rank)
        return self.split.get(host_id, Fraction(1))

    @property
    def widest(self) -> int:
        """Over how many ranks the rank's most split host is spread, at most (1: none)."""
        if self.fixed is not None:
            return self.fixed.spread
        return max((s.denominator // s.numerator for s in self.split.values()), default=1)

    def to_json(self) -> dict[str, list[int]]:
        return {str(h): [s.numerator, s.denominator] for h, s in sorted(self.split.items())}

    @classmethod
    def counted(cls, assignment: Assignment, rank: int) -> RankShares:
        """The rank's shares under the counted assignment, by host id (the ledger's key: the
        low bits of the host hash the assignment keys by, as urls.item_id)."""
        split = assignment.split_shares(rank)
        return cls(rank, split={(h & ID_MASK) or 1: s for h, s in split.items()})

    @classmethod
    def from_json(cls, rank: int, data: Mapping[str, Any] | None) -> RankShares:
        split = {int(h): Fraction(int(n), int(d)) for h, (n, d) in (data or {}).items()}
        return cls(rank, split=split)
