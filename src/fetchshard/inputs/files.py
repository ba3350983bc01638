"""Which files the inputs are: paths, globs and folders resolved; formats; fingerprints."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

from fetchshard.errors import InputError

FORMATS = ("txt", "csv", "tsv", "jsonl", "parquet")


_COMPRESSION = {".gz": "gzip", ".zst": "zstd", ".zstd": "zstd"}


_SUFFIX_FORMAT = {
    "": "txt",
    ".txt": "txt",
    ".lst": "txt",
    ".urls": "txt",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


_GLOB_CHARS = frozenset("*?[")


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _skipped_name(name: str) -> bool:
    """Hidden files, Hadoop/Spark markers (``_SUCCESS``, ``_temporary``) and partial files."""
    return name.startswith((".", "_")) or name.endswith(".tmp")


def _detectable(path: Path) -> bool:
    try:
        detect_format(path, "auto")
    except InputError:
        return False
    return True


def _folder_files(folder: Path) -> list[Path]:
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not _skipped_name(d))
        for name in sorted(files):
            path = Path(root) / name
            if not _skipped_name(name) and _detectable(path):
                found.append(path)
    return found


def resolve_inputs(paths: Sequence[str]) -> list[Path]:
    """Expand files, globs and folders into a sorted, de-duplicated list of resolved files.

    A folder means every file below it whose format can be detected from its name (hidden
    files, names starting with ``_`` and names ending ``.tmp`` are skipped); the same names
    are skipped among glob matches. A file named explicitly is always taken.
    """
    if not paths:
        raise InputError("no input paths given (set input.paths)")
    found: set[Path] = set()
    for entry in paths:
        expanded = os.path.expanduser(entry)
        files: list[Path] = []
        if any(ch in _GLOB_CHARS for ch in entry):
            for match in sorted(glob.glob(expanded, recursive=True)):
                path = Path(match)
                if path.is_dir():
                    files.extend(_folder_files(path))
                elif path.exists() and not _skipped_name(path.name):
                    files.append(path)
            if not files:
                raise InputError(f"input glob matches no files: {entry}")
        else:
            path = Path(expanded)
            if path.is_dir():
                files = _folder_files(path)
                if not files:
                    raise InputError(f"input folder holds no input files: {entry}")
            elif path.exists():
                files = [path]
            else:
                raise InputError(f"input file not found: {entry}")
        found.update(f.resolve() for f in files)
    return sorted(found)


def split_compression(path: Path) -> tuple[str, str | None]:
    """``("name.csv", "gzip")`` for ``name.csv.gz``; the name is lower-cased."""
    name = path.name.lower()
    for suffix, codec in _COMPRESSION.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], codec
    return name, None


def detect_format(path: Path, configured: str) -> str:
    """The input format: ``configured`` unless it is ``"auto"``, else from the file name."""
    if configured != "auto":
        if configured not in FORMATS:
            raise InputError(f"unknown input format {configured!r} (known: {', '.join(FORMATS)})")
        return configured
    name, _ = split_compression(path)
    suffix = Path(name).suffix
    fmt = _SUFFIX_FORMAT.get(suffix)
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path} from its suffix {suffix!r}; "
            f"set input.format to one of {', '.join(FORMATS)}"
        )
    return fmt


def fingerprint_files(paths: Sequence[Path]) -> list[dict[str, object]]:
    """Path, size and modification time of each file (to recognise the same inputs later)."""
    out: list[dict[str, object]] = []
    for path in paths:
        try:
            resolved = path.resolve()
            st = resolved.stat()
        except OSError as exc:
            raise InputError(f"cannot read input file {path}: {one_line(exc)}") from exc
        out.append({"path": str(resolved), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    return out
