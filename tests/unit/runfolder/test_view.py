"""The read-only view of an output folder, over files written by the code's own writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetchshard.errors import NewerFormatError, RunFolderError, RunMismatchError
from fetchshard.ledger import Ledger, PlannedItem
from fetchshard.planning.fingerprint import claim_run_folder
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.documents import DoneMarker, ProgressSnapshot, RankStats
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.view import RunFolder
from fetchshard.stats import Stats

FP = {"world_size": 3, "partition": {"spread": 16}, "input": {"files": []}}


def make_folder(root: Path) -> RunPaths:
    paths = RunPaths(root)
    claim_run_folder(paths, FP, RankInfo(0, 3, "test"), restart=False)
    # rank 0: done, with a committed part; rank 1: fetching; rank 2: nothing yet
    with Ledger(paths.ledger_paths(0)) as ledger:
        ledger.insert_items(
            [PlannedItem(i, 7, "h.test", f"http://h.test/{i}", None) for i in (1, 2)]
        )
        ledger.commit_part(1, [(1, 1, None), (2, 3, "http_404")], rows=2, nbytes=99, now=5.0)
    paths.part(0, 1).parent.mkdir(parents=True)
    paths.part(0, 1).write_bytes(b"PAR1")
    RankStats(rank=0, world_size=3, complete=True, stats=Stats(ok=1), written_at=6.0).write(
        paths.stats(0)
    )
    DoneMarker(rank=0, world_size=3, items=2, completed_at=6.0).write(paths.done(0))
    ProgressSnapshot(rank=1, world_size=3, started_at=1.0, state="fetching").write(
        paths.progress(1)
    )
    return paths


def test_ranks_their_states_counts_and_parts(tmp_path: Path) -> None:
    paths = make_folder(tmp_path / "out")
    folder = RunFolder(paths.root)
    assert folder.world_size == 3
    assert [view.state for view in folder.ranks()] == ["done", "fetching", "not started"]
    assert folder.not_done() == [1, 2]
    done = folder.rank(0)
    summary = done.ledger()
    assert summary is not None
    assert (summary.counts.total, summary.counts.committed, summary.counts.failed) == (2, 2, 1)
    assert summary.errors == {"http_404": 1}
    assert [(p.part, p.rows, p.bytes) for p in summary.parts] == [(1, 2, 99)]
    assert done.part_files() == [paths.part(0, 1)]
    assert done.stats is not None and done.stats.complete
    assert folder.rank(2).ledger() is None and folder.rank(2).part_files() == []
    assert not any(view.running for view in folder.ranks())


def test_the_ledger_is_read_while_its_rank_holds_it_open(tmp_path: Path) -> None:
    paths = make_folder(tmp_path / "out")
    with Ledger(paths.ledger_paths(0)) as ledger:
        ledger.commit_part(2, [], rows=0, nbytes=10, now=7.0)
        summary = RunFolder(paths.root).rank(0).ledger()
        assert summary is not None and [p.part for p in summary.parts] == [1, 2]
    assert not paths.ledger(0).with_name(paths.ledger(0).name + "-journal").exists()


def test_strays_beyond_the_world_size(tmp_path: Path) -> None:
    paths = make_folder(tmp_path / "out")
    DoneMarker(rank=5, world_size=6, items=0, completed_at=0.0).write(paths.done(5))
    assert RunFolder(paths.root).strays() == [5]


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="not a folder"):
        RunFolder(tmp_path / "missing")
    with pytest.raises(RunFolderError, match="not a fetchshard output folder"):
        RunFolder(tmp_path)


def test_a_folder_of_a_newer_fetchshard(tmp_path: Path) -> None:
    paths = make_folder(tmp_path / "out")
    raw = json.loads(paths.run_json.read_text())
    raw["version"] = 99
    paths.run_json.write_text(json.dumps(raw))
    with pytest.raises(NewerFormatError):
        RunFolder(paths.root)
    with pytest.raises(RunMismatchError, match=r"newer fetchshard.*--restart"):
        claim_run_folder(paths, FP, RankInfo(0, 3, "test"), restart=False)


def test_prepare_refuses_another_run_and_restart_clears_the_rank(tmp_path: Path) -> None:
    paths = make_folder(tmp_path / "out")
    other = {**FP, "world_size": 4}
    with pytest.raises(RunMismatchError, match=r"world size 3 -> 4"):
        claim_run_folder(paths, other, RankInfo(0, 4, "test"), restart=False)
    claim_run_folder(paths, other, RankInfo(0, 4, "test"), restart=True)
    assert not paths.done(0).exists() and not paths.ledger(0).exists()
    assert RunFolder(paths.root).world_size == 4
