"""http/content.py: what a body really is, and when that contradicts the response."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from fetchshard.http.content import content_problem, sniff


def _image(fmt: str, mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, (8, 8), 128 if mode == "L" else (10, 20, 30)).save(out, format=fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "kind"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_images_are_known_by_their_first_bytes(fmt: str, kind: str) -> None:
    body = _image(fmt)
    assert sniff(body) == kind
    assert content_problem(kind, body, 200) is None


def test_other_kinds_of_bytes() -> None:
    assert sniff(b"\xef\xbb\xbf  <!DOCTYPE html><html>") == "text/html"
    assert sniff(b"\n<HTML><head>") == "text/html"
    assert sniff(b"%PDF-1.7\n") == "application/pdf"
    assert sniff(b"PK\x03\x04rest") == "application/zip"
    assert sniff(b'<?xml version="1.0"?><svg xmlns="...">') == "image/svg+xml"
    assert sniff(b"just some words\n") == "text/plain"
    assert sniff(bytes(range(256))) is None


def test_what_contradicts_an_image_content_type() -> None:
    page = b"<!doctype html><title>Not found</title>"
    assert content_problem("image/jpeg", page, 200) == "an HTML page served as image/jpeg"
    assert content_problem("IMAGE/PNG; q=1", b"%PDF-1.4", 200) == (
        "image/png but the bytes are application/pdf"
    )
    assert content_problem("image/jpeg", b"Access denied", 200) == (
        "image/jpeg but the bytes are text/plain"
    )
    assert content_problem("image/jpeg", b"", 200) == "empty body (HTTP 200)"


def test_what_passes() -> None:
    png = _image("PNG")
    assert content_problem("image/jpeg", png, 200) is None  # one image type as another
    assert content_problem("image/jpeg", bytes(range(256)), 200) is None  # unknown binary
    assert content_problem("text/html", b"<html></html>", 200) is None  # what it says
    assert content_problem(None, b"<html></html>", 200) is None
    assert content_problem("application/octet-stream", b"%PDF-", 200) is None
    assert content_problem("text/plain", b"", 204) is None  # no body expected


def test_an_expected_hash_matches_or_says_both() -> None:
    import hashlib
    import json

    import pyarrow as pa

    from fetchshard.config import InputConfig
    from fetchshard.http.content import ExpectedHash, expected_hash

    extras = pa.schema([("caption", pa.string()), ("input_sha256", pa.string())])
    check = expected_hash(InputConfig(hash_column="sha256"), extras)
    assert check == ExpectedHash(1, "sha256")
    assert expected_hash(InputConfig(), extras) is None
    body = b"bytes"
    sha = hashlib.sha256(body).hexdigest()
    assert check.mismatch(json.dumps(["c", sha.upper()]), body, sha) is None
    assert check.mismatch(json.dumps(["c", ""]), body, sha) is None
    assert check.mismatch(json.dumps(["c", None]), body, sha) is None
    assert (
        check.mismatch(json.dumps(["c", "ab"]), body, sha) == f"sha256 {sha}, the input expects ab"
    )
    md5 = ExpectedHash(0, "md5")
    assert md5.mismatch(json.dumps([hashlib.md5(body).hexdigest()]), body, sha) is None
    assert md5.mismatch(json.dumps(["00"]), body, sha) is not None


def test_git_sha1_is_git_s_blob_id() -> None:
    from fetchshard.http.content import GitBlobHash, hexdigest, new_hasher

    body = b"hello\n"
    hasher = GitBlobHash(len(body))
    hasher.update(body[:3])
    hasher.update(memoryview(body)[3:])
    # `git hash-object` of the same bytes; and the empty blob every git knows
    assert hasher.hexdigest() == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert hexdigest("git-sha1", b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert new_hasher("git-sha1", None) is None  # its header needs the size first


def test_auto_checksums_name_their_algorithm() -> None:
    import hashlib
    import json

    from fetchshard.http.content import ExpectedFile, named_checksum

    assert named_checksum("SHA256: AB") == ("sha256", "ab")
    assert named_checksum("crc32:00") is None and named_checksum("abc") is None
    check = ExpectedFile(0, 1, "auto")
    body = b"x" * 10
    md5 = hashlib.md5(body).hexdigest()
    sha = hashlib.sha256(body).hexdigest()
    extras = json.dumps([10, f"md5:{md5}"])
    assert check.algorithms(extras) == ("md5",)
    assert check.mismatch(extras, 10, sha, {"md5": md5}) is None
    wrong = check.mismatch(extras, 10, sha, {"md5": "0" * 32})
    assert wrong is not None and "md5" in wrong
    assert check.mismatch(json.dumps([10, f"sha256:{sha}"]), 10, sha, {}) is None
    unknown = check.mismatch(json.dumps([10, "crc32:00"]), 10, sha, {})
    assert unknown is not None and "names no known algorithm" in unknown
    assert check.mismatch(json.dumps([9, f"sha256:{sha}"]), 10, sha, {}) is not None
