"""The local folder ``hf download --local-dir`` leaves, beside a mirror's files: one metadata
file per file, so a later ``hf download`` or ``snapshot_download(local_dir=...)`` of the same
commit finds every file done (huggingface_hub's ``_local_folder``; the notes' §6).

``.cache/huggingface/download/<path>.metadata`` holds ``"<commit>\\n<etag>\\n<time>\\n"``, the
etag being the file's sha256 (LFS) or git blob sha1; huggingface_hub trusts it only when the
file is not newer than that time (less one second), so it is written after the file.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fetchshard.runfolder.storage import LOCAL

CACHE = PurePosixPath(".cache/huggingface")
DOWNLOAD = CACHE / "download"


@dataclass(frozen=True, slots=True)
class DownloadMetadata:
    commit: str
    etag: str
    timestamp: float


def metadata_path(root: Path, relative: PurePosixPath) -> Path:
    """Where the metadata of the file at ``relative`` in the mirror ``root`` is."""
    return root.joinpath(*DOWNLOAD.parts, *relative.parent.parts, relative.name + ".metadata")


def write_metadata(
    root: Path, relative: PurePosixPath, commit: str, etag: str, *, durable: bool
) -> None:
    """Record that the file at ``relative`` is the one of ``commit`` (after it is in place)."""
    path = metadata_path(root, relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    ignore = root.joinpath(*CACHE.parts, ".gitignore")
    if not ignore.exists():  # as huggingface_hub does: git never sees the cache
        LOCAL.write_atomic(ignore, b"*")
    LOCAL.write_atomic(path, f"{commit}\n{etag}\n{time.time()}\n".encode(), durable=durable)


def read_metadata(root: Path, relative: PurePosixPath) -> DownloadMetadata | None:
    """The metadata of the file at ``relative``, or None when there is none or it is not
    readable as huggingface_hub writes it."""
    try:
        lines = metadata_path(root, relative).read_text(encoding="utf-8").splitlines()
        return DownloadMetadata(lines[0].strip(), lines[1].strip(), float(lines[2]))
    except (OSError, IndexError, ValueError):
        return None


def remove_metadata(root: Path, relative: PurePosixPath) -> None:
    """The file at ``relative`` is gone (its item failed): so is its metadata."""
    metadata_path(root, relative).unlink(missing_ok=True)
