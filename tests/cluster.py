"""The local SLURM cluster as the system tests use it: is it up, srun and sbatch bounded in
time, jobs by name, what the ranks left in their output folder."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from util import read_rows

SKIP_REASON = "no SLURM cluster: run tests/slurm/cluster.sh up"


def node_states() -> list[str] | None:
    """`sinfo -h -N -o %T`: one state per node, or None when there is no cluster."""
    if shutil.which("sinfo") is None:
        return None
    try:
        proc = subprocess.run(
            # an answering controller replies in milliseconds; a stopped one makes sinfo retry
            ["timeout", "5", "sinfo", "-h", "-N", "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.split() if proc.returncode == 0 else None


def cluster_up() -> bool:
    """srun is installed and every node of the cluster is idle."""
    states = node_states()
    return shutil.which("srun") is not None and bool(states) and all(s == "idle" for s in states)


requires_cluster = pytest.mark.skipif(not cluster_up(), reason=SKIP_REASON)


# --------------------------------------------------------------------------- helpers
def fetchshard_run(src: Path, out: Path, *flags: str) -> list[str]:
    """The rank command: this interpreter (the test venv's), as srun inherits env and cwd."""
    return [sys.executable, "-m", "fetchshard", "run", str(src), "-o", str(out), *flags]


def bounded(cmd: Sequence[str], seconds: int) -> list[str]:
    """``timeout`` around a SLURM client command (SIGTERM, then SIGKILL 10 s later)."""
    return ["timeout", "--kill-after=10", str(seconds), *cmd]


def run_bounded(
    cmd: Sequence[str],
    seconds: int,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        bounded(cmd, seconds),
        cwd=cwd,
        env=None if env is None else {**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=False,
    )


def srun(
    args: Sequence[str], cmd: Sequence[str], seconds: int, cwd: Path
) -> subprocess.CompletedProcess[str]:
    # --immediate: fail instead of queueing forever if the nodes are not free within 60 s
    return run_bounded(["srun", "--immediate=60", *args, *cmd], seconds, cwd=cwd)


def jobs_named(name: str, states: str = "PD,R,CG,S,CF") -> list[str]:
    proc = run_bounded(["squeue", "-h", "-n", name, "-t", states, "-o", "%i"], 10)
    return proc.stdout.split()


def unique_job_name(request: pytest.FixtureRequest) -> str:
    return f"fstest-{re.sub(r'[^A-Za-z0-9]+', '-', request.node.name)[:40]}-{os.getpid()}"


def cancel_jobs(name: str) -> None:
    """Cancel every job of that name and wait (bounded) until they have left the nodes."""
    run_bounded(["scancel", "--name", name], 20)
    deadline = time.monotonic() + 30
    while jobs_named(name) and time.monotonic() < deadline:
        time.sleep(0.5)


def url_lines(path: Path, urls: Sequence[str]) -> Path:
    path.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
    return path


def done_markers(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "done").glob("rank-*"))


def rank_names(n: int) -> list[str]:
    return [f"rank-{r:05d}" for r in range(n)]


def committed_parts(out: Path, rank: int) -> tuple[set[int], int]:
    """The parts the rank's ledger records, and how many items it has committed."""
    with sqlite3.connect(out / "ledger" / f"rank-{rank:05d}.sqlite") as db:
        parts = {r[0] for r in db.execute("SELECT part FROM parts")}
        committed = db.execute(
            "SELECT (SELECT COUNT(*) FROM states WHERE state = 1) + (SELECT COUNT(*) FROM done)"
        ).fetchone()[0]
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return parts, committed


def assert_consistent_stop(out: Path, world_size: int) -> None:
    """After an interruption: every part committed and readable, nothing half-written."""
    assert not list((out / "shards").glob("*/*.tmp")), "a part was left half-written"
    for rank in range(world_size):
        files = sorted((out / "shards" / f"rank-{rank:05d}").glob("part-*.parquet"))
        parts, committed = committed_parts(out, rank)
        assert parts == {int(p.stem.split("-")[1]) for p in files}, f"rank {rank}"
        rows = sum(pq.read_metadata(p).num_rows for p in files)  # every part readable
        assert rows == committed, f"rank {rank}: {rows} rows in parts, {committed} committed"
    read_rows(out)  # and every part's data too


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def show(capsys: pytest.CaptureFixture[str], line: str) -> None:
    """One line straight to the terminal, so that the CI log shows it even when passing."""
    with capsys.disabled():
        print(f"\n[slurm] {line}", flush=True)


# job states in which a job may still run (scontrol's names)
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED"}


def job_ended(job_id: str) -> int | None:
    """The job's exit code once it (every task of an array) has ended, else None; a job
    ended by a signal (ExitCode=0:N) counts as 128 + N, as a shell says."""
    shown = run_bounded(["scontrol", "show", "job", "-o", job_id], 10).stdout
    states = re.findall(r"JobState=(\S+)", shown)
    if not states or any(state in ACTIVE_STATES for state in states):
        return None
    codes = [
        int(code) or (128 + int(sig) if int(sig) else 0)
        for code, sig in re.findall(r"ExitCode=(\d+):(\d+)", shown)
    ]
    return max(codes)


def sbatch_wait(
    args: Sequence[str], seconds: int, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], str]:
    """`sbatch --parsable ...`, then wait until the job has ended: the completed process with
    the job's exit code as its rc (what `sbatch --wait` exits with), and the job id.

    Not `sbatch --wait`: it polls with growing gaps and returns seconds after the job ended;
    this polls scontrol every 0.2 s (slurmctld keeps an ended job for MinJobAge, 300 s)."""
    submitted = run_bounded(["sbatch", "--parsable", *args], 30, cwd=cwd, env=env)
    job_id = submitted.stdout.strip().split(";")[0]
    if submitted.returncode != 0 or not job_id:
        return submitted, job_id
    wait_until(lambda: job_ended(job_id) is not None, seconds, f"job {job_id} to end")
    code = job_ended(job_id)
    assert code is not None
    ended = subprocess.CompletedProcess(submitted.args, code, submitted.stdout, submitted.stderr)
    return ended, job_id


# --------------------------------------------------------------------------- tests
