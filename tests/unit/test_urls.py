"""Unit tests for fetchshard.urls: URL normalization, stable ids and hashes."""

from __future__ import annotations

import pytest

from fetchshard.urls import (
    BadUrl,
    canonical_host,
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


@pytest.mark.parametrize(
    ("origin", "host"),
    [
        ("http://example.com", "example.com"),
        ("https://a:8080", "a:8080"),
        ("http://a:80", None),
        ("https://a:443", None),
        ("https://a:80", "a:80"),
        ("http://a:65535", "a:65535"),
        ("http://a:65536", None),
        ("http://a:0", None),
        ("http://a:080", None),
        ("http://A", None),
        ("http://user@a", None),
        ("ftp://a", None),
        ("http://", None),
    ],
)
def test_canonical_host(origin: str, host: str | None) -> None:
    assert canonical_host(origin) == host
