"""generations.py: which generation a rank joins, when one begins, and the fence."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchshard.errors import GenerationError, RunMismatchError
from fetchshard.planning.generations import (
    check_fence,
    check_same_run,
    enter_generation,
    uses_input_plan,
)
from fetchshard.runfolder.documents import DoneMarker, RunManifest
from fetchshard.runfolder.generations import Generation, read_generations
from fetchshard.runfolder.layout import RunPaths

FP = {"world_size": 4, "partition": {"spread": "auto"}, "input": {"files": []}}


@pytest.fixture
def run(tmp_path: Path) -> Path:
    RunManifest(fingerprint=FP, fetchshard_version="test").write(RunPaths(tmp_path).run_json)
    return tmp_path


def _enter(root: Path, world: int, retry: tuple[str, ...] = ()) -> Generation:
    return enter_generation(root, world, retry, lock_wait=0)[1]


def test_the_same_world_size_joins_another_begins_the_next_generation(run: Path) -> None:
    assert _enter(run, 4) == Generation(0, 4)
    assert uses_input_plan(run, 4) and not uses_input_plan(run, 3)
    assert _enter(run, 3) == Generation(1, 3)
    assert _enter(run, 3) == Generation(1, 3)  # its other ranks join it
    assert _enter(run, 4) == Generation(2, 4)  # an earlier size is a new generation too
    assert read_generations(run) == [Generation(0, 4), Generation(1, 3), Generation(2, 4)]
    assert not uses_input_plan(run, 4)


def test_an_empty_folder_is_generation_0_of_any_size(tmp_path: Path) -> None:
    assert _enter(tmp_path, 7) == Generation(0, 7) and read_generations(tmp_path) == []
    assert uses_input_plan(tmp_path, 7)


def test_retry_failed_in_place_on_one_generation_in_a_new_one_after(run: Path) -> None:
    assert _enter(run, 4, ("transient",)) == Generation(0, 4)  # requeued in its ledgers
    assert _enter(run, 2) == Generation(1, 2)
    retrying = _enter(run, 2, ("transient",))
    assert retrying == Generation(2, 2, ("transient",))  # failures sit in both before it
    assert _enter(run, 2, ("transient",)) == retrying  # its own ranks, and a rerun of it
    paths = RunPaths(run, 2)
    for rank in range(2):
        DoneMarker(rank=rank, world_size=2, items=0, completed_at=0.0).write(paths.done(rank))
    assert _enter(run, 2, ("transient",)) == Generation(3, 2, ("transient",))  # once more
    assert _enter(run, 2, ("all",)) == Generation(4, 2, ("all",))  # other kinds chosen


def test_another_run_is_refused_whatever_the_world_size(run: Path) -> None:
    check_same_run(run, {**FP, "world_size": 9, "plan": "step"})  # per generation: fine
    with pytest.raises(RunMismatchError, match="another input"):
        check_same_run(run, {**FP, "input": {"files": [{"path": "other"}]}})


@pytest.fixture
def held_rank_0(run: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding rank 0's lock of generation 0 (F_GETLK sees only others')."""
    code = (
        "import sys, time; from pathlib import Path\n"
        "from fetchshard.runfolder.lock import rank_lock\n"
        "with rank_lock(Path(sys.argv[1]), 0, wait=0):\n"
        "    print('held', flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(RunPaths(run).lock(0))],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    yield proc
    proc.kill()
    proc.wait(timeout=10)


def test_a_new_generation_waits_for_the_running_one_then_refuses(
    run: Path, held_rank_0: subprocess.Popen[str]
) -> None:
    started = time.monotonic()
    told: list[str] = []
    with pytest.raises(GenerationError) as caught:
        enter_generation(run, 3, (), lock_wait=0.6, on_wait=told.append)
    assert time.monotonic() - started >= 0.6
    message = str(caught.value)
    assert "rank 0 of generation 0 (4 ranks) is held by pid" in message
    assert "stop every rank of generation 0 before running with 3 ranks" in message
    assert len(told) == 1 and "waiting up to 0.6s" in told[0]
    assert read_generations(run) == [Generation(0, 4)]  # nothing began
    assert _enter(run, 4) == Generation(0, 4)  # its own ranks still join it


def test_a_rank_whose_generation_is_not_the_newest_refuses(run: Path) -> None:
    chosen = _enter(run, 4)
    check_fence(run, chosen)
    _enter(run, 2)  # generation 1 began meanwhile
    with pytest.raises(GenerationError, match=r"generation 1 \(2 ranks\) began after"):
        check_fence(run, chosen)
    check_fence(run, Generation(1, 2))
