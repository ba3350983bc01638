"""Issue 33: a plan rank sorts its slice within plan.memory, spilling sorted runs to the plan
folder and merging them into the files an unbudgeted rank writes; one killed mid-spill is
redone alone, and the run from such a plan fetches each item once. A budget too small for
one input batch is one line, exit 2."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.runfolder.documents import PlanSliceDone
from fetchshard.runfolder.layout import PlanPaths
from server import ServerProcess
from util import FAST, assert_exactly_once, run_subprocess

MIB = 1 << 20
WORLD = 2
ROWS = 12_000
NOTE = 3000  # bytes of an extra column carried by every row: ~3 KB a planned row


def _input(path: Path, base_urls: list[str], rows: int) -> list[str]:
    """A Parquet input of ``rows`` URLs over the servers, each with a 3 KB extra column."""
    rng = np.random.default_rng(33)
    urls = [f"{base_urls[i % len(base_urls)]}/ok/m{i}" for i in rng.permutation(rows)]
    notes = [f"n{i}-".ljust(NOTE, "x") for i in range(rows)]
    pq.write_table(pa.table({"url": urls, "note": notes}), path, row_group_size=2000)
    return urls


def _config(path: Path, src: Path, memory: int, batch_rows: int = 500) -> Path:
    """The options plan and run share; 500-row batches (1.5 MB) fit a 16 MiB budget's runs."""
    path.write_text(
        f"input:\n  paths: [{src}]\n  extra_columns: [note]\n  batch_rows: {batch_rows}\n"
        f"plan:\n  memory: {memory}\n",
        encoding="utf-8",
    )
    return path


def _slice_bytes(out: Path) -> dict[str, bytes]:
    paths = PlanPaths(out)
    return {
        f.name: f.read_bytes()
        for rank in range(WORLD)
        for f in (paths.slice(rank).items, paths.slice(rank).hosts, paths.slice(rank).index)
    }


@pytest.mark.timeout(300)
def test_a_plan_rank_killed_mid_spill_is_redone_alone_into_the_unbudgeted_files(
    tmp_path: Path,
) -> None:
    with ServerProcess(hosts=6, address_mode="addresses") as srv:
        src = tmp_path / "urls.parquet"
        urls = _input(src, list(srv.base_urls), ROWS)
        config = _config(tmp_path / "spilling.yaml", src, 16 * MIB)  # runs of 5.3 MiB
        out = tmp_path / "out"
        paths = PlanPaths(out)
        killed = run_subprocess(
            "plan", str(config), "-o", str(out), "--rank", "1", "--world-size", str(WORLD),
            env={"_FETCHSHARD_FAULT": "plan_step_spill:2"},
        )  # fmt: skip
        assert killed.returncode == -9
        spill = paths.slice(1).spill
        assert spill is not None
        assert sorted(p.name for p in spill.iterdir()) == ["run-00000.arrow", "run-00001.arrow"]
        assert not paths.slice(1).done.exists()
        first = run_subprocess(
            "plan", str(config), "-o", str(out), "--rank", "0", "--world-size", str(WORLD)
        )
        assert first.returncode == 0, first.stderr[-2000:]
        assert "runs spilled to disk" in first.stderr
        kept = paths.slice(0).done.stat().st_mtime_ns

        again = run_subprocess("plan", str(config), "-o", str(out), "--ranks", str(WORLD))
        assert again.returncode == 0, again.stderr[-2000:]
        assert paths.slice(0).done.stat().st_mtime_ns == kept, "a finished plan rank was redone"
        assert "runs spilled to disk" in again.stderr  # rank 1, redone
        assert not spill.exists(), "the spilled runs are gone once the slice is published"

        reference = tmp_path / "reference"
        whole = run_subprocess(
            "plan", str(config), "-o", str(reference), "--ranks", str(WORLD),
            "--set", f"plan.memory={1 << 30}",
        )  # fmt: skip
        assert whole.returncode == 0, whole.stderr[-2000:]
        assert "spilled" not in whole.stderr
        assert _slice_bytes(out) == _slice_bytes(reference)
        docs = [PlanSliceDone.read(paths.slice(r).done) for r in range(WORLD)]
        assert sum(d.items for d in docs if d) == ROWS

        done = run_subprocess(
            "run", str(config), "-o", str(out), "--ranks", str(WORLD), *FAST, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        served = Counter(r["path"] for r in srv.requests() if r["path"].startswith("/ok/m"))
        assert served == Counter({u[u.index("/ok/") :]: 1 for u in urls})
        assert assert_exactly_once(out, WORLD) == ROWS


def test_a_budget_smaller_than_one_batch_is_one_line(tmp_path: Path) -> None:
    src = tmp_path / "urls.parquet"
    _input(src, ["http://127.0.0.2:9"], 4000)  # one batch of 12 MB: over a 16 MiB run's 5.3
    out = tmp_path / "out"
    config = _config(tmp_path / "big-batches.yaml", src, 16 * MIB, batch_rows=16384)
    refused = run_subprocess(
        "plan", str(config), "-o", str(out), "--rank", "0", "--world-size", "1"
    )
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "plan.memory: 16777216 bytes cannot sort plan rank 0's slice" in lines[0]
    assert "set plan.memory to at least" in lines[0] and "input.batch_rows below 16384" in lines[0]
    assert not PlanPaths(out).slice(0).done.exists()

    tiny = run_subprocess("plan", str(src), "-o", str(out), "--set", "plan.memory=1024")
    assert tiny.returncode == 2
    assert tiny.stderr.strip().splitlines() == [
        "fetchshard: error: plan.memory: at least 16777216 (16 MiB), got 1024"
    ]
