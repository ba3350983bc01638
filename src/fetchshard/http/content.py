"""Whether a body that arrived whole is what its response says it is (every download), and
what the input says it is (``input.hash_column``: its expected hash; ``input.size_column`` and
``input.checksum_column``: a file list's expected size and checksum).

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
from typing import Protocol

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


def content_problem(
    content_type: str | None, body: bytes, http_status: int | None, size: int | None = None
) -> str | None:
    """Why this whole body is not what the response says (a ``bad_content`` message), or
    None when nothing contradicts it. ``body`` may be only its first bytes, with ``size``."""
    if (size == 0) if size is not None else not body:
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

    def mismatch(
        self,
        extras: str | None,
        body: bytes | None,
        sha256: str | None,
        digests: dict[str, str] | None = None,
    ) -> str | None:
        """Why the body is not the item's (a ``hash_mismatch`` message), or None: it matches,
        or the item has no expected hash. A body in a file comes with its ``digests``."""
        if extras is None:
            return None
        want = _wanted(extras, self.index)
        if want is None:
            return None
        got = _digest(self.algorithm, body, sha256, digests)
        if got is None:
            return None
        return None if got == want else f"{self.algorithm} {got}, the input expects {want}"


def _wanted(extras: str, index: int) -> str | None:
    value = json.loads(extras)[index]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value))
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().lower()


def _digest(
    algorithm: str, body: bytes | None, sha256: str | None, digests: dict[str, str] | None
) -> str | None:
    if algorithm == "sha256" and sha256:
        return sha256
    if digests and algorithm in digests:
        return digests[algorithm]
    return hexdigest(algorithm, body) if body is not None else None


# git's id of a file's content (a Hugging Face repo lists it for every file stored in git):
# sha1 of b"blob <size>\0" followed by the bytes.
GIT_SHA1 = "git-sha1"
# input.checksum_algorithm "auto": each value names its algorithm ("sha256:<hex>").
AUTO = "auto"
NAMED_ALGORITHMS = ("sha256", "md5", "sha1", GIT_SHA1)


class Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


class GitBlobHash:
    """git's blob id of bytes whose size is known before the first of them."""

    __slots__ = ("_sha1",)

    def __init__(self, size: int) -> None:
        self._sha1 = hashlib.sha1(b"blob %d\0" % size)

    def update(self, data: bytes | memoryview, /) -> None:
        self._sha1.update(data)

    def hexdigest(self) -> str:
        return self._sha1.hexdigest()


def new_hasher(algorithm: str, size: int | None = None) -> Hasher | None:
    """A running hash of ``algorithm``; None for git-sha1 when the size is not known (its
    header comes first)."""
    if algorithm == GIT_SHA1:
        return GitBlobHash(size) if size is not None else None
    return hashlib.new(algorithm)


def hexdigest(algorithm: str, body: bytes) -> str:
    """``algorithm``'s digest of a whole body."""
    hasher = new_hasher(algorithm, len(body))
    assert hasher is not None  # the size is the body's
    hasher.update(body)
    return hasher.hexdigest()


def named_checksum(value: str) -> tuple[str, str] | None:
    """``"sha256:<hex>"`` -> ("sha256", hex); None when no known algorithm is named."""
    algorithm, sep, digest = value.partition(":")
    algorithm = algorithm.strip().lower()
    if not sep or algorithm not in NAMED_ALGORITHMS or not digest.strip():
        return None
    return algorithm, digest.strip().lower()


@dataclass(frozen=True)
class ExpectedFile:
    """Where an item's expected size and checksum are among its extra columns
    (``input.size_column``, ``input.checksum_column``): a ``checksum_mismatch`` if not met."""

    size_index: int | None
    checksum_index: int | None
    algorithm: str  # sha256, md5, sha1, git-sha1, or auto: each value names its own

    def size(self, extras: str | None) -> int | None:
        """The item's expected size in bytes, if the input gives one."""
        if extras is None or self.size_index is None:
            return None
        want = _wanted(extras, self.size_index)
        return int(want) if want is not None and want.isdigit() else None

    def checksum(self, extras: str | None) -> tuple[str, str] | None:
        """The item's expected (algorithm, hex digest), if the input gives one."""
        if extras is None or self.checksum_index is None:
            return None
        want = _wanted(extras, self.checksum_index)
        if want is None:
            return None
        if self.algorithm == AUTO:
            return named_checksum(want)
        return self.algorithm, want

    def algorithms(self, extras: str | None) -> tuple[str, ...]:
        """The hashes besides sha256 the item's check needs, which its sink takes."""
        wanted = self.checksum(extras)
        return () if wanted is None or wanted[0] == "sha256" else (wanted[0],)

    def mismatch(
        self,
        extras: str | None,
        size: int | None,
        sha256: str | None,
        digests: dict[str, str] | None,
    ) -> str | None:
        """Why the body is not the item's, or None (it matches, or nothing is expected)."""
        if extras is None:
            return None
        expected = self.size(extras)
        if expected is not None and size is not None and size != expected:
            return f"{size:,} bytes, the input expects {expected:,}"
        wanted = self.checksum(extras)
        if wanted is not None:
            algorithm, want = wanted
            got = _digest(algorithm, None, sha256, digests)
            if got is not None and got != want:
                return f"{algorithm} {got}, the input expects {want}"
        if self.checksum_index is not None and self.algorithm == AUTO and wanted is None:
            value = _wanted(extras, self.checksum_index)
            if value is not None:
                known = ", ".join(NAMED_ALGORITHMS)
                return f"checksum {value!r} names no known algorithm ({known}:<hex>)"
        return None


def column_index(names: list[str], column: str | None) -> int | None:
    """Where the input column ``column`` is among the extras (perhaps renamed ``input_<name>``
    to stay clear of an output column)."""
    if column is None:
        return None
    for name in (column, f"input_{column}"):
        if name in names:
            return names.index(name)
    return None


def checked_algorithms(config: InputConfig) -> tuple[str, ...]:
    """The hashes besides sha256 the input's checks need (``md5`` or ``sha1``), which a sink
    takes as the body streams."""
    wanted = []
    if config.checksum_column is not None and config.checksum_algorithm != AUTO:
        wanted.append(config.checksum_algorithm)  # auto: per item (ExpectedFile.algorithms)
    if config.hash_column is not None:
        wanted.append(config.hash_algorithm)
    return tuple(dict.fromkeys(a for a in wanted if a != "sha256"))


def expected_file(config: InputConfig, extras: pa.Schema | None) -> ExpectedFile | None:
    """The size and checksum checks of a run with ``input.size_column`` or
    ``input.checksum_column``."""
    if extras is None or (config.size_column is None and config.checksum_column is None):
        return None
    names = list(extras.names)
    return ExpectedFile(
        column_index(names, config.size_column),
        column_index(names, config.checksum_column),
        config.checksum_algorithm,
    )


def expected_hash(config: InputConfig, extras: pa.Schema | None) -> ExpectedHash | None:
    """The hash check of a run with ``input.hash_column`` (its extra column, perhaps renamed
    ``input_<name>`` to stay clear of an output column)."""
    if extras is None:
        return None
    index = column_index(list(extras.names), config.hash_column)
    return None if index is None else ExpectedHash(index, config.hash_algorithm)
