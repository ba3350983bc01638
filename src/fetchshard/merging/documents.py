"""The merged dataset's documents: a record per finished file and ``manifest.json``.

=============  ===================================  =========================================
document       file                                 written
=============  ===================================  =========================================
FileRecord     ``.fetchshard/<plan>/<file>.json``   before its file is renamed into place
MergeManifest  ``manifest.json``                    last, once every file of the plan is there
=============  ===================================  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from fetchshard.runfolder.documents import Document


@dataclass(frozen=True, kw_only=True)
class FileRecord(Document):
    """One output file as written: a rerun finds it done; the manifest lists it."""

    KIND: ClassVar[str] = "merged_file"
    VERSION: ClassVar[int] = 1

    path: str  # relative to the merged folder
    kind: str  # data, errors, shard
    rows: int
    bytes: int
    sha256: str

    # Its own writer and reader: ``kind`` is written as ``file_kind`` (the envelope's
    # ``kind`` is the document's).
    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "file_kind": self.kind,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> FileRecord:
        return cls(
            path=str(data["path"]),
            kind=str(data["file_kind"]),
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
        )


@dataclass(frozen=True, kw_only=True)
class MergeManifest(Document):
    """What the merged folder holds, and what it lacks (a partial merge)."""

    KIND: ClassVar[str] = "merge_manifest"
    VERSION: ClassVar[int] = 1

    complete: bool
    format: str  # parquet or webdataset
    body_as: str  # image or binary
    counts: dict[str, int]  # ok, failed, planned, missing
    errors: dict[str, int]  # failed rows by error kind
    bytes: int
    files: list[FileRecord]
    missing: list[dict[str, Any]] = field(default_factory=list)  # gaps of a partial merge
    run: dict[str, Any] = field(default_factory=dict)  # fingerprint, settings, command
    fetchshard_version: str = ""
