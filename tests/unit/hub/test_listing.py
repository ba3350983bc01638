"""hub/listing.py's pure parts: Link headers, origins, patterns, failures without an answer."""

from __future__ import annotations

import socket
import ssl
import urllib.error
from email.message import Message

import pytest

from fetchshard.hub.listing import (
    RepoFile,
    _next_link,
    _same_origin,
    _unreachable,
    selected,
)

SHA1 = "a" * 40
SHA256 = "b" * 64


def _headers(*links: str) -> Message:
    message = Message()
    for link in links:
        message["Link"] = link
    return message


def test_next_link() -> None:
    base = "http://h/api/datasets/ns/n/tree/x?recursive=true"
    assert _next_link(_headers(), base) is None
    nxt = "http://h/api/datasets/ns/n/tree/x?recursive=true&cursor=ab%2Fc"
    assert _next_link(_headers(f'<{nxt}>; rel="next"'), base) == nxt
    assert _next_link(_headers(f"<{nxt}>; rel=next"), base) == nxt
    assert _next_link(_headers(f'<http://h/p>; rel="prev", <{nxt}>; rel="next"'), base) == nxt
    assert _next_link(_headers('<http://h/p>; rel="prev"', f'<{nxt}>; rel="next"'), base) == nxt
    assert _next_link(_headers('<?cursor=2>; rel="next"'), base) == (
        "http://h/api/datasets/ns/n/tree/x?cursor=2"
    )
    assert _next_link(_headers('<http://h/p>; rel="last"'), base) is None


def test_same_origin() -> None:
    origin = ("https", "huggingface.co", 443)
    assert _same_origin("https://huggingface.co/api/x", origin)
    assert _same_origin("https://HuggingFace.co:443/api/x", origin)
    assert not _same_origin("https://cdn-lfs.hf.co/x", origin)
    assert not _same_origin("https://huggingface.co:8443/x", origin)
    assert not _same_origin("http://huggingface.co/x", origin)
    plain = ("http", "127.0.0.1", 80)
    assert _same_origin("https://127.0.0.1/x", plain)  # an upgrade keeps it
    assert not _same_origin("https://127.0.0.1:8443/x", plain)
    assert not _same_origin("http://127.0.0.1:81/x", plain)


@pytest.mark.parametrize(
    ("path", "include", "exclude", "kept"),
    [
        ("a/b.txt", (), (), True),
        ("a/b.txt", ("a/",), (), True),
        ("ab/c.txt", ("a/",), (), False),
        ("a/b/c.json", ("a/*.json",), (), True),  # "*" crosses "/"
        ("a/b.txt", ("*.TXT",), (), False),  # case-sensitive
        ("a/b.txt", (), ("a/",), False),
        ("a/b.txt", ("a\\",), (), True),
        ("a/b.txt", ("*.txt",), ("*.txt",), False),
    ],
)
def test_selected(
    path: str, include: tuple[str, ...], exclude: tuple[str, ...], kept: bool
) -> None:
    assert selected(path, include, exclude) is kept


def test_repo_file() -> None:
    git = RepoFile("a.txt", 3, SHA1)
    lfs = RepoFile("b.bin", 3000, SHA1, SHA256)
    assert (git.etag, git.is_lfs) == (SHA1, False)
    assert (lfs.etag, lfs.is_lfs) == (SHA256, True)


def test_failures_without_an_answer() -> None:
    refused = _unreachable(urllib.error.URLError(ConnectionRefusedError(111, "Connection refused")))
    assert (refused.reason, refused.transient) == ("Connection refused", True)
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    nxdomain = _unreachable(urllib.error.URLError(unknown))
    assert not nxdomain.transient and "Name or service not known" in nxdomain.reason
    again = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert _unreachable(urllib.error.URLError(again)).transient
    cert = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cert.verify_message = "self-signed certificate"
    untrusted = _unreachable(urllib.error.URLError(cert))
    assert not untrusted.transient and "self-signed certificate" in untrusted.reason
    assert not _unreachable(urllib.error.URLError("unknown url type: ftp")).transient
    assert _unreachable(TimeoutError("timed out")).transient
    assert _unreachable(ConnectionResetError(104, "Connection reset by peer")).transient
