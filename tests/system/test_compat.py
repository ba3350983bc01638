"""Folders written by an earlier fetchshard are still read: a run folder left by a crash is
resumed exactly once, a finished plan step is run from (fixture: tests/fixtures/compat)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from server import ServerProcess
from util import FAST, assert_exactly_once, fetchshard_cmd, rows_by_url

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "compat"
PLACE = Path("/tmp/fetchshard-compat-fixture")  # where make.py made it: the fingerprints say so
URLS = 60


@pytest.fixture
def folders() -> Iterator[Path]:
    shutil.rmtree(PLACE, ignore_errors=True)
    PLACE.mkdir(parents=True)
    with tarfile.open(FIXTURE / "folders.tar.gz") as tar:
        tar.extractall(PLACE, filter="data")
    # The fingerprint holds the input's mtime to the nanosecond; a tar keeps whole seconds.
    recorded = json.loads((PLACE / "run" / "run.json").read_text())
    (entry,) = recorded["fingerprint"]["input"]["files"]
    assert entry["path"] == str(PLACE / "urls.txt")
    os.utime(PLACE / "urls.txt", ns=(entry["mtime_ns"], entry["mtime_ns"]))
    yield PLACE
    shutil.rmtree(PLACE, ignore_errors=True)


def _run(folder: Path, proxy: ServerProcess, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["HTTP_PROXY"] = proxy.url("/").rstrip("/")  # the fixture's hosts only resolve there
    proc = subprocess.run(
        fetchshard_cmd("run", "urls.txt", *args, *FAST),
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def _fetched(proxy: ServerProcess, since: int) -> list[str]:
    return [r["path"] for r in proxy.requests()[since:] if "t=compat" in r["path"]]


def test_a_crashed_run_and_a_plan_of_an_earlier_version_complete_exactly_once(
    folders: Path, server_process: ServerProcess
) -> None:
    made_by = json.loads((folders / "made-by.json").read_text())
    run = folders / "run"
    renamed = sorted((run / "shards" / "rank-00000").glob("part-*.parquet"))
    assert len(renamed) == 3, made_by  # the third renamed, not yet in the ledger: adopted
    kept = {r for p in renamed for r in pq.read_table(p, columns=["url"]).column("url").to_pylist()}
    since = len(server_process.requests())
    _run(folders, server_process, "-o", "run")
    assert assert_exactly_once(run) == URLS
    rows = rows_by_url(run)
    assert {r["status"] for r in rows.values()} == {"ok"}
    again = _fetched(server_process, since)
    kept_paths = {u.split(".invalid", 1)[1] for u in kept}  # what the proxy logs: the path
    assert len(kept_paths) == len(kept) and not set(again) & kept_paths
    assert len(again) == URLS - len(kept)

    since = len(server_process.requests())
    _run(folders, server_process, "-o", "planned", "--ranks", "2")
    assert assert_exactly_once(folders / "planned", world_size=2) == URLS
    assert len(_fetched(server_process, since)) == URLS
