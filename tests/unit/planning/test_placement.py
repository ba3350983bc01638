"""Unit tests for fetchshard.planning.placement: the fixed spread (``FixedSpread``)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from fetchshard.planning.placement import FixedSpread
from fetchshard.urls import hash64

# --- FixedSpread ---------------------------------------------------------------------

HOSTS = [f"h{i}.example.org" for i in range(200)] + ["example.com", "[::1]:8080"]
COMBOS = [(3, 16), (16, 16), (400, 16), (5, 3), (7, 100), (1, 1), (1, 16), (2, 1), (16, 17)]


def test_rank_of_in_range_and_deterministic() -> None:
    p = FixedSpread(world_size=7, spread=16)
    for i in range(3000):
        host = HOSTS[i % len(HOSTS)]
        key = f"http://{host}/{i}"
        rank = p.rank_of(host, key)
        assert 0 <= rank < 7
        assert rank == p.rank_of(host, key)
        assert rank == FixedSpread(world_size=7, spread=16).rank_of(host, key)


def test_single_rank_gets_everything() -> None:
    p = FixedSpread(world_size=1, spread=16)
    assert {p.rank_of(h, f"http://{h}/{i}") for h in HOSTS for i in range(5)} == {0}


def test_spread_one_keeps_each_host_on_one_rank() -> None:
    p = FixedSpread(world_size=10, spread=1)
    ranks_used = set()
    for host in HOSTS:
        ranks = {p.rank_of(host, f"http://{host}/page/{i}") for i in range(300)}
        assert len(ranks) == 1
        ranks_used |= ranks
    assert len(ranks_used) > 1  # different hosts still land on different ranks


@pytest.mark.parametrize(("world_size", "spread"), [(8, 8), (8, 16), (5, 64), (4, 1000)])
def test_one_big_host_spreads_evenly(world_size: int, spread: int) -> None:
    p = FixedSpread(world_size=world_size, spread=spread)
    host = "big.example.com"
    counts = Counter(p.rank_of(host, f"http://{host}/item/{i}") for i in range(20_000))
    assert set(counts) == set(range(world_size))
    mean = 20_000 / world_size
    assert max(counts.values()) / mean <= 1.1


@pytest.mark.parametrize(("world_size", "spread"), COMBOS)
def test_owned_buckets_sum_to_spread(world_size: int, spread: int) -> None:
    p = FixedSpread(world_size=world_size, spread=spread)
    for host in HOSTS:
        owned = [p.owned_buckets(host, rank) for rank in range(world_size)]
        assert sum(owned) == spread
        assert all(n >= 0 for n in owned)
        # Balanced: no two ranks differ by more than one bucket.
        assert max(owned) - min(owned) <= 1


@pytest.mark.parametrize(("world_size", "spread"), COMBOS)
def test_rate_share_sums_to_rate(world_size: int, spread: int) -> None:
    p = FixedSpread(world_size=world_size, spread=spread)
    for rate in (10.0, 0.3, 7.0, 1e-3, 12345.678):
        for host in HOSTS[:50]:
            shares = [p.rate_share(host, rank, rate) for rank in range(world_size)]
            assert all(s >= 0 for s in shares)
            assert math.isclose(math.fsum(shares), rate, rel_tol=1e-12)


def test_rate_share_is_zero_for_ranks_without_buckets() -> None:
    p = FixedSpread(world_size=400, spread=16)
    host = "example.com"
    shares = [p.rate_share(host, rank, 10.0) for rank in range(400)]
    assert sum(1 for s in shares if s > 0) == 16
    assert all(s == 0.0 or s == pytest.approx(10.0 / 16) for s in shares)


@pytest.mark.parametrize(("world_size", "spread"), COMBOS)
def test_owned_buckets_matches_empirical_buckets(world_size: int, spread: int) -> None:
    p = FixedSpread(world_size=world_size, spread=spread)
    n_keys = max(40 * spread, 400)
    for host in HOSTS[:12]:
        buckets_per_rank: dict[int, set[int]] = {r: set() for r in range(world_size)}
        for i in range(n_keys):
            key = f"http://{host}/doc/{i}"
            buckets_per_rank[p.rank_of(host, key)].add(hash64(key) % spread)
        # With 40 keys per bucket every bucket is hit (the chance of a miss is ~e^-40).
        assert set().union(*buckets_per_rank.values()) == set(range(spread))
        for rank in range(world_size):
            assert p.owned_buckets(host, rank) == len(buckets_per_rank[rank]), (host, rank)
