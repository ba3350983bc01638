"""Helpers shared by the end-to-end tests: run the CLI, read what a run wrote."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner, Result

from fetchshard.cli import app
from fetchshard.ledger import read_superseded
from fetchshard.output.columns import ResultRow
from fetchshard.runfolder.layout import RunPaths, rank_of_name

# Fast, still polite to a loopback test server: no test waits for the embedded 10 req/s.
FAST = [
    "--set",
    "fetch.per_host_rate=1000",
    "--set",
    "fetch.per_host_burst=100",
    "--set",
    "fetch.retry_base_delay=0.01",
    "--set",
    "fetch.final_pass_delay=0.05",
    "--set",
    "run.progress_interval=0.2",
]


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run ``fetchshard ARGS`` in-process through typer's CliRunner."""
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def fetchshard_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fetchshard", *args]


def wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[Any], timeout: float) -> None:
    """Poll until ``predicate()``; fail (killing ``proc``) if it ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            pytest.fail(f"run ended (rc={proc.returncode}) before the moment to kill it")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("the moment to kill the run never came")


def run_subprocess(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        fetchshard_cmd(*args),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_subprocesses(
    *commands: Sequence[str],
    envs: Sequence[dict[str, str] | None] = (),
    timeout: float = 120,
) -> list[subprocess.CompletedProcess[str]]:
    """:func:`run_subprocess` of each argument list at once (independent commands: their
    start-ups overlap on the cores), ``envs[i]`` added to command i's environment; the
    results in the order given."""
    procs = []
    for i, args in enumerate(commands):
        env = envs[i] if i < len(envs) else None
        procs.append(
            subprocess.Popen(
                fetchshard_cmd(*args),
                env={**os.environ, **(env or {})},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    deadline = time.monotonic() + timeout
    done = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


# Runs a command and writes its own children's peak RSS (KiB) to argv[1]: the command's alone,
# whatever other tests' processes this pytest process reaped before.
_PEAK_RSS_WRAPPER = (
    "import resource, subprocess, sys; rc = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(rc)"
)


def run_with_peak_rss(
    *args: str, rss_file: Path, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], float]:
    """:func:`run_subprocess`, and the peak RSS of the command's process (MB)."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_WRAPPER, str(rss_file), *fetchshard_cmd(*args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    peak_kib = int(rss_file.read_text()) if rss_file.exists() else 0
    return done, peak_kib / 1024


def run_with_peak_memory(*args: str, timeout: float = 120) -> tuple[int, str, float, float]:
    """Run ``fetchshard ARGS``; its exit code, stderr, and the peaks of its private memory
    (RssAnon + RssShmem) and of its RSS (VmHWM), in MB, sampled every 10 ms.

    RSS also counts the pages of the shared libraries mapped from files, and how many of those
    a process maps depends on the page cache: the same imports are 50 MB of them from an old
    venv and 87 MB from one pip has just written (large folios), 43 MB private either way."""
    proc = subprocess.Popen(
        fetchshard_cmd(*args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak_private = peak_rss = 0.0
    deadline = time.monotonic() + timeout
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except (FileNotFoundError, ProcessLookupError):
            break
        kib = {k: int(v.split()[0]) for k, v in fields.items() if v.strip().endswith("kB")}
        private = kib.get("RssAnon", 0) + kib.get("RssShmem", 0)
        peak_private = max(peak_private, private / 1024)
        peak_rss = max(peak_rss, kib.get("VmHWM", 0) / 1024)
        time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
    _, stderr = proc.communicate(timeout=30)
    return proc.returncode, stderr, peak_private, peak_rss


def part_files(out: Path) -> list[Path]:
    return sorted((out / "shards").glob("rank-*/part-*.parquet"))


def read_rows(out: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """Every committed row of every part (each part read on its own: all must be readable)."""
    tables = [pq.read_table(p, columns=list(columns) if columns else None) for p in part_files(out)]
    if not tables:
        return pa.table({"item_id": pa.array([], pa.int64())})
    return pa.concat_tables(tables, promote_options="default")


def read_current(out: Path, columns: Sequence[str] | None = None) -> pa.Table:
    """The current rows: every committed row but those a ``--retry-failed`` replaced, as
    each rank's ledger records them."""
    paths = RunPaths(out)
    superseded = {
        rank: read_superseded(paths.ledger(rank))
        for rank in paths.ranks_present()
        if paths.ledger(rank).exists()
    }
    wanted = None if columns is None else list(dict.fromkeys(["item_id", *columns]))
    tables = []
    for path in part_files(out):
        table = pq.read_table(path, columns=wanted)
        rank = rank_of_name(path.parent.name)
        number = paths.part_number(path)
        assert rank is not None and number is not None
        old = superseded.get(rank, {}).get(number)
        if old is not None:
            keep = ~np.isin(table.column("item_id").to_numpy(), old)
            assert len(table) - keep.sum() == len(old), f"superseded rows missing in {path}"
            table = table.filter(pa.array(keep))
        tables.append(table if columns is None else table.select(list(columns)))
    if not tables:
        return pa.table({"item_id": pa.array([], pa.int64())})
    return pa.concat_tables(tables, promote_options="default")


def rows_by_url(out: Path, *, body: bool = False) -> dict[str, dict[str, Any]]:
    """The current row of each URL (one, or the test fails)."""
    table = read_current(out)
    rows = (table if body else table.drop_columns(["body"])).to_pylist()
    by_url: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["url"] not in by_url, f"two rows for {row['url']}"
        by_url[row["url"]] = row
    return by_url


def planned_items(ledger: Path) -> list[dict[str, Any]]:
    """The rows of a ledger's items file (``rank-N.items.arrow`` beside it), by item id."""
    path = ledger.with_suffix(".items.arrow")
    if not path.exists():
        return []
    with pa.OSFile(str(path), "rb") as source:
        rows = pa.ipc.open_file(source).read_all().to_pylist()
    return sorted(rows, key=lambda r: r["item_id"])


def ledger_items(out: Path, rank: int = 0) -> dict[int, tuple[str, int]]:
    """item_id -> (url, state) of one rank's ledger (items in its commit log count as 1)."""
    path = out / "ledger" / f"rank-{rank:05d}.sqlite"
    with sqlite3.connect(path) as db:
        done = {r[0] for r in db.execute("SELECT item_id FROM done")}
        states = dict(db.execute("SELECT item_id, state FROM states").fetchall())
    return {
        r["item_id"]: (r["url"], 1 if r["item_id"] in done else states.get(r["item_id"], 0))
        for r in planned_items(path)
    }


def assert_exactly_once(out: Path, world_size: int = 1) -> int:
    """Every planned item has exactly one current row over all parts; returns the count."""
    planned: set[int] = set()
    for rank in range(world_size):
        items = ledger_items(out, rank)
        assert all(state == 1 for _, state in items.values()), "items left uncommitted"
        assert not planned & items.keys(), "an item is planned on two ranks"
        planned |= items.keys()
    ids = read_current(out, ["item_id"]).column("item_id").to_pylist()
    dupes = [i for i, n in Counter(ids).items() if n > 1]
    assert not dupes, f"{len(dupes)} items have more than one row"
    assert set(ids) == planned
    assert not list((out / "shards").glob("*/*.tmp"))
    return len(ids)


def arrivals(server: Any, tag: str) -> list[float]:
    """Server-clock arrival times of the requests whose path contains ``tag``."""
    return sorted(r["t"] for r in server.requests() if tag in r["path"])


def max_excess(times: list[float], rate: float, burst: float, slack: float = 0.25) -> float:
    """Largest ``count - (burst + rate * window)`` over all windows between two arrivals.

    ``slack`` seconds of jitter are allowed between the limiter's go and the server's clock:
    a busy CI machine delays the server's handler and bunches requests that left evenly
    (seen: three sent 25 ms apart arrived within 1 ms). A real overrun grows with the count
    of requests, so it still shows far beyond this slack.
    """
    worst = float("-inf")
    for i in range(len(times)):
        for j in range(i, len(times)):
            worst = max(worst, (j - i + 1) - (burst + rate * (times[j] - times[i] + slack)))
    return worst


def ok_row(i: int, **fields: Any) -> ResultRow:
    """A successful result row of item ``i`` (3-byte body), ``fields`` changed."""
    values: dict[str, Any] = {
        "item_id": i,
        "url": f"http://h/{i - 1}",
        "extras": None,
        "status": "ok",
        "error_kind": None,
        "error_message": None,
        "http_status": 200,
        "final_url": None,
        "content_type": "text/plain",
        "size": 3,
        "attempts": 1,
        "fetched_at": 1.7e9,
        "elapsed_ms": 1.0,
        "body": b"abc",
    }
    values.update(fields)
    return ResultRow(**values)
