"""The merged dataset's documents: file records and the manifest, written and read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from document_examples import FIXTURES, document_kinds
from fetchshard.errors import NewerFormatError, RunFolderError
from fetchshard.merging.documents import FileRecord, MergeManifest


def _record(kind: str = "data", index: int = 0) -> FileRecord:
    return FileRecord(
        path=f"{kind}/train-{index:05d}-of-00002.parquet",
        kind=kind,
        rows=100 + index,
        bytes=123_456 + index,
        sha256=f"{index:064x}",
    )


def _manifest() -> MergeManifest:
    return MergeManifest(
        complete=False,
        format="parquet",
        body_as="image",
        counts={"planned": 300, "ok": 201, "failed": 9, "missing": 90},
        errors={"dns": 2, "http_404": 7},
        bytes=250_000,
        files=[_record("data", 0), _record("data", 1), _record("errors", 0)],
        missing=[
            {"rank": 2, "reason": "missing_part", "part": 3, "items": 90, "message": "m"},
            {"rank": 1, "reason": "unfinished", "part": None, "items": 0, "message": "n"},
        ],
        run={"world_size": 4, "command": ["fetchshard", "run"], "settings": {"fetch": {}}},
        fetchshard_version="1.2.3",
    )


def test_a_file_record_round_trips(tmp_path: Path) -> None:
    record = _record("errors", 1)
    path = tmp_path / ".fetchshard" / "plan" / "errors-00001.json"
    record.write(path)
    assert FileRecord.read(path) == record
    raw = json.loads(path.read_text())
    assert raw["kind"] == "merged_file" and raw["version"] == 1
    assert raw["file_kind"] == "errors"  # not "kind": the envelope's


def test_the_manifest_round_trips(tmp_path: Path) -> None:
    manifest = _manifest()
    path = tmp_path / "manifest.json"
    manifest.write(path, durable=True)
    found = MergeManifest.read(path)
    assert found == manifest
    assert found is not None and found.files[2].kind == "errors"
    raw = json.loads(path.read_text())
    assert raw["kind"] == "merge_manifest" and raw["version"] == 1
    assert [f["file_kind"] for f in raw["files"]] == ["data", "data", "errors"]
    assert "kind" not in raw["files"][0]


def test_reading_a_missing_document_gives_none(tmp_path: Path) -> None:
    assert FileRecord.read(tmp_path / "nothing.json") is None
    assert MergeManifest.read(tmp_path / "manifest.json") is None


def test_a_manifest_without_its_optional_keys_reads_with_defaults(tmp_path: Path) -> None:
    raw = _manifest().to_dict()
    for key in ("missing", "run", "fetchshard_version"):
        del raw[key]
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(raw))  # no kind, no version: version 1 of its own kind
    found = MergeManifest.read(path)
    assert found is not None
    assert (found.missing, found.run, found.fetchshard_version) == ([], {}, "")
    assert found.files == _manifest().files


def test_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({**_manifest().to_dict(), "kind": "merge_manifest", "version": 2}))
    with pytest.raises(NewerFormatError, match="upgrade fetchshard"):
        MergeManifest.read(path)


def test_a_document_of_another_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data-00000.json"
    _record().write(path)
    with pytest.raises(RunFolderError, match="'merged_file' document, not 'merge_manifest'"):
        MergeManifest.read(path)


def test_a_record_lacking_a_key_is_not_valid(tmp_path: Path) -> None:
    path = tmp_path / "data-00000.json"
    raw = json.loads(_record().to_bytes())
    del raw["sha256"]
    path.write_text(json.dumps(raw))
    with pytest.raises(RunFolderError, match="not a valid merged_file document"):
        FileRecord.read(path)


@pytest.mark.parametrize(
    "name", ["merged-file.json", "merge-manifest.json", "merge-manifest-complete.json"]
)
def test_each_kind_writes_the_bytes_it_always_wrote_and_reads_them_back(name: str) -> None:
    """tests/fixtures/documents/ holds the bytes the hand-written writers wrote."""
    doc = document_kinds()[name]
    assert doc.to_bytes() == (FIXTURES / name).read_bytes()
    assert type(doc).read(FIXTURES / name) == doc
