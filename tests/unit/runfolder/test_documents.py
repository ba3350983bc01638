"""The run folder's documents: written and read by their own class, versioned."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from document_examples import FIXTURES, document_kinds
from fetchshard.errors import NewerFormatError, RunFolderError
from fetchshard.runfolder.documents import (
    HISTORY_SAMPLES,
    DoneMarker,
    PartialTransfer,
    ProgressHistory,
    ProgressSnapshot,
    RankStats,
    RunManifest,
)
from fetchshard.stats import Stats

FINGERPRINT = {"world_size": 4, "partition": {"spread": 16}, "input": {"files": []}}


def examples() -> list[object]:
    stats = Stats(items=10, ok=8, failed=2, requests=12, errors=Counter({"http_404": 2}))
    snapshot = ProgressSnapshot(rank=3, world_size=4, started_at=100.0, state="fetching")
    snapshot.committed, snapshot.bytes, snapshot.errors = 7, 1234, {"dns": 1}
    snapshot.sample(105.0)
    return [
        RunManifest(fingerprint=FINGERPRINT, fetchshard_version="0.1.0"),
        RankStats(rank=3, world_size=4, complete=True, stats=stats, written_at=200.5),
        snapshot,
        DoneMarker(rank=3, world_size=4, items=10, completed_at=201.0),
    ]


@pytest.mark.parametrize("doc", examples(), ids=lambda d: type(d).__name__)
def test_each_document_round_trips(doc: RunManifest, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "rank-00003"
    doc.write(path, durable=True)
    again = type(doc).read(path)
    assert again == doc
    raw = json.loads(path.read_bytes())
    assert raw["kind"] == type(doc).KIND and raw["version"] == type(doc).VERSION


@pytest.mark.parametrize("doc", examples(), ids=lambda d: type(d).__name__)
def test_a_newer_version_is_refused_with_a_clear_error(doc: RunManifest, tmp_path: Path) -> None:
    raw = json.loads(doc.to_bytes())
    raw["version"] = type(doc).VERSION + 1
    raw["a_field_of_the_future"] = [1, 2]
    path = tmp_path / "rank-00003"
    path.write_text(json.dumps(raw))
    with pytest.raises(NewerFormatError, match=r"newer fetchshard .* upgrade"):
        type(doc).read(path)


def test_unknown_keys_of_the_same_version_are_ignored(tmp_path: Path) -> None:
    doc = examples()[1]
    raw = json.loads(doc.to_bytes())  # type: ignore[attr-defined]
    raw["added_later"] = True
    path = tmp_path / "s.json"
    path.write_text(json.dumps(raw))
    assert RankStats.read(path) == doc


def test_a_missing_document_is_none_and_a_broken_one_an_error(tmp_path: Path) -> None:
    assert RunManifest.read(tmp_path / "run.json") is None
    (tmp_path / "run.json").write_text("{not json")
    with pytest.raises(RunFolderError, match="not a readable run document"):
        RunManifest.read(tmp_path / "run.json")
    (tmp_path / "run.json").write_text(json.dumps({"kind": "progress", "version": 1}))
    with pytest.raises(RunFolderError, match="is a 'progress' document"):
        RunManifest.read(tmp_path / "run.json")
    (tmp_path / "run.json").write_text(json.dumps({"kind": "run", "fingerprint": {}}))
    with pytest.raises(RunFolderError, match="not a valid run document"):
        RunManifest.read(tmp_path / "run.json")


def test_documents_written_before_versions_are_read(tmp_path: Path) -> None:
    """run.json, stats and done markers as fetchshard wrote them at 7d665ca."""
    (tmp_path / "run.json").write_text(
        json.dumps({"fingerprint": FINGERPRINT, "fetchshard_version": "0.1.0"}, indent=2)
    )
    assert RunManifest.read(tmp_path / "run.json").world_size == 4  # type: ignore[union-attr]
    (tmp_path / "s.json").write_text(
        json.dumps({"rank": 1, "world_size": 4, "complete": False, "ok": 3, "errors": {}})
    )
    stats = RankStats.read(tmp_path / "s.json")
    assert stats is not None and stats.stats.ok == 3 and not stats.complete
    (tmp_path / "rank-00002").write_bytes(b"")
    marker = DoneMarker.read(tmp_path / "rank-00002")
    assert marker == DoneMarker(rank=2, world_size=None, items=None, completed_at=None)


def test_the_progress_history_stays_bounded_and_evenly_spaced() -> None:
    snap = ProgressSnapshot(rank=0, world_size=1, started_at=0.0, history_step=1.0)
    for second in range(100_000):
        snap.committed = second
        snap.sample(float(second))
    assert HISTORY_SAMPLES // 2 <= len(snap.history) <= HISTORY_SAMPLES
    steps = {b - a for a, b in itertools.pairwise(snap.history.time)}
    assert len(steps) == 1 and steps.pop() == snap.history_step
    assert snap.history.committed[-1] >= 100_000 - snap.history_step
    assert len(snap.to_bytes()) < 16_000  # read every few seconds by report, from 400 ranks


def test_thinning_the_history_keeps_its_first_and_newest_samples() -> None:
    snap = ProgressSnapshot(rank=0, world_size=1, started_at=0.0, history_step=1.0)
    for second in range(HISTORY_SAMPLES + 1):
        snap.sample(float(second))
    assert snap.history.time[0] == 0.0 and snap.history.time[-1] == HISTORY_SAMPLES
    assert snap.history_step == 2.0


def test_a_progress_history_of_version_1_is_read_as_named_columns(tmp_path: Path) -> None:
    """Version 1 kept rows [seconds since started_at, committed, written this session, bytes];
    a snapshot of it reads as version 2's columns: times since the epoch, fetched."""
    raw = {"kind": "progress", "version": 1, "rank": 0, "world_size": 1, "started_at": 1000.0}
    raw |= {"committed_before": 40, "history": [[0.5, 40, 0, 0], [5.5, 40, 25, 900]]}
    (tmp_path / "p.json").write_text(json.dumps(raw))
    snap = ProgressSnapshot.read(tmp_path / "p.json")
    assert snap is not None
    assert snap.history == ProgressHistory(
        time=[1000.5, 1005.5], committed=[40, 40], fetched=[40, 65], bytes=[0, 900]
    )
    again = json.loads(snap.to_bytes())
    assert again["version"] == 2 and again["history"]["fetched"] == [40, 65]


RUN_FOLDER_KINDS = {
    name: doc
    for name, doc in document_kinds().items()
    if not type(doc).__module__.startswith("fetchshard.merging")
}


@pytest.mark.parametrize("name", sorted(RUN_FOLDER_KINDS))
def test_each_kind_writes_the_bytes_it_always_wrote_and_reads_them_back(name: str) -> None:
    """tests/fixtures/documents/ holds the bytes the hand-written writers wrote."""
    doc = RUN_FOLDER_KINDS[name]
    old = (FIXTURES / name).read_bytes()
    assert doc.to_bytes() == old
    assert type(doc).read(FIXTURES / name) == doc


def test_a_partial_transfer_record_is_none_when_it_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "x.json").write_text(json.dumps({"kind": "partial", "version": 3, "url": "u"}))
    assert PartialTransfer.read(tmp_path / "x.json") is None
    # Version 2 is a ranged transfer's (output/segments.py): without its ranges, nothing.
    (tmp_path / "x.json").write_text(json.dumps({"kind": "partial", "version": 2, "url": "u"}))
    assert PartialTransfer.read(tmp_path / "x.json") is None
    ranges = {"kind": "partial", "version": 2, "url": "u", "size": 10, "segments": [[0, 9, -1]]}
    (tmp_path / "x.json").write_text(json.dumps(ranges))
    assert PartialTransfer.read(tmp_path / "x.json") is None
