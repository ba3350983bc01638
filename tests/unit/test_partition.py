"""Unit tests for fetchshard.partition: URL normalization, stable ids and the rank partition."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from fetchshard.partition import (
    BadUrl,
    Partitioner,
    hash64,
    item_id,
    item_key,
    normalize_url,
)

# --- normalize_url --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "url", "host"),
    [
        ("HTTP://Example.COM/Path", "http://example.com/Path", "example.com"),
        ("HtTpS://WWW.Example.com/a/B", "https://www.example.com/a/B", "www.example.com"),
        ("http://example.com:80/a", "http://example.com/a", "example.com"),
        ("https://example.com:443/a", "https://example.com/a", "example.com"),
        ("http://example.com/a#frag", "http://example.com/a", "example.com"),
        ("http://example.com/a?b=1&c=2", "http://example.com/a?b=1&c=2", "example.com"),
        ("http://example.com/a?b=1#frag", "http://example.com/a?b=1", "example.com"),
        ("http://example.com", "http://example.com/", "example.com"),
        ("http://example.com?q=1", "http://example.com/?q=1", "example.com"),
        ("http://example.com:8080/x", "http://example.com:8080/x", "example.com:8080"),
        ("https://example.com:80/x", "https://example.com:80/x", "example.com:80"),
        ("http://example.com:443/x", "http://example.com:443/x", "example.com:443"),
        ("http://bücher.de/", "http://xn--bcher-kva.de/", "xn--bcher-kva.de"),
        ("http://BÜCHER.de/x", "http://xn--bcher-kva.de/x", "xn--bcher-kva.de"),
        ("http://[::1]/x", "http://[::1]/x", "[::1]"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x", "[::1]:8080"),
        ("http://[2001:DB8::1]:80/", "http://[2001:db8::1]/", "[2001:db8::1]"),
        ("http://127.0.0.1:9000/", "http://127.0.0.1:9000/", "127.0.0.1:9000"),
        ("http://user:pw@Example.com/", "http://user:pw@example.com/", "example.com"),
    ],
)
def test_normalize_url(text: str, url: str, host: str) -> None:
    parsed = normalize_url(text)
    assert parsed.url == url
    assert parsed.host == host


def test_normalize_url_is_idempotent() -> None:
    for text in ("HTTP://Example.COM:80/a?b#c", "http://bücher.de", "http://[::1]:81"):
        once = normalize_url(text)
        assert normalize_url(once.url) == once


@pytest.mark.parametrize(
    "text",
    [
        "example.com/path",
        "//example.com/path",
        "ftp://example.com/file",
        "mailto:someone@example.com",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "http://exa mple.com/",
        "http://example.com/a b",
        " http://example.com/",
        "http://example.com/\t",
        "http://example.com/\n",
        "http://example.com/\x00",
        "http://example.com/\x7f",
        "http:///path",
        "http://",
        "http://:80/",
        "http://a:99999/",
        "http://a:abc/",
        "",
    ],
)
def test_bad_urls(text: str) -> None:
    with pytest.raises(BadUrl):
        normalize_url(text)


def test_bad_url_is_a_value_error_with_reason() -> None:
    assert issubclass(BadUrl, ValueError)
    with pytest.raises(BadUrl, match="no scheme"):
        normalize_url("example.com")
    with pytest.raises(BadUrl, match="not http or https"):
        normalize_url("ftp://example.com/")
    with pytest.raises(BadUrl, match="whitespace or control"):
        normalize_url("http://a b/")
    with pytest.raises(BadUrl, match="no host"):
        normalize_url("http:///x")


# --- item ids -------------------------------------------------------------------------

# Computed once from the implementation (XXH3-64, seed 0, masked to 63 bits). If this ever
# changes, every existing output folder and resume ledger would silently disagree.
PINNED_URL = "https://example.com/"
PINNED_ID = 5522761390303137003


def test_item_id_is_pinned() -> None:
    assert item_id(PINNED_URL) == PINNED_ID


def test_item_id_is_stable_non_negative_and_63_bit() -> None:
    for i in range(2000):
        key = f"http://host{i % 17}.example/{i}?x={i * 7}"
        value = item_id(key)
        assert value == item_id(key)
        assert 0 <= value < 2**63
    assert item_id("") == item_id("")
    assert 0 <= item_id("\U0001f600 ünïcødé") < 2**63


def test_item_id_masks_hash64() -> None:
    assert item_id(PINNED_URL) == hash64(PINNED_URL) & (2**63 - 1)
    assert 0 <= hash64(PINNED_URL) < 2**64


def test_item_key_with_and_without_user_id() -> None:
    url = "http://example.com/"
    assert item_key(url, None) == url
    assert item_key(url, "42") != url
    assert item_key(url, "42") != item_key(url, "43")
    assert item_key(url, "") != item_key(url, None)
    assert item_id(item_key(url, "42")) != item_id(item_key(url, None))


def test_item_ids_have_no_collisions_on_a_small_sample() -> None:
    ids = {item_id(f"http://example.com/{i}") for i in range(20_000)}
    assert len(ids) == 20_000


# --- Partitioner ----------------------------------------------------------------------

HOSTS = [f"h{i}.example.org" for i in range(200)] + ["example.com", "[::1]:8080"]
COMBOS = [(3, 16), (16, 16), (400, 16), (5, 3), (7, 100), (1, 1), (1, 16), (2, 1), (16, 17)]


def test_rank_of_in_range_and_deterministic() -> None:
    p = Partitioner(world_size=7, spread=16)
    for i in range(3000):
        host = HOSTS[i % len(HOSTS)]
        key = f"http://{host}/{i}"
        rank = p.rank_of(host, key)
        assert 0 <= rank < 7
        assert rank == p.rank_of(host, key)
        assert rank == Partitioner(world_size=7, spread=16).rank_of(host, key)


def test_single_rank_gets_everything() -> None:
    p = Partitioner(world_size=1, spread=16)
    assert {p.rank_of(h, f"http://{h}/{i}") for h in HOSTS for i in range(5)} == {0}


def test_spread_one_keeps_each_host_on_one_rank() -> None:
    p = Partitioner(world_size=10, spread=1)
    ranks_used = set()
    for host in HOSTS:
        ranks = {p.rank_of(host, f"http://{host}/page/{i}") for i in range(300)}
        assert len(ranks) == 1
        ranks_used |= ranks
    assert len(ranks_used) > 1  # different hosts still land on different ranks


@pytest.mark.parametrize(("world_size", "spread"), [(8, 8), (8, 16), (5, 64), (4, 1000)])
def test_one_big_host_spreads_evenly(world_size: int, spread: int) -> None:
    p = Partitioner(world_size=world_size, spread=spread)
    host = "big.example.com"
    counts = Counter(p.rank_of(host, f"http://{host}/item/{i}") for i in range(20_000))
    assert set(counts) == set(range(world_size))
    mean = 20_000 / world_size
    assert max(counts.values()) / mean <= 1.1


@pytest.mark.parametrize(("world_size", "spread"), COMBOS)
def test_owned_buckets_sum_to_spread(world_size: int, spread: int) -> None:
    p = Partitioner(world_size=world_size, spread=spread)
    for host in HOSTS:
        owned = [p.owned_buckets(host, rank) for rank in range(world_size)]
        assert sum(owned) == spread
        assert all(n >= 0 for n in owned)
        # Balanced: no two ranks differ by more than one bucket.
        assert max(owned) - min(owned) <= 1


@pytest.mark.parametrize(("world_size", "spread"), COMBOS)
def test_rate_share_sums_to_rate(world_size: int, spread: int) -> None:
    p = Partitioner(world_size=world_size, spread=spread)
    for rate in (10.0, 0.3, 7.0, 1e-3, 12345.678):
        for host in HOSTS[:50]:
            shares = [p.rate_share(host, rank, rate) for rank in range(world_size)]
            assert all(s >= 0 for s in shares)
            assert math.isclose(math.fsum(shares), rate, rel_tol=1e-12)


def test_rate_share_is_zero_for_ranks_without_buckets() -> None:
    p = Partitioner(world_size=400, spread=16)
    host = "example.com"
    shares = [p.rate_share(host, rank, 10.0) for rank in range(400)]
    assert sum(1 for s in shares if s > 0) == 16
    assert all(s == 0.0 or s == pytest.approx(10.0 / 16) for s in shares)


@pytest.mark.parametrize(("world_size", "spread"), COMBOS)
def test_owned_buckets_matches_empirical_buckets(world_size: int, spread: int) -> None:
    p = Partitioner(world_size=world_size, spread=spread)
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
