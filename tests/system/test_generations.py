"""Generations: a run stopped and resumed with other numbers of ranks fetches nothing twice."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pyarrow.parquet as pq
import pytest

from fetchshard.config import load_config
from fetchshard.errors import EXIT_USAGE
from fetchshard.inputs import open_inputs
from fetchshard.ledger import Ledger, read_summary
from fetchshard.planning.fingerprint import claim_run_folder, fingerprint
from fetchshard.planning.generations import enter_generation, generation_fingerprint
from fetchshard.planning.leftover import SealContext, plan_generation_rank
from fetchshard.planning.rank import plan_rank
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.view import RunFolder
from server import ServerProcess
from util import FAST, cli, fetchshard_cmd, planned_items, run_subprocess

HOSTS = 16
SETTINGS = [
    *FAST,
    "--set",
    "output.part_max_rows=200",
    "--set",
    "fetch.max_in_flight=32",
    "--set",
    "run.lock_wait=2",
]


@pytest.fixture(scope="module")
def hosts16(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    log = tmp_path_factory.mktemp("generations-server") / "requests.jsonl"
    with ServerProcess(hosts=HOSTS, log_path=log) as proc:
        yield proc


def _url_file(server: ServerProcess, folder: Path, tag: str, n: int) -> Path:
    urls = [server.url(f"/slow/0.002?t={tag}-{i}", host=i % HOSTS) for i in range(n)]
    path = folder / f"{tag}.txt"
    path.write_text("\n".join(urls) + "\n")
    return path


def committed(out: Path) -> int:
    """Committed rows over every generation (from the ledgers, read-only)."""
    total = 0
    root_gens = [0, *sorted(int(p.name[4:]) for p in out.glob("gen-*"))]
    for g in root_gens:
        paths = RunPaths(out, g)
        for ledger in sorted((paths.base / "ledger").glob("rank-*.sqlite")):
            with contextlib.suppress(Exception):  # not created yet
                total += read_summary(ledger).counts.committed
    return total


def _start(src: Path, out: Path, ranks: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), "--ranks", str(ranks), *SETTINGS, *extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_at(
    proc: subprocess.Popen[str], out: Path, rows: int, how: Callable[[subprocess.Popen[str]], None]
) -> str:
    deadline = time.monotonic() + 120
    while committed(out) < rows:
        assert proc.poll() is None, f"the run ended before {rows} rows: {proc.stderr}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.05)
    how(proc)
    _, err = proc.communicate(timeout=60)
    return err


def _sigterm(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)


def _merged(out: Path) -> dict[str, tuple[object, ...]]:
    """url -> (status, error kind, body sha256) of the merged dataset, successes and failures.

    `fetchshard merge` through the CLI in this process: the same command without the ~1 s a
    new interpreter takes to start on a busy 2-core machine."""
    done = cli("merge", str(out))
    assert done.exit_code == 0, done.output
    rows: dict[str, tuple[object, ...]] = {}
    for folder in ("data", "errors"):
        for path in sorted((out / "merged" / folder).glob("*.parquet")):
            table = pq.read_table(path)
            names = table.column_names
            for row in table.to_pylist():
                body = row.get("body") if "body" in names else None
                digest = hashlib.sha256(body).hexdigest() if body is not None else None
                assert row["url"] not in rows, f"{row['url']} twice in the merge"
                rows[row["url"]] = (row.get("http_status"), row.get("error_kind"), digest)
    return rows


def _requests_per_url(server: ServerProcess, tag: str) -> Counter[str]:
    return Counter(r["path"] for r in server.requests() if f"t={tag}-" in r["path"])


def test_stopped_then_3_then_7_ranks_fetches_each_url_once(
    hosts16: ServerProcess, tmp_path: Path
) -> None:
    # 10,000: the second stop still leaves ~2,500 URLs (seconds of work) to the 3 ranks
    n = 10_000
    src = _url_file(hosts16, tmp_path, "gens", n)
    out = tmp_path / "out"
    err = _stop_at(_start(src, out, 4), out, n // 2, _sigterm)
    first = committed(out)
    assert first < n, "the first generation finished before it was stopped"
    err = _stop_at(_start(src, out, 3), out, first + (n - first) // 2, _sigterm)
    second = committed(out)
    assert second < n, err
    last = _start(src, out, 7)
    _, err = last.communicate(timeout=300)
    assert last.returncode == 0, err

    folder = RunFolder(out)
    assert [g.world_size for g in folder.generations] == [4, 3, 7]
    merged = _merged(out)
    assert len(merged) == n
    requests = _requests_per_url(hosts16, "gens")
    twice = sorted(path for path, count in requests.items() if count > 1)
    assert len(requests) == n
    # Only what was in flight when a generation stopped may be asked again: at most the
    # in-flight window of every rank of the two stopped generations.
    assert len(twice) <= 32 * (4 + 3), twice[:5]
    print(f"\n{len(twice)} of {n} URLs requested twice (in flight at a stop)")

    report = _report(out)
    assert report["state"] == "done" and report["world_size"] == 7
    assert [g["world_size"] for g in report["generations"]] == [4, 3, 7]
    assert [g["state"] for g in report["generations"]] == ["ended", "ended", "done"]
    assert report["totals"]["planned"] == report["totals"]["committed"] == n
    left = [g["left"] for g in report["generations"]]
    assert left[0] == n - report["generations"][0]["committed"] and left[2] is None

    reference = tmp_path / "reference"
    src_again = _url_file(hosts16, tmp_path, "gens", n)  # the same URLs, one uninterrupted run
    done = run_subprocess("run", str(src_again), "-o", str(reference), *SETTINGS, timeout=300)
    assert done.returncode == 0, done.stderr
    assert _merged(reference) == merged


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except FileNotFoundError:
        return []
    return [int(c) for c in text.split()]


def _kill9_every_rank(proc: subprocess.Popen[str]) -> None:
    """SIGKILL every rank process of a ``--ranks`` launcher, then the launcher."""
    for child in _children(proc.pid):
        os.kill(child, signal.SIGKILL)
    proc.kill()


def _tree_state(out: Path, skip: str | None = None) -> list[tuple[str, int, int]]:
    return sorted(
        (str(p.relative_to(out)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in out.rglob("*")
        if p.is_file() and (skip is None or skip not in p.parts)
    )


# Five seeds, each its own sizes and kill moments: issue 31 asks for this five times in a row
# (seed 1 shrinks then grows: 3, 2 ranks killed, then 7; seed 4 grows then shrinks: 3, 4, 1).
@pytest.mark.parametrize("attempt", range(5))
def test_every_rank_killed_at_a_random_moment_then_another_size_is_exactly_once(
    attempt: int, hosts16: ServerProcess, tmp_path: Path
) -> None:
    n = 2_000
    rng = random.Random(attempt)
    tag = f"kill9-{attempt}"
    src = _url_file(hosts16, tmp_path, tag, n)
    out = tmp_path / "out"
    sizes = rng.sample([2, 3, 4, 5, 6], 2)  # killed twice, as point 1 stops twice
    for ranks in sizes:
        before = committed(out) if out.exists() else 0
        target = before + max(1, int((n - before) * rng.uniform(0.1, 0.5)))
        proc = _start(src, out, ranks)
        _stop_at(proc, out, min(target, n - 1), _kill9_every_rank)
    last = rng.choice([1, 7])
    final = _start(src, out, last)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err
    folder = RunFolder(out)
    assert [g.world_size for g in folder.generations] == [*sizes, last]
    assert len(_merged(out)) == n
    requests = _requests_per_url(hosts16, tag)
    assert len(requests) == n
    twice = sum(1 for count in requests.values() if count > 1)
    # A kill -9 loses what a rank had not committed: its requests in flight and the rows of
    # its open part (output.part_max_rows); nothing committed is ever asked for again.
    assert twice <= (32 + 200) * sum(sizes), twice
    print(f"\nsizes {sizes} then {last}: {twice} of {n} URLs requested twice")


def _wait_generation_fetching(out: Path, generation: int, ranks: int) -> None:
    deadline = time.monotonic() + 60
    paths = RunPaths(out, generation)
    while True:
        states = []
        for r in range(ranks):
            try:
                snap = paths.progress(r).read_text()
            except FileNotFoundError:
                snap = ""
            states.append('"fetching"' in snap or '"done"' in snap)
        if all(states):
            return
        assert time.monotonic() < deadline, "the generation never started fetching"
        time.sleep(0.05)


def test_a_new_generation_waits_for_the_running_one_then_refuses_and_an_older_rank_exits_2(
    hosts16: ServerProcess, tmp_path: Path
) -> None:
    """The two fences between generations, on one run (they shared its setup):

    * a new generation waits for the running one, then refuses: while the 2 ranks of
      generation 0 fetch, `--ranks 3` waits run.lock_wait, exits 2 naming the holder, and
      begins no generation 1;
    * an older generation's rank started later exits 2 without writing: once generation 0 is
      stopped and the 3 ranks of generation 1 fetch, a rank of generation 0 started again
      exits 2 and touches nothing of the run outside gen-0001.
    """
    src = _url_file(hosts16, tmp_path, "fence", 3_000)
    out = tmp_path / "out"
    # 5 req/s a host and no burst (FAST's 100 a host would fetch half the input at once):
    # each generation is still fetching when the next command comes
    slow = ["--set", "fetch.per_host_rate=5", "--set", "fetch.per_host_burst=1"]
    running = _start(src, out, 2, *slow)
    try:
        _wait_generation_fetching(out, 0, 2)
        started = time.monotonic()
        newer = run_subprocess("run", str(src), "-o", str(out), "--ranks", "3", *SETTINGS)
        waited = time.monotonic() - started
        assert newer.returncode == EXIT_USAGE, newer.stderr
        lines = [line for line in newer.stderr.splitlines() if line.strip()]
        assert "of generation 0 (2 ranks) is held by pid" in lines[-1], newer.stderr
        assert "stop every rank of generation 0 before running with 3 ranks" in lines[-1]
        assert waited >= 2.0  # run.lock_wait
        assert not (out / "gen-0001").exists()
        assert running.poll() is None
    finally:
        running.send_signal(signal.SIGTERM)
        running.communicate(timeout=60)

    newer_gen = _start(src, out, 3, *slow)
    try:
        _wait_generation_fetching(out, 1, 3)
        before = _tree_state(out, skip="gen-0001")
        older = run_subprocess(
            "run", str(src), "-o", str(out), "--rank", "1", "--world-size", "2", *SETTINGS
        )
        assert older.returncode == EXIT_USAGE, older.stderr
        assert "rank 0 of generation 1 (3 ranks) is held by pid" in older.stderr
        assert _tree_state(out, skip="gen-0001") == before  # nothing of the run touched
        assert newer_gen.poll() is None
    finally:
        newer_gen.send_signal(signal.SIGTERM)
        newer_gen.communicate(timeout=60)


def test_a_rank_killed_while_planning_the_leftover_is_redone_alone(
    hosts16: ServerProcess, tmp_path: Path
) -> None:
    n = 3_000
    src = _url_file(hosts16, tmp_path, "replan", n)
    out = tmp_path / "out"
    _stop_at(_start(src, out, 4), out, 1_000, _sigterm)
    one = ["run", str(src), "-o", str(out), "--world-size", "3", *SETTINGS]
    killed = run_subprocess(
        *one, "--rank", "1", env={**os.environ, "_FETCHSHARD_FAULT": "leftover_written:1"}
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    leftover = out / "gen-0001" / "leftover"
    assert list(leftover.glob("*.items.arrow")) and not list(leftover.glob("done/*.json"))
    alone = run_subprocess(*one, "--rank", "1")
    assert alone.returncode == 0, alone.stderr
    assert len(list(leftover.glob("done/*.json"))) == 4  # it wrote every source's leftover
    # the two other ranks at once (each its own process, as on two nodes)
    rest = {
        rank: subprocess.Popen(
            fetchshard_cmd(*one, "--rank", str(rank)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 2)
    }
    for rank, proc in rest.items():
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, (rank, err)
    assert len(_merged(out)) == n
    assert len(_requests_per_url(hosts16, "replan")) == n


def test_retry_failed_on_a_run_of_generations_takes_up_the_failures_of_every_one(
    hosts16: ServerProcess, tmp_path: Path
) -> None:
    tag = "genretry"
    good = [hosts16.url(f"/slow/0.002?t={tag}-ok-{i}", host=i % 4) for i in range(1_200)]
    # Each fails its first request (503) and answers the second.
    flaky = [hosts16.url(f"/flaky/{tag}-{i}/1?t={tag}-fl-{i}", host=i % 4) for i in range(80)]
    src = tmp_path / "urls.txt"
    src.write_text("\n".join([*good[:600], *flaky[:40], *good[600:], *flaky[40:]]) + "\n")
    once = ["--set", "fetch.max_attempts=1", "--set", "fetch.final_pass_attempts=0"]
    out = tmp_path / "out"
    _stop_at(_start(src, out, 2, *once), out, 600, _sigterm)
    rest = _start(src, out, 3, *once)
    _, err = rest.communicate(timeout=120)
    assert rest.returncode == 0, err
    failed = {g["generation"]: g["failed"] for g in _report(out)["generations"]}
    assert sum(failed.values()) == 80 and all(failed.values()), failed  # in both generations

    before = _requests_per_url(hosts16, tag)
    retry = _start(src, out, 3, *once, "--retry-failed")
    _, err = retry.communicate(timeout=120)
    assert retry.returncode == 0, err
    asked = _requests_per_url(hosts16, tag) - before
    assert sorted(asked) == sorted(_path(u) for u in flaky)  # each failure once, nothing else
    assert set(asked.values()) == {1}
    report = _report(out)
    assert [g["retry_failed"] for g in report["generations"]] == [None, None, ["transient"]]
    assert report["totals"]["failed"] == 0 and report["totals"]["committed"] == 1_280
    assert report["failures"]["by_kind"] == {}
    merged = _merged(out)
    assert len(merged) == 1_280 and {row[1] for row in merged.values()} == {None}


def _report(out: Path) -> dict[str, Any]:
    """`fetchshard report --json` (through the CLI in this process, as `_merged`)."""
    done = cli("report", str(out), "--json")
    assert done.exit_code == 0, done.output
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_the_plan_step_prepares_the_next_generation(hosts16: ServerProcess, tmp_path: Path) -> None:
    n = 3_000
    src = _url_file(hosts16, tmp_path, "genplan", n)
    out = tmp_path / "out"
    _stop_at(_start(src, out, 4), out, 1_000, _sigterm)
    plan = run_subprocess("plan", str(src), "-o", str(out), "--ranks", "3", *SETTINGS)
    assert plan.returncode == 0, plan.stderr
    leftover = out / "gen-0001" / "leftover"
    assert len(list(leftover.glob("done/*.json"))) == 4  # each of the 4 stopped ranks'
    assert not (out / "plan").exists()  # the input is not planned again
    stamps = {p: p.stat().st_mtime_ns for p in leftover.rglob("*.arrow")}
    run = _start(src, out, 3)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    assert {p: p.stat().st_mtime_ns for p in leftover.rglob("*.arrow")} == stamps  # used as is
    assert len(_merged(out)) == n
    assert len(_requests_per_url(hosts16, "genplan")) == n


def test_the_leftover_of_a_zipf_run_stopped_at_70_percent_is_balanced_over_new_ranks(
    tmp_path: Path,
) -> None:
    """Planning only (nothing fetched): 60,000 items on 1,000 hosts, Zipf(1.3), over 8 ranks;
    stopped as a polite run stops, every host fetched at the same pace, so the small hosts are
    done and the leftover is the big hosts' tails; then 5 ranks take it over."""
    weights = 1 / np.arange(1, 1_001) ** 1.3
    counts = np.maximum(1, np.round(weights / weights.sum() * 60_000)).astype(int)
    urls = [f"http://h{h}.example/{i}" for h, n in enumerate(counts) for i in range(n)]
    random.Random(5).shuffle(urls)
    src = tmp_path / "urls.txt"
    src.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    config = load_config(environ={}, overrides={"input.paths": [str(src)], "output.dir": str(out)})
    inputs = open_inputs(config.input)
    old = 8
    fp = fingerprint(config, inputs.files, old)
    for rank in range(old):
        info = RankInfo(rank, old, "test")
        claim_run_folder(RunPaths(out), fp, info, restart=False)
        with Ledger(RunPaths(out).ledger_paths(rank)) as ledger:
            plan_rank(ledger, config, info, fp, inputs)
    # Every host fetched at one pace for the same time: at most `cap` items of each.
    per_rank = [planned_items(RunPaths(out).ledger(r)) for r in range(old)]
    hosts = Counter(r["url"].split("/")[2] for items in per_rank for r in items)
    cap = next(c for c in range(1, 60_000) if sum(min(n, c) for n in hosts.values()) >= 42_000)
    seen: Counter[str] = Counter()
    for rank, items in enumerate(per_rank):
        done = []
        for row in items:
            host = row["url"].split("/")[2]
            seen[host] += 1
            if seen[host] <= cap:
                done.append((row["item_id"], 1, None))
        with Ledger(RunPaths(out).ledger_paths(rank)) as ledger:
            ledger.commit_part(1, done, rows=len(done), nbytes=1, now=0.0)
    left = len(urls) - sum(min(n, cap) for n in hosts.values())
    assert 0.25 < left / len(urls) < 0.35

    new = 5
    generations, generation = enter_generation(out, new, (), lock_wait=0)
    ctx = SealContext(out, config, inputs, generations, should_stop=lambda: False)
    fp_new = generation_fingerprint(fingerprint(config, inputs.files, new), generation.number)
    planned = []
    for rank in range(new):
        with Ledger(RunPaths(out, 1).ledger_paths(rank)) as ledger:
            result = plan_generation_rank(ledger, ctx, RankInfo(rank, new, "test"), fp_new, 1)
            planned.append(result.new)
    assert sum(planned) == left
    mean = left / new
    print(
        f"\nleftover {left:,} items over {new} ranks: {planned}, max/mean {max(planned) / mean:.3f}"
    )
    assert max(planned) <= 1.05 * mean


def test_from_python_another_world_size_is_a_generation_with_its_counts(
    hosts16: ServerProcess, tmp_path: Path
) -> None:
    import fetchshard

    src = _url_file(hosts16, tmp_path, "genapi", 2_000)
    out = tmp_path / "out"
    _stop_at(_start(src, out, 4), out, 600, _sigterm)
    left = 2_000 - committed(out)
    options = {"fetch.per_host_rate": 1000, "fetch.per_host_burst": 100}
    result = fetchshard.run(src, output=out, ranks=3, options=options)
    assert (result.complete, result.generation, result.world_size) == (True, 1, 3)
    assert result.items == left and result.ok + result.failed == left
    assert fetchshard.report(out).totals.committed == 2_000
