"""`--ranks N`: local rank processes, Ctrl-C forwarded, failures reported."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from fetchshard.errors import EXIT_INTERRUPTED
from fetchshard.runfolder.lock import LockHolder, is_locked
from server import ServerProcess
from util import FAST, assert_exactly_once, fetchshard_cmd, part_files, run_subprocess

SLOW = [*FAST, "--set", "output.part_max_rows=20", "--set", "fetch.max_in_flight=8"]


def test_ctrl_c_reaches_every_rank_and_a_rerun_resumes(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    urls = [server_process.url(f"/slow/0.05?t=launch-{i}", host=i % 4) for i in range(400)]
    src, out = url_file(urls), tmp_path / "out"
    launcher = subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), "--ranks", "2", *SLOW),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len({p.parent.name for p in part_files(out)}) < 2:
        assert launcher.poll() is None, launcher.communicate()[1]
        assert time.monotonic() < deadline, "ranks never committed a part"
        time.sleep(0.05)
    launcher.send_signal(signal.SIGINT)
    _, err = launcher.communicate(timeout=60)
    assert launcher.returncode == EXIT_INTERRUPTED, err
    for rank in (0, 1):
        progress = json.loads((out / "progress" / f"rank-{rank:05d}.json").read_text())
        assert progress["state"] == "interrupted"
        assert not (out / "done" / f"rank-{rank:05d}").exists()
    again = run_subprocess("run", str(src), "-o", str(out), "--ranks", "2", *SLOW)
    assert again.returncode == 0, again.stderr
    assert assert_exactly_once(out, world_size=2) == 400


def test_a_failing_rank_fails_the_launcher(url_file: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = url_file(["http://127.0.0.1:9/x"])
    # Rank processes cannot write their ledgers: the folder is a file.
    out.mkdir()
    (out / "ledger").write_text("not a folder")
    done = run_subprocess("run", str(src), "-o", str(out), "--ranks", "2", *FAST)
    assert done.returncode == 1
    assert "ranks failed" in done.stderr


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody has reaped yet counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_ranks_die_with_a_killed_launcher_and_the_same_command_completes(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    """Issue 14's scenario: `setsid fetchshard run ... --ranks 2 &`, SIGKILL to its process
    group mid-run, then the same command again: exit 0, every item exactly once."""
    # ~25 s of work per rank while the server is slow (8 in flight, 0.2 s each): killed long
    # before the end; then the server answers at once, so the same command ends in seconds
    urls = [server_process.url(f"/paced/0.2?t=orphan-{i}", host=i % 4) for i in range(2000)]
    src, out = url_file(urls), tmp_path / "out"
    args = ("run", str(src), "-o", str(out), "--ranks", "2", *SLOW, "--set", "run.grace_period=2")
    launcher = subprocess.Popen(
        fetchshard_cmd(*args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while len({p.parent.name for p in part_files(out)}) < 2:
        assert launcher.poll() is None
        assert time.monotonic() < deadline, "ranks never committed a part"
        time.sleep(0.05)
    ranks = [LockHolder.read(out / "locks" / f"rank-{r:05d}.lock") for r in (0, 1)]
    pids = [holder.pid for holder in ranks if holder is not None]
    assert len(pids) == 2 and launcher.pid not in pids
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait()
    killed = time.monotonic()
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() - killed < 10, "a rank outlived its launcher"
        time.sleep(0.05)
    gone_after = time.monotonic() - killed
    assert gone_after < 5, gone_after
    assert not any(is_locked(out / "locks" / f"rank-{r:05d}.lock") for r in (0, 1))
    server_process.set_pace(0)
    try:
        again = run_subprocess(*args, "--set", "fetch.max_in_flight=64")
    finally:
        server_process.set_pace(1)
    assert again.returncode == 0, again.stderr
    assert assert_exactly_once(out, world_size=2) == 2000


def test_a_stop_while_the_launcher_starts_its_ranks_interrupts_the_job(
    url_file: Callable[..., Path], tmp_path: Path
) -> None:
    """SIGTERM at any moment of the start: before the launcher could forward it (held since
    its first line), or while a rank has not installed its own handlers yet (it starts with
    the stop signals blocked): exit 75, never 0 after the whole job nor 1 ("rank exited -15").
    The URLs go to a closed port, so a job not stopped would retry for minutes."""
    src = url_file([f"http://127.0.0.1:9/closed-{i}" for i in range(40)])
    for delay in (0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.2):
        out = tmp_path / f"out-{delay}"
        proc = subprocess.Popen(
            fetchshard_cmd("run", str(src), "-o", str(out), "--ranks", "2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == EXIT_INTERRUPTED, (delay, err[-2000:])
        assert not (out / "done").exists() or not list((out / "done").iterdir())
