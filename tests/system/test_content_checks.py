"""Every download is checked against what its response says: bad_content, at once."""

from __future__ import annotations

from pathlib import Path

from server import ServerProcess
from util import FAST, read_current, run_subprocess


def test_bodies_that_contradict_their_response_fail_without_a_retry(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    cases = {
        "/as/html?ct=image/jpeg": ("failed", "an HTML page served as image/jpeg"),
        "/as/pdf?ct=image/png": ("failed", "image/png but the bytes are application/pdf"),
        "/as/text?ct=image/webp": ("failed", "image/webp but the bytes are text/plain"),
        "/as/empty?ct=text/plain": ("failed", "empty body (HTTP 200)"),
        "/as/jpeg?ct=image/png": ("ok", None),  # one image type as another: it decodes
        "/as/html?ct=text/html": ("ok", None),  # a page that says it is one
    }
    urls = {
        server_process.url(f"{path}&t={i}"): want for i, (path, want) in enumerate(cases.items())
    }
    src = tmp_path / "urls.txt"
    src.write_text("".join(f"{u}\n" for u in urls))
    out = tmp_path / "out"
    done = run_subprocess("run", str(src), "-o", str(out), *FAST, "--set", "fetch.max_attempts=3")
    assert done.returncode == 0, done.stderr
    rows = {r["url"]: r for r in read_current(out).to_pylist()}
    for url, (status, message) in urls.items():
        row = rows[url]
        assert row["status"] == status, row
        assert row["error_message"] == message
        if status == "failed":
            assert row["error_kind"] == "bad_content" and row["attempts"] == 1
            assert row["body"] is None and row["http_status"] == 200
