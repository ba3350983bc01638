"""collect.py: a folder's documents read into rank rows and one summed history, whichever
version of fetchshard wrote the progress snapshots."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from fetchshard.reporting import build_report
from fetchshard.reporting.collect import collect
from fetchshard.runfolder.documents import ProgressSnapshot, RunManifest
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.view import RunFolder

COMPAT = Path(__file__).resolve().parents[2] / "fixtures" / "compat" / "folders.tar.gz"
NOW = 1_800_000_000.0


def test_snapshots_of_version_1_and_2_sum_into_one_history(tmp_path: Path) -> None:
    paths = RunPaths(tmp_path)
    RunManifest(fingerprint={"world_size": 2}, fetchshard_version="test").write(paths.run_json)
    # Rank 0 as fetchshard wrote it before version 2: rows [t since start, committed,
    # written this session, bytes]; it stopped on a signal (lock free, "interrupted").
    started = NOW - 100.0
    old = {
        "kind": "progress",
        "version": 1,
        "rank": 0,
        "world_size": 2,
        "started_at": started,
        "updated_at": NOW - 10.0,
        "state": "interrupted",
        "total": 500,
        "committed": 300,
        "written": 100,
        "committed_before": 200,
        "history": [[0.0, 200, 0, 0], [45.0, 200, 50, 5e6], [90.0, 300, 100, 1e7]],
        "history_step": 45.0,
    }
    paths.progress(0).parent.mkdir(parents=True)
    paths.progress(0).write_text(json.dumps(old))
    snap = ProgressSnapshot(rank=1, world_size=2, started_at=started, state="fetching")
    snap.total, snap.history_step = 400, 45.0
    for t, committed in ((0.0, 0), (45.0, 100), (90.0, 200)):
        snap.committed = snap.written = committed
        snap.sample(started + t)
    snap.updated_at = NOW - 10.0
    snap.write(paths.progress(1))
    assert json.loads(paths.progress(1).read_bytes())["version"] == 2

    found = collect(RunFolder(tmp_path), now=NOW)
    assert [(r.rank, r.state, r.planned, r.committed) for r in found.ranks] == [
        (0, "stopped", 500, 300),
        (1, "dead", 400, 200),
    ]
    h = found.history
    assert h.time == [started, started + 45.0, started + 90.0]
    assert h.fetched == [200 + 0, 250 + 100, 300 + 200]  # committed before + written
    assert h.committed == [200, 300, 500] and h.bytes == [0, 5e6, 1e7]


def test_a_folder_of_the_version_before_reads(tmp_path: Path) -> None:
    """The compatibility fixture (tests/fixtures/compat: a crashed run of 4554d4b)."""
    with tarfile.open(COMPAT) as tar:
        tar.extractall(tmp_path, filter="data")
    run = tmp_path / "run"
    raw = json.loads((run / "progress" / "rank-00000.json").read_bytes())
    assert raw["version"] == 1
    report = build_report(RunFolder(run), now=raw["updated_at"] + 5.0)
    (row,) = report.ranks.rows
    assert row.state == "dead" and row.planned == 60 and row.committed > 0
    assert report.history.samples.time == [pytest.approx(raw["started_at"] + 0.025, abs=1e-3)]
