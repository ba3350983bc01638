"""fetchshard under a real SLURM: srun over several nodes, a time limit with SIGUSR1, scancel,
a rerun with another number of tasks (a new generation), and the guard against running in an
sbatch script without srun.

The cluster runs on this machine (`tests/slurm/cluster.sh up`: slurmctld plus four slurmd,
each an emulated node); without it every test here is skipped. The ranks are started by
slurmd, not by the test, with the test's Python (`sys.executable -m fetchshard`), and fetch
from a loopback server farm (the `tests/server` package) in a subprocess of the test.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster import (
    assert_consistent_stop,
    bounded,
    cancel_jobs,
    done_markers,
    fetchshard_run,
    jobs_named,
    node_states,
    rank_names,
    requires_cluster,
    run_bounded,
    sbatch_wait,
    show,
    srun,
    unique_job_name,
    url_lines,
    wait_until,
)
from fetchshard.errors import EXIT_INTERRUPTED
from fetchshard.merging.documents import MergeManifest
from fetchshard.runfolder.view import RunFolder
from server import ServerProcess
from util import FAST, assert_exactly_once, ledger_items, part_files, read_current, read_rows

pytestmark = requires_cluster


@pytest.fixture
def job_name(request: pytest.FixtureRequest) -> Iterator[str]:
    """A job name unique to this test; its jobs are cancelled (and waited for) afterwards."""
    name = unique_job_name(request)
    yield name
    cancel_jobs(name)


@pytest.mark.timeout(240)
def test_srun_four_nodes_eight_ranks_exactly_once(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    states = node_states() or []
    if len(states) < 4:
        pytest.skip(f"needs 4 nodes, the cluster has {len(states)}: tests/slurm/cluster.sh up 4")
    n_urls, n_hosts, world = 6_000, 16, 8
    with ServerProcess(hosts=n_hosts, log_path=tmp_path / "requests.jsonl") as srv:
        urls = [srv.url(f"/ok/{i}", host=i % n_hosts) for i in range(n_urls)]
        src, out = url_lines(tmp_path / "urls.txt", urls), tmp_path / "out"
        started = time.monotonic()
        geometry = ["-N", "4", "-n", str(world), "--ntasks-per-node=2", "--overcommit"]
        proc = srun(
            [*geometry, "--job-name", job_name],
            fetchshard_run(src, out, *FAST),
            seconds=200,
            cwd=tmp_path,
        )
        elapsed = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr[-4000:]
        requests = srv.requests()

    assert sorted(p.stem for p in (out / "ledger").glob("rank-*.sqlite")) == rank_names(world)
    assert done_markers(out) == rank_names(world)
    assert assert_exactly_once(out, world_size=world) == len(set(urls))
    union: set[str] = set()
    for rank in range(world):
        items = ledger_items(out, rank)
        assert items, f"rank {rank} got no URL"
        union |= {url for url, _ in items.values()}
        log = (out / "logs" / f"rank-{rank:05d}.log").read_text()
        assert f"rank {rank} of {world} (from SLURM)" in log
    assert union == set(urls)
    # every URL reached the server exactly once, and nothing else did
    seen = Counter(srv.base_urls[r["host_index"]] + r["path"] for r in requests)
    assert seen == Counter(urls)
    show(
        capsys,
        f"srun -N 4 -n {world}: {world} ranks fetched {n_urls} URLs from {n_hosts} hosts "
        f"in {elapsed:.1f}s",
    )


@pytest.mark.timeout(240)
def test_time_limit_usr1_then_rerun(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--time=1 --signal=USR1@50`: the ranks commit and exit 75 before the limit; a rerun ends.

    The input takes ~150 s while the server is slow (1200 URLs of 1 s; each rank is given 2
    of the 8 hosts, one connection each: 8 req/s), far beyond the 60 s limit, so the ranks are
    surely stopped by the signal (due 10 s after the start; slurmctld checks limits on a ~30 s
    timer, so it came 5-42 s after the start in our runs). Then the server answers at once,
    and the rerun fetches the rest in seconds.
    """
    n_hosts, n_urls, world = 8, 1200, 4
    flags = [
        *FAST,
        "--set",
        "fetch.per_host_concurrency=1",
        "--set",
        "output.part_max_rows=20",
        "--set",
        "run.progress_interval=0.5",
    ]
    geometry = ["-N", "2", "-n", str(world), "--overcommit", "--job-name", job_name]
    with ServerProcess(hosts=n_hosts, log_path=tmp_path / "requests.jsonl") as srv:
        urls = [srv.url(f"/paced/1?i={i}", host=i % n_hosts) for i in range(n_urls)]
        src, out = url_lines(tmp_path / "urls.txt", urls), tmp_path / "out"
        cmd = fetchshard_run(src, out, *flags)

        started = time.monotonic()
        first = srun(["--time=1", "--signal=USR1@50", *geometry], cmd, seconds=150, cwd=tmp_path)
        stopped_after = time.monotonic() - started
        srv.set_pace(0)
        assert first.returncode == EXIT_INTERRUPTED, first.stderr[-4000:]
        assert done_markers(out) == []
        for rank in range(world):
            log = (out / "logs" / f"rank-{rank:05d}.log").read_text()
            assert "received SIGUSR1" in log, f"rank {rank}: {log[-2000:]}"
            progress = json.loads((out / "progress" / f"rank-{rank:05d}.json").read_text())
            assert progress["state"] == "interrupted", progress
        assert_consistent_stop(out, world)
        fetched_first = len(read_rows(out, ["item_id"]))
        if fetched_first == 0:
            # Slurm may send a --signal up to a minute early (sbatch(1)): once here it came
            # within 1.5 s of the start. Then every rank must have held it while starting,
            # stopped before fetching, and the rerun below does the whole job.
            for rank in range(world):
                log = (out / "logs" / f"rank-{rank:05d}.log").read_text()
                assert "slice:" not in log.split("received SIGUSR1")[0], log[-2000:]

        second = srun(geometry, cmd, seconds=60, cwd=tmp_path)
        total = time.monotonic() - started
        assert second.returncode == 0, second.stderr[-4000:]

    assert done_markers(out) == rank_names(world)
    assert assert_exactly_once(out, world_size=world) == n_urls
    show(
        capsys,
        f"srun --time=1 --signal=USR1@50: {world} ranks stopped with exit 75 after "
        f"{stopped_after:.0f}s ({fetched_first}/{n_urls} committed); rerun completed, "
        f"{total:.0f}s in all",
    )


@pytest.mark.timeout(180)
def test_scancel_mid_run_then_rerun(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """scancel part-way (the server slow: 1200 URLs of 0.1 s, one connection a host: ~15 s
    of work), then the same command again completes, every URL exactly once. The server
    answers at once after the cancel, so the rerun takes seconds."""
    n_hosts, n_urls, world = 8, 1200, 4
    flags = [
        *FAST,
        "--set",
        "fetch.per_host_concurrency=1",
        "--set",
        "output.part_max_rows=20",
    ]
    geometry = ["-N", "2", "-n", str(world), "--overcommit", "--job-name", job_name]
    with ServerProcess(hosts=n_hosts, log_path=tmp_path / "requests.jsonl") as srv:
        urls = [srv.url(f"/paced/0.1?i={i}", host=i % n_hosts) for i in range(n_urls)]
        src, out = url_lines(tmp_path / "urls.txt", urls), tmp_path / "out"
        cmd = fetchshard_run(src, out, *flags)
        log = (tmp_path / "srun-1.log").open("w")
        proc = subprocess.Popen(
            bounded(["srun", "--immediate=60", *geometry, *cmd], 150),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until(lambda: bool(jobs_named(job_name, "R")), 60, "the job to run")
            job_id = jobs_named(job_name, "R")[0]
            wait_until(lambda: len(part_files(out)) >= 8, 60, "8 committed parts")
            parts_at_cancel = len(part_files(out))
            cancelled = run_bounded(["scancel", job_id], 20)
            assert cancelled.returncode == 0, cancelled.stderr
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            log.close()
        assert rc != 0, (tmp_path / "srun-1.log").read_text()[-4000:]
        assert len(done_markers(out)) < world, "the run ended before scancel"
        assert_consistent_stop(out, world)
        srv.set_pace(0)

        second = srun(geometry, cmd, seconds=150, cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-4000:]

    assert done_markers(out) == rank_names(world)
    assert assert_exactly_once(out, world_size=world) == n_urls
    assert_consistent_stop(out, world)
    show(
        capsys,
        f"scancel {job_id} after {parts_at_cancel} parts: srun exited {rc}; "
        f"rerun completed {n_urls} URLs exactly once",
    )


def merged_urls(folder: Path) -> list[str]:
    """The url of every row of a merged dataset (successes and failures)."""
    return [
        url
        for sub in ("data", "errors")
        for path in sorted((folder / sub).glob("*.parquet"))
        for url in pq.read_table(path, columns=["url"]).column("url").to_pylist()
    ]


@pytest.mark.timeout(180)
def test_scancel_four_tasks_then_two_tasks_is_a_new_generation_exactly_once(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 31, point 6: `srun -n 4` stopped by scancel, then `srun -n 2` on the same folder.

    The second step begins generation 1: its two ranks plan what the four left and spread it
    over two; the rows generation 0 committed stay where they are. The server is slow while the
    first step runs (1600 URLs of 0.1 s; 8 hosts, one connection each: ~20 s of work, the 6
    parts in ~2 s), so scancel surely comes part-way; then it answers at once and the second
    step takes seconds.
    """
    n_hosts, n_urls, first_world, second_world = 8, 1600, 4, 2
    flags = [*FAST, "--set", "fetch.per_host_concurrency=1", "--set", "output.part_max_rows=20"]
    with ServerProcess(hosts=n_hosts, log_path=tmp_path / "requests.jsonl") as srv:
        paths = [f"/paced/0.1?i={i}" for i in range(n_urls)]  # what the server logs
        urls = [srv.url(path, host=i % n_hosts) for i, path in enumerate(paths)]
        path_of = dict(zip(urls, paths, strict=True))
        src, out = url_lines(tmp_path / "urls.txt", urls), tmp_path / "out"
        cmd = fetchshard_run(src, out, *flags)
        started = time.monotonic()
        first_geometry = ["-N", "2", "-n", str(first_world), "--overcommit"]
        log = (tmp_path / "srun-1.log").open("w")
        proc = subprocess.Popen(
            bounded(["srun", "--immediate=60", *first_geometry, "--job-name", job_name, *cmd], 120),
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            wait_until(lambda: bool(jobs_named(job_name, "R")), 60, "the job to run")
            job_id = jobs_named(job_name, "R")[0]
            wait_until(lambda: len(part_files(out)) >= 6, 60, "6 committed parts")
            cancelled = run_bounded(["scancel", job_id], 20)
            assert cancelled.returncode == 0, cancelled.stderr
            rc = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            log.close()
        stopped_after = time.monotonic() - started
        assert rc != 0, (tmp_path / "srun-1.log").read_text()[-4000:]
        assert done_markers(out) == [], "a rank of the first step finished its slice"
        assert_consistent_stop(out, first_world)
        # what generation 0 asked the server for and what it committed, before the next step
        asked_first = Counter(r["path"] for r in srv.requests())
        first_rows = read_rows(out, ["item_id", "url"])
        committed_first = set(first_rows.column("url").to_pylist())
        assert 0 < len(committed_first) < n_urls
        srv.set_pace(0)

        second_geometry = ["-N", "2", "-n", str(second_world), "--overcommit"]
        second = srun([*second_geometry, "--job-name", job_name], cmd, seconds=120, cwd=tmp_path)
        assert second.returncode == 0, second.stderr[-4000:]
        took_second = time.monotonic() - started - stopped_after
        asked = Counter(r["path"] for r in srv.requests())

    gen1 = out / "gen-0001"
    assert [g.world_size for g in RunFolder(out).generations] == [first_world, second_world]
    assert done_markers(out) == []  # generation 0 was stopped and stays so
    assert done_markers(gen1) == rank_names(second_world)
    for rank in range(second_world):
        rank_log = (gen1 / "logs" / f"rank-{rank:05d}.log").read_text()
        assert f"rank {rank} of {second_world} (from SLURM)" in rank_log, rank_log[-2000:]

    # exactly once, from the ledgers and parts: generation 1 planned just what generation 0
    # had not committed, committed all of it, and no item has a row in both generations
    first_ids = set(first_rows.column("item_id").to_pylist())
    assert len(first_ids) == len(first_rows)
    planned_first: dict[int, str] = {}
    committed_ledgers: set[int] = set()
    for rank in range(first_world):
        items = ledger_items(out, rank)
        planned_first.update({i: url for i, (url, _) in items.items()})
        committed_ledgers |= {i for i, (_, state) in items.items() if state == 1}
    assert set(planned_first.values()) == set(urls)
    assert committed_ledgers == first_ids
    planned_second: set[int] = set()
    for rank in range(second_world):
        planned_second |= ledger_items(gen1, rank).keys()
    assert planned_second == planned_first.keys() - first_ids
    assert assert_exactly_once(gen1, world_size=second_world) == n_urls - len(first_ids)
    second_ids = set(read_current(gen1, ["item_id"]).column("item_id").to_pylist())
    assert not first_ids & second_ids
    assert first_ids | second_ids == planned_first.keys()

    # the server: every URL asked for; twice only if generation 0 asked for it and did not
    # commit it (in flight at the stop), and never one generation 0 had committed
    assert set(asked) == set(paths)
    in_flight = set(asked_first) - {path_of[url] for url in committed_first}
    assert max(asked_first.values()) == 1
    twice = {p for p, n in asked.items() if n > 1}
    assert all(n <= 2 for n in asked.values()), asked.most_common(3)
    assert twice <= in_flight, sorted(twice - in_flight)[:5]
    # at most one request in flight per host and rank (fetch.per_host_concurrency=1)
    assert len(in_flight) <= n_hosts * first_world, sorted(in_flight)[:5]

    report = run_bounded([sys.executable, "-m", "fetchshard", "report", str(out), "--json"], 60)
    assert report.returncode == 0, report.stderr[-4000:]
    doc = json.loads(report.stdout)
    assert doc["state"] == "done", doc["ranks"]
    assert doc["world_size"] == second_world
    assert doc["ranks"]["states"]["done"] == second_world
    assert doc["totals"]["committed"] == n_urls, doc["totals"]

    merge = run_bounded([sys.executable, "-m", "fetchshard", "merge", str(out)], 120)
    assert merge.returncode == 0, merge.stderr[-4000:]
    merged = Counter(merged_urls(out / "merged"))
    assert merged == Counter(urls), [u for u, n in merged.items() if n > 1][:5]
    manifest = MergeManifest.read(out / "merged" / "manifest.json")
    assert manifest is not None and manifest.complete, manifest
    assert manifest.counts["ok"] == n_urls and manifest.counts["failed"] == 0, manifest.counts
    show(
        capsys,
        f"srun -n {first_world} cancelled after {stopped_after:.0f}s "
        f"({len(first_ids)}/{n_urls} committed, {len(in_flight)} URLs in flight at the stop, "
        f"{len(twice)} asked twice); srun -n {second_world} began generation 1 and completed "
        f"the {n_urls - len(first_ids)} left in {took_second:.0f}s; merge complete",
    )


@pytest.mark.timeout(120)
def test_sbatch_without_srun_refuses_and_with_srun_works(tmp_path: Path, job_name: str) -> None:
    with ServerProcess(hosts=2, log_path=tmp_path / "requests.jsonl") as srv:
        urls = [srv.url(f"/ok/{i}", host=i % 2) for i in range(200)]
        src = url_lines(tmp_path / "urls.txt", urls)
        plain, out_plain = tmp_path / "plain.out", tmp_path / "out-plain"
        command = shlex.join(fetchshard_run(src, out_plain, *FAST))
        job, _ = sbatch_wait(
            ["-n", "2", "--job-name", job_name, f"--output={plain}", "--wrap", command],
            seconds=90,
            cwd=tmp_path,
        )
        text = plain.read_text()
        assert job.returncode != 0, text
        assert "srun" in text, text
        assert not (out_plain / "ledger").exists(), "the refused run started work"

        stepped, out_step = tmp_path / "step.out", tmp_path / "out-step"
        command = "srun " + shlex.join(fetchshard_run(src, out_step, *FAST))
        job, _ = sbatch_wait(
            ["-n", "2", "--job-name", job_name, f"--output={stepped}", "--wrap", command],
            seconds=90,
            cwd=tmp_path,
        )
        assert job.returncode == 0, stepped.read_text()[-4000:]
    assert done_markers(out_step) == rank_names(2)
    assert assert_exactly_once(out_step, world_size=2) == len(urls)


@pytest.mark.timeout(240)
def test_srun_merge_writes_the_files_of_a_one_process_merge(
    tmp_path: Path, job_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`srun -n 4 fetchshard merge`: four tasks split the files, byte for byte the same."""
    with ServerProcess(hosts=3, log_path=tmp_path / "requests.jsonl") as srv:
        urls = [srv.url(f"/image/{i}?w=40&h=40", host=i % 3) for i in range(400)]
        urls += [srv.url(f"/status/404?t={i}", host=1) for i in range(5)]
        src, out = url_lines(tmp_path / "urls.txt", urls), tmp_path / "out"
        fetched = run_bounded(fetchshard_run(src, out, *FAST, "--ranks", "2"), 120)
        assert fetched.returncode == 0, fetched.stderr[-4000:]
    sizes = ["--file-size", "60KB"]
    alone = run_bounded(
        [sys.executable, "-m", "fetchshard", "merge", str(out), "-o", "alone", *sizes],
        120,
        cwd=tmp_path,
    )
    assert alone.returncode == 0, alone.stderr[-4000:]
    started = time.monotonic()
    merge = [sys.executable, "-m", "fetchshard", "merge", str(out), "-o", "split", *sizes]
    proc = srun(["-n", "4", "--overcommit", "--job-name", job_name], merge, 200, tmp_path)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr[-4000:]
    reference = json.loads((tmp_path / "alone" / "manifest.json").read_text())
    split = json.loads((tmp_path / "split" / "manifest.json").read_text())
    assert split == reference and len(reference["files"]) >= 4
    assert reference["counts"]["ok"] == 400 and reference["counts"]["failed"] == 5
    show(
        capsys,
        f"srun -n 4 fetchshard merge: {len(reference['files'])} files, the same sha256 as one "
        f"process, in {elapsed:.1f}s",
    )
