"""Every download is checked against what its response says: bad_content, at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server import ServerProcess
from server.bodies import jpeg_bytes
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


@pytest.mark.parametrize("algorithm", ["sha256", "md5"])
def test_an_expected_hash_column_is_checked(
    algorithm: str, server_process: ServerProcess, tmp_path: Path
) -> None:
    def digest(data: bytes) -> str:
        return hashlib.new(algorithm, data).hexdigest()

    rows = []
    for i in range(6):
        url = server_process.url(f"/image/{i}?w=16&h=16&t=h{algorithm}{i}")
        body = jpeg_bytes(i, 16, 16)
        # 0, 1: the right hash (one upper-case); 2, 3: another body's; 4: none; 5: empty
        want = {0: digest(body), 1: digest(body).upper(), 4: None, 5: ""}.get(i)
        rows.append({"url": url, "sha256": digest(b"other") if want is None and i < 4 else want})
    src = tmp_path / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    out = tmp_path / "out"
    done = run_subprocess(
        "run",
        str(src),
        "-o",
        str(out),
        *FAST,
        "--set",
        "input.hash_column=sha256",
        "--set",
        f"input.hash_algorithm={algorithm}",
    )
    assert done.returncode == 0, done.stderr
    got = {r["url"]: r for r in read_current(out).to_pylist()}
    for i, row in enumerate(rows):
        found = got[row["url"]]
        assert found["input_sha256"] == row["sha256"]  # renamed: sha256 is an output column
        if i in (2, 3):
            assert found["error_kind"] == "hash_mismatch" and found["attempts"] == 1
            assert found["error_message"].startswith(f"{algorithm} ")
            assert "the input expects" in found["error_message"]
        else:
            assert found["status"] == "ok", found


def test_a_missing_hash_column_is_one_line_and_exit_2(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("url,caption\nhttp://127.0.0.1:9/a,x\n")
    done = run_subprocess(
        "run", str(src), "-o", str(tmp_path / "out"), "--set", "input.hash_column=md5"
    )
    assert done.returncode == 2
    assert "column 'md5' (input.hash_column) not found" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
