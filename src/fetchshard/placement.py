"""Which rank fetches an item, and each rank's share of a host's rate, under either rule.

``partition.spread`` names the rule. ``auto`` (the default): the counted host assignment
(``assignment.Assignment``), derived from the hosts' item counts, which planning counts first.
A number: the fixed spread (``partition.Partitioner``), every host over that many buckets.
Planning asks a :class:`Placement` for ranks; the fetch phase asks :class:`RankShares` for
rates, which planning records in the ledger for the hosts a rank fetches only part of.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Protocol

import numpy as np

from fetchshard.assignment import Assignment
from fetchshard.partition import ID_MASK, Partitioner

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


def partition_fingerprint(spread: int | str) -> dict[str, Any]:
    if is_counted(spread):
        return {"spread": AUTO, "assignment": ASSIGNMENT_VERSION}
    return {"spread": spread}


@dataclass(frozen=True, slots=True)
class RankShares:
    """One rank's share of each of its hosts' rates (and items).

    With a fixed spread it is computed; with the counted assignment a host is either wholly
    on the rank (share 1) or one of the ``split`` hosts planning recorded, by host id."""

    rank: int
    partitioner: Partitioner | None = None
    split: Mapping[int, Fraction] = field(default_factory=dict)

    def of(self, host_id: int, host: str) -> Fraction:
        if self.partitioner is not None:
            return self.partitioner.share_of(host, self.rank)
        return self.split.get(host_id, Fraction(1))

    @property
    def widest(self) -> int:
        """Over how many ranks the rank's most split host is spread, at most (1: none)."""
        if self.partitioner is not None:
            return self.partitioner.spread
        return max((s.denominator // s.numerator for s in self.split.values()), default=1)

    def to_json(self) -> dict[str, list[int]]:
        return {str(h): [s.numerator, s.denominator] for h, s in sorted(self.split.items())}

    @classmethod
    def counted(cls, assignment: Assignment, rank: int) -> RankShares:
        """The rank's shares under the counted assignment, by host id (the ledger's key: the
        low bits of the host hash the assignment keys by, as partition.item_id)."""
        split = assignment.split_shares(rank)
        return cls(rank, split={(h & ID_MASK) or 1: s for h, s in split.items()})

    @classmethod
    def from_json(cls, rank: int, data: Mapping[str, Any] | None) -> RankShares:
        split = {int(h): Fraction(int(n), int(d)) for h, (n, d) in (data or {}).items()}
        return cls(rank, split=split)
