"""Exactly-once: kill a run at different moments, rerun it, and find every item once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fetchshard.errors import EXIT_INTERRUPTED
from server import ServerProcess
from util import FAST, assert_exactly_once, fetchshard_cmd, part_files, run_subprocess, wait_for

# Small parts so that a run commits several of them before it is killed.
SMALL_PARTS = [
    *FAST,
    "--set",
    "output.part_max_rows=25",
    "--set",
    "fetch.max_in_flight=16",
    "--set",
    "input.batch_rows=100",
]


def _urls(server: ServerProcess, tag: str, n: int, route: str = "/slow/0.02") -> list[str]:
    return [server.url(f"{route}?t={tag}-{i}", host=i % 4) for i in range(n)]


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str], timeout: float) -> None:
    wait_for(predicate, proc, timeout)


def _rerun_completes(src: Path, out: Path, expected: int) -> None:
    done = run_subprocess("run", str(src), "-o", str(out), *SMALL_PARTS)
    assert done.returncode == 0, done.stderr
    assert assert_exactly_once(out) == expected
    assert (out / "done" / "rank-00000").exists()


def _committed_parts(out: Path) -> set[int]:
    with sqlite3.connect(out / "ledger" / "rank-00000.sqlite") as db:
        return {r[0] for r in db.execute("SELECT part FROM parts")}


@pytest.mark.parametrize("moment", ["mid_fetch", "sigterm", "sigusr1"])
def test_killed_mid_fetch_then_rerun(
    moment: str, server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    urls = _urls(server_process, f"mid-{moment}", 600)
    src, out = url_file(urls), tmp_path / "out"
    proc = subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), *SMALL_PARTS),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: len(part_files(out)) >= 3, proc, timeout=60)
    if moment in ("sigterm", "sigusr1"):
        # SIGUSR1 is what `sbatch --signal=USR1@N` sends ahead of a time limit.
        proc.send_signal(signal.SIGTERM if moment == "sigterm" else signal.SIGUSR1)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == EXIT_INTERRUPTED, err
        assert "rerun to resume" in err
        assert not (out / "done" / "rank-00000").exists()
        assert _committed_parts(out) == {int(p.stem[5:]) for p in part_files(out)}
    else:
        proc.kill()
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    assert len(part_files(out)) < 600 // 25, "the run finished before it was killed"
    _rerun_completes(src, out, 600)


def test_killed_between_rename_and_ledger_commit(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    urls = _urls(server_process, "window", 200, route="/ok/x")
    src, out = url_file(urls), tmp_path / "out"
    crashed = run_subprocess(
        "run", str(src), "-o", str(out), *SMALL_PARTS, env={"_FETCHSHARD_FAULT": "after_rename:2"}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    # Part 2 is visible but the ledger never heard of it: the window the protocol must close.
    assert (out / "shards" / "rank-00000" / "part-000002.parquet").exists()
    assert _committed_parts(out) == {1}
    _rerun_completes(src, out, 200)
    assert _committed_parts(out) >= {1, 2}


def test_killed_during_planning(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    urls = _urls(server_process, "plan", 500, route="/ok/x")
    src, out = url_file([*urls, *urls[:50]]), tmp_path / "out"
    crashed = run_subprocess(
        "run", str(src), "-o", str(out), *SMALL_PARTS, env={"_FETCHSHARD_FAULT": "plan_batch:2"}
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert not part_files(out)
    _rerun_completes(src, out, 500)


def test_sigkill_at_random_moments_repeatedly(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    """Kill the same run three times at growing delays; the fourth run completes it."""
    urls = _urls(server_process, "repeat", 400)
    src, out = url_file(urls), tmp_path / "out"
    for delay in (0.3, 1.0, 1.5):
        proc = subprocess.Popen(
            fetchshard_cmd("run", str(src), "-o", str(out), *SMALL_PARTS),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    _rerun_completes(src, out, 400)
