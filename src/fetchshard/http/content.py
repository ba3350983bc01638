"""Whether a body that arrived whole is what its response says it is (every download), and
what the input says it is (``input.hash_column``: its expected hash).

A 200 with an empty body, an HTML page served as an image (a soft 404, a login wall) and
bytes of another kind under an image Content-Type (a PDF, an archive, text) are
``bad_content`` failures, not silent successes. One image format labelled as another
(PNG bytes as ``image/jpeg``) passes: every decoder reads the bytes, not the header.
Pure functions of the bytes: unit-tested without a network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import pyarrow as pa

from fetchshard.config import InputConfig

_HEAD = 512  # bytes looked at

# Leading bytes -> the kind of file they start (images first: the common case).
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\x00\x00\x01\x00", "image/x-icon"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
    (b"\x7fELF", "application/x-executable"),
)
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<!--", b"<script", b"<title")
_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | {0x09, 0x0A, 0x0D}


def sniff(body: bytes) -> str | None:
    """The kind of file ``body`` starts, by its first bytes: an image type,
    ``text/html``, another known type, ``text/plain`` for plain ASCII text, else None."""
    head = body[:_HEAD]
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis", b"heic", b"heix", b"mif1"):
        return "image/avif" if head[8:11] == b"avi" else "image/heic"
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            return kind
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(_HTML_STARTS):
        return "text/html"
    if text.startswith(b"<?xml") and b"<svg" in head.lower():
        return "image/svg+xml"
    if text.startswith(b"<svg"):
        return "image/svg+xml"
    if head and all(b in _TEXT_BYTES for b in head):
        return "text/plain"
    return None


def content_problem(content_type: str | None, body: bytes, http_status: int | None) -> str | None:
    """Why this whole body is not what the response says (a ``bad_content`` message), or
    None when nothing contradicts it."""
    if not body:
        return f"empty body (HTTP {http_status})" if http_status == 200 else None
    declared = (content_type or "").split(";", 1)[0].strip().lower()
    if not declared.startswith("image/"):
        return None
    found = sniff(body)
    if found is None or found.startswith("image/"):
        return None  # an unknown binary format may be an image; another image type reads
    if found == "text/html":
        return f"an HTML page served as {declared}"
    return f"{declared} but the bytes are {found}"


@dataclass(frozen=True)
class ExpectedHash:
    """Where an item's expected hash is among its extra columns, and of which algorithm."""

    index: int  # in the extras' JSON array (output/extras.py)
    algorithm: str  # sha256 or md5

    def mismatch(self, extras: str | None, body: bytes | None, sha256: str | None) -> str | None:
        """Why ``body`` is not the item's (a ``hash_mismatch`` message), or None: it matches,
        or the item has no expected hash."""
        if extras is None or body is None:
            return None
        want = json.loads(extras)[self.index]
        if not isinstance(want, str) or not want.strip():
            return None
        want = want.strip().lower()
        got = sha256 if self.algorithm == "sha256" and sha256 else _digest(self.algorithm, body)
        return None if got == want else f"{self.algorithm} {got}, the input expects {want}"


def _digest(algorithm: str, body: bytes) -> str:
    return hashlib.new(algorithm, body).hexdigest()


def expected_hash(config: InputConfig, extras: pa.Schema | None) -> ExpectedHash | None:
    """The hash check of a run with ``input.hash_column`` (its extra column, perhaps renamed
    ``input_<name>`` to stay clear of an output column)."""
    if config.hash_column is None or extras is None:
        return None
    for name in (config.hash_column, f"input_{config.hash_column}"):
        if name in extras.names:
            return ExpectedHash(extras.names.index(name), config.hash_algorithm)
    return None
