"""Lines of a (decompressing) byte stream in bounded memory, and the JSON objects of jsonl."""

from __future__ import annotations

import json
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from fetchshard.errors import InputError
from fetchshard.inputs.files import one_line

_MAX_JSON_LINE = 64 * 1024 * 1024  # a jsonl record longer than this is an InputError


_READ_CHUNK = 256 * 1024  # bytes per read from a (decompressing) text stream


_BOM = b"\xef\xbb\xbf"


def open_stream(path: Path, compression: str | None) -> Any:
    return pa.input_stream(str(path), compression=compression)


def iter_lines(stream: Any, cap: int) -> Iterator[tuple[bytes, bool]]:
    """Yield ``(line, truncated)`` for every line (``\\n`` removed, blank lines included).

    Memory stays bounded: a line longer than ``cap`` bytes (after dropping leading ASCII
    whitespace) is yielded as its first ``cap`` bytes with ``truncated=True`` as soon as it
    is known to be too long, and the rest of it is skipped.
    """
    pending = bytearray()
    skipping = False
    first = True
    while True:
        chunk: bytes = stream.read(_READ_CHUNK)
        if not chunk:
            break
        if first:
            first = False
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        parts = chunk.split(b"\n")
        tail = parts.pop()
        if parts:
            if skipping:
                parts = parts[1:]  # the end of the over-long line
                skipping = False
            elif pending:
                pending += parts[0]
                parts[0] = bytes(pending)
            pending = bytearray()
            for line in parts:
                if len(line) > cap:
                    line = line.lstrip()
                    if len(line) > cap:
                        yield line[:cap], True
                        continue
                yield line, False
            pending += tail
        elif not skipping:
            pending += tail
        if not skipping and len(pending) > cap:
            stripped = bytes(pending).lstrip()
            if len(stripped) > cap:
                yield stripped[:cap], True
                pending = bytearray()
                skipping = True
            else:
                pending = bytearray(stripped)
    if pending and not skipping:
        yield bytes(pending), False


def decode_prefix(data: bytes) -> str | None:
    """Decode a cut-off line, allowing the cut to fall inside a multi-byte character."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end == len(data) and exc.reason == "unexpected end of data":
            try:
                return data[: exc.start].decode("utf-8")
            except UnicodeDecodeError:
                return None
        return None


def _parse_json_line(line: bytes, path: Path, lineno: int) -> dict[str, Any]:
    try:
        try:
            obj = json.loads(line)
        except UnicodeDecodeError:
            obj = json.loads(line.decode("utf-8", "surrogateescape"))
    except ValueError as exc:
        raise InputError(f"input {path} line {lineno}: invalid JSON: {one_line(exc)}") from exc
    if not isinstance(obj, dict):
        raise InputError(f"input {path} line {lineno}: expected a JSON object")
    return obj


def iter_json_rows(
    path: Path, compression: str | None, *, stream: Any = None
) -> Generator[tuple[dict[str, Any], int], None, None]:
    """Every JSON object of a jsonl file (or of ``stream``, a slice of it) with its line's
    size in bytes (blank lines skipped)."""
    source = stream if stream is not None else open_stream(path, compression)
    with source:
        for lineno, (line, truncated) in enumerate(iter_lines(source, _MAX_JSON_LINE), 1):
            if truncated:
                raise InputError(f"input {path} line {lineno}: longer than {_MAX_JSON_LINE} bytes")
            if line.strip():
                yield _parse_json_line(line, path, lineno), len(line)
