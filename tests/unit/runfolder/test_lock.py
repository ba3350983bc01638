"""The rank lock between real processes: refused while held, free once its holder dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fetchshard.errors import RankLockedError
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.lock import LockHolder, is_locked, rank_lock
from fetchshard.runfolder.view import RankView

HOLD = """
import sys, time
from pathlib import Path
from fetchshard.runfolder.lock import rank_lock
with rank_lock(Path(sys.argv[1]), 3, wait=0):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def holder(path: Path, seconds: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
    return proc


def test_a_second_process_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    path = tmp_path / "out" / "locks" / "rank-00003.lock"
    proc = holder(path, 60)
    try:
        assert is_locked(path)
        paths = RunPaths(tmp_path / "out")
        assert RankView(paths, 3).running and not RankView(paths, 2).running
        said: list[str] = []
        started = time.monotonic()
        with (
            pytest.raises(RankLockedError) as caught,
            rank_lock(path, 3, wait=0.6, on_wait=said.append),
        ):
            pass
        assert 0.6 <= time.monotonic() - started < 5
        message = str(caught.value)
        assert f"rank 3 of {tmp_path / 'out'} is held by pid {proc.pid} on " in message
        assert socket.gethostname() in message and "since" in message
        assert len(said) == 1 and "waiting up to 0.6s" in said[0]
        holder_doc = LockHolder.read(path)
        assert holder_doc is not None and holder_doc.pid == proc.pid
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # the operating system released it with its holder
    assert not is_locked(path)
    with rank_lock(path, 3, wait=0) as mine:
        assert mine.pid == os.getpid() and LockHolder.read(path) == mine
    assert not is_locked(path)


def test_a_second_process_waits_for_one_that_is_ending(tmp_path: Path) -> None:
    path = tmp_path / "locks" / "rank-00003.lock"
    proc = holder(path, 1.0)
    started = time.monotonic()
    with rank_lock(path, 3, wait=30):
        waited = time.monotonic() - started
    proc.wait()
    assert 0.5 <= waited < 10


def test_no_lock_file_is_no_holder(tmp_path: Path) -> None:
    assert not is_locked(tmp_path / "locks" / "rank-00000.lock")


PROBE = """
import sys
from pathlib import Path
from fetchshard.runfolder.lock import is_locked
print(sum(is_locked(Path(sys.argv[1])) for _ in range(3000)))
"""


def test_probes_never_see_each_other_as_a_holder(tmp_path: Path) -> None:
    """Merge and report processes ask at once whether a finished rank still runs: the answer
    is no for every one (a probe that took the lock a moment made the others see it held)."""
    path = tmp_path / "locks" / "rank-00000.lock"
    with rank_lock(path, 0, wait=0):
        pass  # the file exists, nobody holds it
    probes = [
        subprocess.Popen(
            [sys.executable, "-c", PROBE, str(path)], stdout=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    seen = [int(p.communicate(timeout=60)[0]) for p in probes]
    assert seen == [0, 0, 0]
    proc = holder(path, 60)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, check=True
        )
        assert int(probe.stdout) == 3000
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
