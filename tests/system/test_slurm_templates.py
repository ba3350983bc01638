"""The job templates in slurm/, submitted with sbatch to the local cluster
(`tests/slurm/cluster.sh up`; skipped without it).

Each test runs a copy of a template with its times shortened by sed (`--time=1`, the
warning signal 50 s before the limit) and its settings in the environment (sbatch passes it
on), on an input too slow to finish in one job: so the real time limit stops the ranks, the
template resubmits itself, the next job completes the work, and the merge job runs last.

The input is slow only while the first job runs: once its ranks have stopped, the test tells the
server to answer at once (`/paced`), so the next job finishes well before its own signal.
A chain whose every job is stopped by the limit would take as long as slurmctld's ~30 s
limit timer and the scheduler make it (once more than 180 s on CI), not the work.

The last step-template test resubmits with another number of tasks (a new generation); its
first job is stopped by `scancel --signal=USR1`, what the limit's warning sends, not by a
limit, so it does not wait on slurmctld's timer.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster import (
    cancel_jobs,
    done_markers,
    job_ended,
    jobs_named,
    rank_names,
    requires_cluster,
    run_bounded,
    sbatch_wait,
    show,
    unique_job_name,
    url_lines,
    wait_until,
)
from fetchshard.errors import EXIT_INTERRUPTED
from fetchshard.merging.documents import MergeManifest
from fetchshard.runfolder.view import RunFolder
from server import ServerProcess
from util import FAST, assert_exactly_once, fetchshard_cmd, part_files, read_rows

pytestmark = requires_cluster

TEMPLATES = Path(__file__).resolve().parents[2] / "slurm"

# ~150 s of work while the server is slow (1200 URLs of 1 s; each of the 4 ranks is given 2 of
# the 8 hosts, one connection each: 8 req/s): far more than the first job gets before its
# limit's SIGUSR1 (due 10 s after the start; slurmctld checks on a ~30 s timer, so 5-42 s in
# our runs); a few seconds once fast.
N_HOSTS, N_URLS, WORLD = 8, 1200, 4
SLOW = [
    *FAST,
    "--set",
    "fetch.per_host_concurrency=1",
    "--set",
    "output.part_max_rows=20",
]


@pytest.fixture
def job_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """The name of the test's fetch jobs (the merge job's is NAME-merge); cancelled after."""
    name = unique_job_name(request)
    yield name
    cancel_jobs(name)
    cancel_jobs(f"{name}-merge")


def template_copy(name: str, dest: Path, subs: dict[str, str]) -> Path:
    """A copy of slurm/NAME with each `#SBATCH` option line in SUBS replaced (sed-like)."""
    text = (TEMPLATES / name).read_text()
    for option, value in subs.items():
        text, n = re.subn(rf"(?m)^#SBATCH --{option}=.*$", f"#SBATCH --{option}={value}", text)
        assert n == 1, f"{name}: no '#SBATCH --{option}=' line"
    path = dest / name
    path.write_text(text)
    return path


def job_env(out: str, merge: Path | None) -> dict[str, str]:
    env = {
        "FS_INPUT": "urls.txt",
        "FETCHSHARD_OUTPUT_DIR": out,
        "FS_FLAGS": shlex.join(SLOW),
        "FS_CMD": shlex.join(fetchshard_cmd()),
        "FS_PYTHON": sys.executable,
    }
    if merge is not None:
        env["FS_MERGE"] = str(merge)
    return env


def merge_log(logs: Path, job_name: str) -> Path | None:
    found = sorted(logs.glob(f"{job_name}-merge-*.out"))
    return found[0] if found else None


def wait_for_chain(logs: Path, job_name: str, timeout: float) -> str:
    """Wait until no job of the chain is left and the merge has written its log."""
    wait_until(
        lambda: (
            not jobs_named(job_name)
            and not jobs_named(f"{job_name}-merge")
            and merge_log(logs, job_name) is not None
        ),
        timeout,
        "the resubmitted job and the merge job",
    )
    log = merge_log(logs, job_name)
    assert log is not None
    return log.read_text()


def serve_urls(srv: ServerProcess, tmp_path: Path, seconds: float = 1) -> list[str]:
    """N_URLS URLs of SECONDS each (while the server is slow) in urls.txt, and logs/."""
    urls = [srv.url(f"/paced/{seconds}?i={i}", host=i % N_HOSTS) for i in range(N_URLS)]
    url_lines(tmp_path / "urls.txt", urls)
    (tmp_path / "logs").mkdir()
    return urls


def text_of(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def submit_then_speed_up(
    srv: ServerProcess,
    script: Path,
    cwd: Path,
    env: dict[str, str],
    stopped: Callable[[str], bool],
) -> tuple[int, str, float]:
    """Submit the first job; make the server fast once STOPPED(job id) holds.

    STOPPED reads the job's logs: it holds once the first job's ranks have exited, before the
    job submits its successor. Returns the job's exit code, its id, and the seconds until its
    ranks had stopped. (Not `sbatch --wait`: it polls with growing gaps, up to ~30 s late.)
    """
    started = time.monotonic()
    submitted = run_bounded(["sbatch", "--parsable", str(script)], 30, cwd=cwd, env=env)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    wait_until(
        lambda: stopped(job_id) or job_ended(job_id) is not None,
        100,
        "the first job's ranks to stop",
    )
    took = time.monotonic() - started
    srv.set_pace(0)
    wait_until(lambda: job_ended(job_id) is not None, 60, f"job {job_id} to end")
    code = job_ended(job_id)
    assert code is not None
    return code, job_id, took


def merge_copy(tmp_path: Path, job_name: str) -> Path:
    return template_copy("merge.sbatch", tmp_path, {"job-name": f"{job_name}-merge"})


@pytest.mark.timeout(240)
def test_step_template_resubmits_after_time_limit_then_merges(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    script = template_copy(
        "fetchshard.sbatch",
        tmp_path,
        {
            "job-name": job_name,
            "nodes": "2",
            "ntasks-per-node": "2",
            "time": "1",
            "signal": "USR1@50",
        },
    )
    merge = merge_copy(tmp_path, job_name)
    logs = tmp_path / "logs"
    with ServerProcess(hosts=N_HOSTS, log_path=tmp_path / "requests.jsonl") as srv:
        serve_urls(srv, tmp_path)
        started = time.monotonic()
        # FS_PLAN=1: each job's first step is `fetchshard plan` (the first job plans every
        # slice, the next ones find them done), so this one submission is plan -> run -> merge.
        first_rc, job_id, first_took = submit_then_speed_up(
            srv,
            script,
            tmp_path,
            {**job_env("out", merge), "FS_PLAN": "1"},
            lambda job: "srun exited" in text_of(logs / f"{job_name}-{job}.out"),
        )
        first_log = (logs / f"{job_name}-{job_id}.out").read_text()
        assert first_rc == EXIT_INTERRUPTED, first_log
        merged = wait_for_chain(logs, job_name, timeout=100)
        total = time.monotonic() - started

    # follow the chain: every job but the last was stopped (75) and submitted the next one
    chain, text = [job_id], first_log
    while "Submitted batch job" in text and "srun exited 75" in text:
        chain.append(re.findall(r"Submitted batch job (\d+)", text)[-1])
        text = (logs / f"{job_name}-{chain[-1]}.out").read_text()
    assert len(chain) >= 2, first_log
    assert f"srun exited 0; {WORLD} of {WORLD} ranks done" in text, text
    plan_docs = sorted(p.name for p in (tmp_path / "out" / "plan" / "done").iterdir())
    assert plan_docs == [f"{name}.json" for name in rank_names(WORLD)]
    # Every rank planned its slice from the plan, in whichever job of the chain it got that
    # far (the limit's SIGUSR1 may stop a rank of the first job before it plans).
    for rank in range(WORLD):
        planned = [
            job
            for job in chain
            if "from the plan in" in text_of(logs / f"{job_name}-{job}-{rank}.out")
        ]
        assert len(planned) == 1, (rank, planned)
    planned_before = False  # a job before this one completed its plan step
    for number, job in enumerate(chain, 1):
        job_log = (logs / f"{job_name}-{job}.out").read_text()
        assert f"job {job} ({number} of at most" in job_log, job_log
        plan_logs = [
            (logs / f"{job_name}-{job}-{rank}.plan.out").read_text() for rank in range(WORLD)
        ]
        if planned_before:
            for plan_log in plan_logs:
                assert "already planned" in plan_log, plan_log[-2000:]
        if "plan step exited 75" in job_log and job != chain[-1]:
            # Slurm may send a --signal up to a minute early (sbatch(1)); once it came ~1 s
            # after the start, during the plan step: the run step did not start, and the
            # next job planned the rest.
            assert any("received SIGUSR1" in text for text in plan_logs), job_log
            assert not list(logs.glob(f"{job_name}-{job}-[0-9].out")), job_log
            continue
        assert "plan step exited 0" in job_log, job_log
        planned_before = True
        # the step's per-rank logs: logs/%x-%j-%t.out
        rank_logs = [(logs / f"{job_name}-{job}-{r}.out").read_text() for r in range(WORLD)]
        for rank, rank_log in enumerate(rank_logs):
            assert f"rank {rank} of {WORLD} (from SLURM)" in rank_log, rank_log[-2000:]
            # a rank either finished its slice or was stopped by the limit's SIGUSR1
            assert f"rank {rank} done" in rank_log or "received SIGUSR1" in rank_log, rank_log
        if job != chain[-1]:
            assert any("received SIGUSR1" in text for text in rank_logs), job_log
    out = tmp_path / "out"
    assert done_markers(out) == rank_names(WORLD)
    assert assert_exactly_once(out, world_size=WORLD) == N_URLS
    # The merge job's two tasks split the files; the one that finished wrote the manifest.
    manifest = MergeManifest.read(out / "merged" / "manifest.json")
    assert manifest is not None and manifest.complete, merged
    assert manifest.counts["ok"] + manifest.counts["failed"] == N_URLS
    assert f"{out / 'merged'}: complete" in merged or "out/merged: complete" in merged, merged
    show(
        capsys,
        f"fetchshard.sbatch: job {job_id} stopped by its time limit after {first_took:.0f}s; "
        f"a chain of {len(chain)} jobs completed, then the merge; {total:.0f}s in all",
    )


@pytest.mark.timeout(240)
def test_step_template_resubmitted_with_fewer_tasks_begins_a_generation(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """4 tasks stopped part-way (FS_MAX_JOBS=1: no resubmission of its own), then the same
    script with 2 tasks (--dependency=afterany): its plan step begins generation 1 and writes
    the leftover of the 4 ranks, its run step spreads it over 2, and the merge follows
    (README: "A time-limited job, then a wider (or narrower) one").

    The URLs take 0.25 s while the server is slow (32 req/s): the 4 parts come within
    seconds, and the ~1100 URLs left (~35 s of work) make sure the signal stops the 4 tasks
    part-way."""
    script = template_copy(
        "fetchshard.sbatch",
        tmp_path,
        {"job-name": job_name, "nodes": "2", "ntasks-per-node": "2", "time": "5"},
    )
    merge = merge_copy(tmp_path, job_name)
    logs, out = tmp_path / "logs", tmp_path / "out"
    env = {**job_env("out", merge), "FS_PLAN": "1"}
    with ServerProcess(hosts=N_HOSTS, log_path=tmp_path / "requests.jsonl") as srv:
        urls = serve_urls(srv, tmp_path, seconds=0.25)
        started = time.monotonic()
        first = run_bounded(
            ["sbatch", "--parsable", str(script)], 30, cwd=tmp_path, env={**env, "FS_MAX_JOBS": "1"}
        )
        assert first.returncode == 0, first.stderr
        first_id = first.stdout.strip().split(";")[0]
        narrower = ["--nodes=1", "--ntasks-per-node=2", f"--dependency=afterany:{first_id}"]
        second = run_bounded(
            ["sbatch", "--parsable", *narrower, str(script)], 30, cwd=tmp_path, env=env
        )
        assert second.returncode == 0, second.stderr
        second_id = second.stdout.strip().split(";")[0]
        wait_until(lambda: len(part_files(out)) >= 4, 100, "4 parts committed by the 4 tasks")
        signalled = run_bounded(["scancel", "--signal=USR1", first_id], 20)
        assert signalled.returncode == 0, signalled.stderr
        first_log = logs / f"{job_name}-{first_id}.out"
        wait_until(lambda: "srun exited" in text_of(first_log), 60, "the 4 tasks to stop")
        stopped_after = time.monotonic() - started
        srv.set_pace(0)
        merged = wait_for_chain(logs, job_name, timeout=150)
        total = time.monotonic() - started

    text = first_log.read_text()
    assert "plan step exited 0" in text, text
    assert "srun exited 75; 0 of 4 ranks done (generation 0; report: stopped)" in text, text
    assert "not resubmitting (exit 75, job 1 of 1)" in text, text
    text = (logs / f"{job_name}-{second_id}.out").read_text()
    assert "2 ranks on 1 nodes" in text, text
    assert "plan step exited 0" in text, text
    assert "srun exited 0; 2 of 2 ranks done (generation 1; report: done)" in text, text
    plan_logs = "".join(
        (logs / f"{job_name}-{second_id}-{rank}.plan.out").read_text() for rank in range(2)
    )
    for old_rank in range(WORLD):  # each written once, by one of the two plan tasks
        assert plan_logs.count(f"leftover of generation 0 rank {old_rank}:") == 1, plan_logs
    for rank in range(2):
        rank_log = (logs / f"{job_name}-{second_id}-{rank}.out").read_text()
        assert f"rank {rank} of 2 (from SLURM)" in rank_log, rank_log[-2000:]
        assert "generation 1" in rank_log, rank_log[-2000:]
    assert [g.world_size for g in RunFolder(out).generations] == [WORLD, 2]
    assert done_markers(out) == []
    assert done_markers(out / "gen-0001") == rank_names(2)
    first_ids = set(read_rows(out, ["item_id"]).column("item_id").to_pylist())
    assert 0 < len(first_ids) < N_URLS
    assert assert_exactly_once(out / "gen-0001", world_size=2) == N_URLS - len(first_ids)
    manifest = MergeManifest.read(out / "merged" / "manifest.json")
    assert manifest is not None and manifest.complete, merged
    assert manifest.counts["ok"] == N_URLS and manifest.counts["failed"] == 0, manifest.counts
    merged_urls = [
        url
        for path in sorted((out / "merged" / "data").glob("*.parquet"))
        for url in pq.read_table(path, columns=["url"]).column("url").to_pylist()
    ]
    assert sorted(merged_urls) == sorted(urls)
    show(
        capsys,
        f"fetchshard.sbatch: job {first_id} (4 tasks) stopped by SIGUSR1 after "
        f"{stopped_after:.0f}s with {len(first_ids)}/{N_URLS} committed; job {second_id} "
        f"(2 tasks) began generation 1 and completed, then the merge; {total:.0f}s in all",
    )


@pytest.mark.timeout(240)
def test_array_template_ranks_resubmit_then_merge(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    script = template_copy(
        "fetchshard-array.sbatch",
        tmp_path,
        {"job-name": job_name, "array": f"0-{WORLD - 1}", "time": "1", "signal": "B:USR1@50"},
    )
    merge = merge_copy(tmp_path, job_name)
    logs = tmp_path / "logs"
    with ServerProcess(hosts=N_HOSTS, log_path=tmp_path / "requests.jsonl") as srv:
        serve_urls(srv, tmp_path)
        started = time.monotonic()
        first_rc, array_id, first_took = submit_then_speed_up(
            srv,
            script,
            tmp_path,
            job_env("out", merge),
            lambda job: all(
                "fetchshard exited" in text_of(logs / f"{job_name}-{job}_{r}.out")
                for r in range(WORLD)
            ),
        )
        task_logs = {r: (logs / f"{job_name}-{array_id}_{r}.out").read_text() for r in range(WORLD)}
        assert first_rc == EXIT_INTERRUPTED, task_logs
        for rank, text in task_logs.items():
            assert f"rank {rank} of {WORLD}" in text, text
            assert "received SIGUSR1" in text, text[-2000:]  # forwarded by the trap
            assert "fetchshard exited 75" in text, text[-2000:]
            assert "Submitted batch job" in text, text[-2000:]
        merged = wait_for_chain(logs, job_name, timeout=100)
        total = time.monotonic() - started

    out = tmp_path / "out"
    assert done_markers(out) == rank_names(WORLD)
    assert assert_exactly_once(out, world_size=WORLD) == N_URLS
    assert ": complete, " in merged, merged
    # one merge, however many tasks found every rank done
    assert len(list(logs.glob(f"{job_name}-merge-*.out"))) == 1
    show(
        capsys,
        f"fetchshard-array.sbatch: {WORLD} array tasks stopped by their time limit after "
        f"{first_took:.0f}s, resubmitted one by one, completed, merge ran; {total:.0f}s in all",
    )


@pytest.mark.timeout(120)
def test_merge_template_fails_while_a_rank_is_not_done(tmp_path: Path, job_name: str) -> None:
    (tmp_path / "logs").mkdir()
    with ServerProcess(hosts=1, log_path=tmp_path / "requests.jsonl") as srv:
        src = url_lines(tmp_path / "urls.txt", [srv.url(f"/ok/{i}") for i in range(50)])
        # rank 0 of 2 only, as a plain process: rank 1 never runs
        only_rank0 = subprocess.run(
            fetchshard_cmd("run", str(src), "-o", "out", "--rank", "0", "--world-size", "2", *FAST),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert only_rank0.returncode == 0, only_rank0.stderr
    merge = merge_copy(tmp_path, job_name)
    env = {"FETCHSHARD_OUTPUT_DIR": "out", "FS_PYTHON": sys.executable}
    job, job_id = sbatch_wait([str(merge)], seconds=60, cwd=tmp_path, env=env)
    text = (tmp_path / "logs" / f"{job_name}-merge-{job_id}.out").read_text()
    assert job.returncode != 0, text
    assert "out is not complete: rank 1 has not started" in text, text
    assert not run_bounded(["squeue", "-h", "-j", job_id, "-t", "PD,R"], 10).stdout.strip()
