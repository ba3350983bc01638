"""The README's example works as written: the demo, and the bare command it runs."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from util import fetchshard_cmd, rows_by_url

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
PORT = 8765


def _port_free() -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", PORT)) != 0


def _check(out: Path) -> None:
    rows = rows_by_url(out)
    urls = [line for line in (EXAMPLES / "urls.txt").read_text().splitlines() if line.strip()]
    assert len(rows) == len(set(urls))
    kinds = {url: (r["status"], r["error_kind"]) for url, r in rows.items()}
    assert kinds["http://127.0.0.1:8765/img/1.jpg"] == ("ok", None)
    assert kinds["http://127.0.0.1:8765/flaky"] == ("ok", None)
    assert rows["http://127.0.0.1:8765/flaky"]["attempts"] == 2
    assert kinds["http://127.0.0.1:8765/missing.png"] == ("failed", "http_404")
    assert kinds["not a url at all"] == ("failed", "bad_url")
    assert kinds["ftp://127.0.0.1/file.txt"] == ("failed", "bad_url")
    assert sum(1 for s, _ in kinds.values() if s == "ok") == 26


@pytest.mark.skipif(not _port_free(), reason=f"port {PORT} is in use on this machine")
def test_demo_script(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "-o", f"{out}/"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "29 rows" in done.stdout
    _check(out)
    # then the report and the merged dataset
    assert "job done" in done.stdout and "every rank is done" in done.stdout
    assert f"{out}/merged: complete, 26 ok and 3 failed rows" in done.stdout
    manifest = json.loads((out / "merged" / "manifest.json").read_text())
    assert manifest["complete"] and manifest["counts"]["ok"] == 26


@pytest.mark.skipif(not _port_free(), reason=f"port {PORT} is in use on this machine")
def test_readme_command_as_written(tmp_path: Path) -> None:
    """`fetchshard run examples/urls.txt -o out/` from a checkout, with the site running."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    site = subprocess.Popen([sys.executable, str(tmp_path / "examples" / "site.py")])
    try:
        deadline = time.monotonic() + 15
        while _port_free():
            assert time.monotonic() < deadline and site.poll() is None, "site did not start"
            time.sleep(0.05)
        exe = shutil.which("fetchshard")
        cmd = [exe] if exe else fetchshard_cmd()
        done = subprocess.run(
            [*cmd, "run", "examples/urls.txt", "-o", "out/"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        site.terminate()
        site.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    _check(tmp_path / "out")
