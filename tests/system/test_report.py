"""``fetchshard report`` on a synthetic 400-rank folder (exact numbers) and on live runs."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from fetchshard.reporting import build_report
from fetchshard.reporting.summary import Report
from fetchshard.runfolder.documents import (
    DoneMarker,
    ProgressHistory,
    ProgressSnapshot,
    RankStats,
    RunManifest,
)
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.view import RunFolder
from fetchshard.stats import HostCounts, Stats
from server import ServerProcess
from util import FAST, assert_exactly_once, fetchshard_cmd, run_subprocess

WORLD = 400
PLAN = 1000  # items per running rank's slice
DONE_ITEMS = 500
STEP = 5.0  # seconds between history samples
SAMPLES = 61  # five minutes of history

RUNNING = [r for r in range(WORLD) if r % 10 == 0 and r not in (0,)]  # 39 ranks
WAITING = [1, 11, 21]
DEAD = 7  # lock free, not done, last snapshot "fetching"
HUNG = 17  # lock held, snapshot ten minutes old
STOPPED = 27  # lock free, snapshot "interrupted", stats not complete
NOT_STARTED = 399
SLOW = 30  # a running rank at a quarter of the others' rate
HELD = [*RUNNING, *WAITING, HUNG]


def _rate(rank: int) -> float:
    """Rows per second over the last minute: waiting ranks made none."""
    return 0.0 if rank in WAITING else 0.5 if rank == SLOW else 2.0


def _committed(rank: int) -> int:
    """Where a running rank's history ends."""
    return 100 + rank


_HOLD = """
import contextlib, sys
from pathlib import Path
from fetchshard.runfolder.lock import rank_lock
root = Path(sys.argv[1])
with contextlib.ExitStack() as stack:
    for rank in map(int, sys.argv[2:]):
        stack.enter_context(rank_lock(root / "locks" / f"rank-{rank:05d}.lock", rank, wait=5))
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, float]]:
    """400 ranks: done, running (locks held by another process), waiting, dead, hung,
    stopped, not started; everything written by fetchshard's own document classes."""
    root = tmp_path_factory.mktemp("report") / "out"
    paths = RunPaths(root)
    now = time.time()
    RunManifest(
        fingerprint={"world_size": WORLD, "spread": 16, "input": {"files": []}},
        fetchshard_version="test",
    ).write(paths.run_json)
    for rank in range(WORLD):
        _write_rank(paths, rank, now)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(root), *map(str, HELD)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield root, now
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)


def _write_rank(paths: RunPaths, rank: int, now: float) -> None:
    if rank == NOT_STARTED:
        return
    alive = rank in RUNNING or rank in WAITING or rank in (DEAD, HUNG, STOPPED)
    if not alive:  # done
        stats = Stats(
            items=DONE_ITEMS,
            ok=DONE_ITEMS - 3,
            failed=3,
            requests=DONE_ITEMS + 5,
            bytes=(DONE_ITEMS - 3) * 100_000,
            errors=Counter({"http_404": 2, "timeout": 1}),
            http_status=Counter({"200": DONE_ITEMS - 3, "404": 2}),
            content_types=Counter({"image/jpeg": DONE_ITEMS - 3}),
            sizes=Counter({"17": DONE_ITEMS - 3}),
            hosts={
                f"h{rank % 5}.example": HostCounts(
                    failures=3,
                    errors=Counter({"http_404": 2, "timeout": 1}),
                    throttled=rank % 3,
                    parked_s=1.5,
                    samples=[(f"http://h{rank % 5}.example/{rank}", "HTTP 404 Not Found")],
                )
            },
        )
        RankStats(
            rank=rank, world_size=WORLD, complete=True, stats=stats, written_at=now - 100
        ).write(paths.stats(rank))
        DoneMarker(rank=rank, world_size=WORLD, items=DONE_ITEMS, completed_at=now - 100).write(
            paths.done(rank)
        )
        return
    started = now - (SAMPLES - 1) * STEP - 1.0
    end = _committed(rank)
    rate = _rate(rank)
    history = ProgressHistory()  # fetched = committed: 50 before + written this session
    for i in range(SAMPLES):
        committed = end - rate * (SAMPLES - 1 - i) * STEP
        history.append(started + i * STEP, committed, committed, 0.0)
    snap = ProgressSnapshot(
        rank=rank,
        world_size=WORLD,
        started_at=started,
        state="interrupted" if rank == STOPPED else "fetching",
        updated_at=now - 600 if rank in (HUNG, DEAD) else now - 1.0,
        total=PLAN,
        committed=end,
        written=end - 50,
        committed_before=50,
        ok=end - 51,
        failed=1,
        bytes=1_000_000,
        errors={"http_5xx": 1},
        failed_before=2,
        errors_before={"http_404": 2},
        http_status={"200": end - 51, "503": 1},
        waiting="2 hosts parked (Retry-After)" if rank in WAITING else None,
        history=history,
        history_step=STEP,
        interval=STEP,
    )
    snap.write(paths.progress(rank))
    if rank == STOPPED:
        stats = Stats(items=end, ok=end - 3, failed=3, errors=Counter({"http_404": 3}))
        RankStats(
            rank=rank, world_size=WORLD, complete=False, stats=stats, written_at=now - 50
        ).write(paths.stats(rank))


def _report(root: Path) -> Report:
    done = run_subprocess("report", str(root), "--json")
    assert done.returncode == 0, done.stderr
    return Report.from_bytes(done.stdout.encode(), root / "report.json")


def test_json_counts_a_400_rank_folder_exactly(synthetic: tuple[Path, float]) -> None:
    root, _ = synthetic
    report = _report(root)
    done = [r for r in range(WORLD) if r not in (*HELD, DEAD, STOPPED, NOT_STARTED)]
    assert report.world_size == WORLD and report.state == "running"
    assert report.ranks.states == {
        "running": len(RUNNING),
        "waiting": len(WAITING),
        "planning": 0,
        "done": len(done),
        "stopped": 1,
        "dead": 2,  # DEAD (lock free) and HUNG (lock held, stale snapshot)
        "not started": 1,
    }
    grid = report.ranks.grid
    assert len(grid) == WORLD and grid[NOT_STARTED] == "." and grid[DEAD] == grid[HUNG] == "X"
    assert grid[STOPPED] == "S" and grid[1] == "W" and grid[10] == "R" and grid[2] == "D"
    live = [*RUNNING, *WAITING, DEAD, HUNG, STOPPED]
    t = report.totals
    assert t.planned == len(done) * DONE_ITEMS + len(live) * PLAN
    assert t.committed == len(done) * DONE_ITEMS + sum(_committed(r) for r in live)
    # done: 3 each; running/waiting/dead/hung: 2 before + 1 now; stopped: its stats, 3
    assert t.failed == 3 * len(done) + 3 * (len(live) - 1) + 3
    assert t.fetched == t.committed  # no rank has rows in an open part
    assert t.ok == t.fetched - t.failed and t.pending == t.planned - t.fetched
    alive = [*RUNNING, *WAITING]
    assert t.urls_per_s_now == pytest.approx(sum(_rate(r) for r in alive))
    # The job ends with the rank with the most time left: the slow one.
    assert t.eta_s is None  # a dead and a stopped rank have work left...
    assert "rerun" in t.eta_reason and "rank 7" in t.eta_reason
    assert report.ranks.slowest[0] == SLOW
    slow = next(r for r in report.ranks.rows if r.rank == SLOW)
    assert slow.seconds_left == pytest.approx((PLAN - _committed(SLOW)) / 0.5)
    attention = {r.rank: r.state for r in report.ranks.attention}
    assert {DEAD: "dead", HUNG: "dead", STOPPED: "stopped", 1: "waiting"}.items() <= (
        attention.items()
    )
    assert "lock is held" in next(r.detail for r in report.ranks.rows if r.rank == HUNG)
    assert "lock is free" in next(r.detail for r in report.ranks.rows if r.rank == DEAD)
    assert report.failures.by_kind == {
        "http_404": 2 * len(done) + 2 * (len(live) - 1) + 3,
        "timeout": len(done),
        "http_5xx": len(live) - 1,
    }
    assert report.failures.by_http_status["404"] == 2 * len(done)
    assert report.failures.by_http_status["503"] == len(live) - 1  # the snapshots' sessions
    hosts = {h.host: h for h in report.failures.hosts_by_failures}
    for i in range(5):
        mine = [r for r in done if r % 5 == i]
        assert hosts[f"h{i}.example"].failures == 3 * len(mine)
        assert hosts[f"h{i}.example"].throttled == sum(r % 3 for r in mine)
        assert hosts[f"h{i}.example"].parked_s == pytest.approx(1.5 * len(mine))
        assert len(hosts[f"h{i}.example"].samples) == 3
    assert report.content.sizes == {"64 KiB-128 KiB": len(done) * (DONE_ITEMS - 3)}
    assert report.content.content_types == {"image/jpeg": len(done) * (DONE_ITEMS - 3)}
    plans = [DONE_ITEMS] * len(done) + [PLAN] * len(live)
    assert report.ranks.imbalance == pytest.approx(max(plans) / (sum(plans) / len(plans)), 1e-3)


def test_eta_is_the_slowest_rank_once_every_rank_runs(synthetic: tuple[Path, float]) -> None:
    root, now = synthetic
    report = build_report(RunFolder(root), now=now)
    by_rank = {r.rank: r for r in report.ranks.rows}
    assert by_rank[SLOW].urls_per_s == pytest.approx(0.5)
    assert by_rank[10].seconds_left == pytest.approx((PLAN - _committed(10)) / 2.0)
    # In the same folder without the dead and stopped ranks' work, the estimate is the slow
    # rank's time left, and the reason names it.
    from fetchshard.reporting.collect import collect
    from fetchshard.reporting.summary import summarize

    found = collect(RunFolder(root), now=now)
    gone = (DEAD, HUNG, STOPPED, NOT_STARTED, *WAITING)  # waiting ranks: no estimate
    found.ranks = [r for r in found.ranks if r.rank not in gone]
    eta = summarize(found).totals
    assert eta.eta_s == pytest.approx((PLAN - _committed(SLOW)) / 0.5)
    assert f"rank {SLOW} has the most left" in eta.eta_reason


def test_the_terminal_view_fits_100_columns(synthetic: tuple[Path, float]) -> None:
    root, _ = synthetic
    done = run_subprocess("report", str(root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert max(len(line) for line in lines) <= 100, max(lines, key=len)
    text = done.stdout
    assert "ranks to look at" in text and "dead" in text and "http_404" in text
    assert "■" in text  # the grid


def test_not_a_run_folder_is_one_line_and_exit_2(tmp_path: Path) -> None:
    refused = run_subprocess("report", str(tmp_path))
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"fetchshard: error: {tmp_path} is not a fetchshard output folder (no run.json)"
    )
    newer = tmp_path / "run.json"
    newer.write_text(json.dumps({"kind": "run", "version": 99, "fingerprint": {}}))
    refused = run_subprocess("report", str(tmp_path), "--json")
    assert refused.returncode == 2 and "upgrade fetchshard" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.timeout(180)
def test_watch_follows_a_live_run_and_reading_changes_nothing(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    n = 600
    src = tmp_path / "urls.txt"
    src.write_text("".join(server_process.url(f"/ok/w{i}", host=i % 4) + "\n" for i in range(n)))
    out = tmp_path / "out"
    # ~10 s: 15 requests/s per host, 4 hosts, no burst
    args = [*FAST, "--set", "fetch.per_host_rate=15", "--set", "fetch.per_host_burst=1"]
    args += ["--set", "run.progress_interval=0.2", "--ranks", "2"]
    run = subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "run.json").exists():
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.05)
        watch = subprocess.Popen(
            fetchshard_cmd("report", str(out), "--watch", "--json", "--interval", "0.3"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []  # read as they come: a full pipe would hold the watch up
        reader = threading.Thread(target=lambda: lines.extend(watch.stdout or ()), daemon=True)
        reader.start()
        reads = 0
        while run.poll() is None:  # and in this process, 20 times a second
            build_report(RunFolder(out))
            reads += 1
            time.sleep(0.05)
        assert run.wait(timeout=120) == 0, run.stderr.read() if run.stderr else ""
        watch.wait(timeout=30)
        reader.join(timeout=10)
        stderr = watch.stderr.read() if watch.stderr else ""
    finally:
        if run.poll() is None:
            run.kill()
    assert watch.returncode == 0, stderr
    reports = [json.loads(line) for line in lines]
    fetched = [r["totals"]["fetched"] for r in reports]
    assert fetched == sorted(fetched) and len(set(fetched)) >= 5, fetched
    assert reports[-1]["state"] == "done" and reports[-1]["totals"]["committed"] == n
    assert reports[-1]["totals"]["ok"] == n and reads >= 10
    assert assert_exactly_once(out, world_size=2) == n


@pytest.mark.timeout(120)
def test_ranks_on_a_terminal_show_one_bar_of_the_job(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    import os
    import pty

    n = 300
    src = tmp_path / "urls.txt"
    src.write_text("".join(server_process.url(f"/ok/t{i}", host=i % 4) + "\n" for i in range(n)))
    args = [*FAST, "--set", "fetch.per_host_rate=40", "--set", "fetch.per_host_burst=1"]
    args += ["--set", "run.progress_interval=0.2", "--ranks", "2"]
    master, slave = pty.openpty()
    run = subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(tmp_path / "out"), *args),
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "100", "TERM": "xterm"},
    )
    os.close(slave)
    screen = b""
    while True:  # until the terminal closes: the launcher and its ranks have exited
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(master)
    assert run.wait(timeout=60) == 0
    text = screen.decode(errors="replace")
    assert "2 ranks" in text and f"{n}/{n}" in text, text[-2000:]
    assert "2 done" in text
    # one bar: the ranks' own info lines ("slice: ...", "rank 0 done: ...") stay in their logs
    assert "INFO" not in text.split("started 2 local ranks", 1)[-1], text[-2000:]
    assert "slice:" not in text and "rank 0 done" not in text
