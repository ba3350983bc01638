"""Bodies as files (output.mode files): flat memory, Range resume, checksums, a full disk,
and exactly one complete file per item after any crash."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from fetchshard.output.filenames import file_path
from server import ServerProcess
from server.routes_files import file_bytes, file_sha256
from util import (
    FAST,
    assert_exactly_once,
    fetchshard_cmd,
    read_current,
    run_subprocess,
    run_with_peak_memory,
    wait_for,
)

MiB = 1024 * 1024
FILES = ["--files", *FAST]
ONE_ATTEMPT = ["--set", "fetch.max_attempts=1", "--set", "fetch.final_pass_attempts=0"]


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _needs_disk(path: Path, need: int) -> None:
    free = _free_bytes(path)
    if free < need:
        pytest.skip(f"needs {need / 1e9:.1f} GB free in {path}, has {free / 1e9:.1f} GB")


def _partial_bytes(out: Path) -> int:
    return sum(p.stat().st_size for p in (out / "partial").glob("rank-*/*.part"))


def _kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], timeout: float = 60) -> None:
    """SIGKILL ``proc`` once ``ready()``; fail if it ends first."""
    wait_for(ready, proc, timeout)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _start(src: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), *FILES, *extra),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _files_under(out: Path) -> set[str]:
    root = out / "files"
    return {p.relative_to(out).as_posix() for p in root.rglob("*") if p.is_file()}


def _check_files(out: Path, expected: dict[str, tuple[int, str]]) -> dict[str, dict[str, object]]:
    """Every ok row's file is in place, whole, its own, named as documented; nothing else is
    under files/ and no transfer is left unfinished. ``expected``: url -> (size, sha256)."""
    rows = {r["url"]: r for r in read_current(out).to_pylist()}
    ok = {url: row for url, row in rows.items() if row["status"] == "ok"}
    assert all(row["body"] is None for row in ok.values()), "a file's body is in a part"
    assert _files_under(out) == {row["path"] for row in ok.values()}
    root = (out / "files").resolve()
    for url, row in ok.items():
        path = out / row["path"]
        assert path.resolve().is_relative_to(root)
        assert row["path"] == f"files/{file_path(url)}"
        size, sha = expected[url]
        assert row["size"] == size == path.stat().st_size
        assert row["sha256"] == sha == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not list((out / "partial").glob("rank-*/*")), "an unfinished transfer was left"
    return rows


def test_a_1_gb_file_is_fetched_in_flat_memory(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    _needs_disk(tmp_path, 2_500_000_000)
    n = 1024 * MiB
    url = server_process.url(f"/file/{n}/big.bin")
    out = tmp_path / "out"
    code, stderr, private, rss = run_with_peak_memory(
        "run", str(url_file([url])), "-o", str(out), *FILES, timeout=300
    )
    assert code == 0, stderr
    # The rank's own memory (a 1 GiB body would be 1,024 MB of it); its RSS also counts
    # shared-library pages mapped from the page cache: 120-122 MB here, 150-158 in a venv
    # pip has just written (util.run_with_peak_memory), the same 43 MB private at import.
    assert private < 150, f"peak private memory {private:.0f} MB (RSS {rss:.0f} MB)"
    assert rss < 200, f"peak RSS {rss:.0f} MB (private {private:.0f} MB)"
    _check_files(out, {url: (n, file_sha256(n))})


def test_a_transfer_killed_mid_way_resumes_from_its_part(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    _needs_disk(tmp_path, 1_200_000_000)
    n = 500 * MiB
    url = server_process.url(f"/file/{n}/half.bin?pace=0.0002")
    src, out = url_file([url]), tmp_path / "out"
    _kill_when(_start(src, out), lambda: _partial_bytes(out) >= 150 * MiB)
    kept = _partial_bytes(out)
    assert 150 * MiB <= kept < n
    server_process.clear_requests()
    done = run_subprocess("run", str(src), "-o", str(out), *FILES, timeout=300)
    assert done.returncode == 0, done.stderr
    # The second run asked for exactly the bytes the .part lacked.
    assert server_process.file_bytes() == {f"/file/{n}/half.bin": n - kept}
    rows = _check_files(out, {url: (n, file_sha256(n))})
    assert rows[url]["http_status"] == 206


@pytest.mark.parametrize("change", ["ignores_range", "file_changed"])
def test_a_resume_the_server_cannot_honour_restarts_cleanly(
    change: str, server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    n = 100 * MiB
    query = "?pace=0.001&norange=1" if change == "ignores_range" else "?pace=0.001"
    url = server_process.url(f"/file/{n}/{change}.bin{query}")
    src, out = url_file([url]), tmp_path / "out"
    _kill_when(_start(src, out), lambda: _partial_bytes(out) >= 20 * MiB)
    version = 1 if change == "file_changed" else 0
    server_process.clear_requests()
    server_process.set_file_version(version)
    try:
        done = run_subprocess("run", str(src), "-o", str(out), *FILES, timeout=120)
    finally:
        server_process.set_file_version(0)
    assert done.returncode == 0, done.stderr
    assert server_process.file_bytes() == {f"/file/{n}/{change}.bin": n}  # all of it again
    rows = _check_files(out, {url: (n, file_sha256(n, version))})
    assert rows[url]["http_status"] == 200 and rows[url]["attempts"] == 1


@pytest.mark.parametrize("algorithm", ["sha256", "md5", "sha1"])
def test_a_wrong_checksum_or_size_fails_as_checksum_mismatch_after_every_attempt(
    algorithm: str, server_process: ServerProcess, tmp_path: Path
) -> None:
    sizes = [300_000, 200_000, 100_000, 50_000]
    urls = [server_process.url(f"/file/{n}/c{i}-{algorithm}.bin") for i, n in enumerate(sizes)]
    good = [hashlib.new(algorithm, file_bytes(n)).hexdigest() for n in sizes]
    checksums = [good[0], "0" * len(good[1]), good[2], ""]  # right, wrong, right, unchecked
    expect_sizes = ["300000", "200000", "99999", ""]  # right, right, wrong, unchecked
    src = tmp_path / "files.csv"
    table = pa.table({"url": urls, "checksum": checksums, "bytes": expect_sizes})
    pacsv.write_csv(table, src)
    out = tmp_path / "out"
    settings = [
        "--set", "input.checksum_column=checksum",
        "--set", f"input.checksum_algorithm={algorithm}",
        "--set", "input.size_column=bytes",
        "--set", "fetch.max_attempts=2",
        "--set", "fetch.final_pass_attempts=1",
        "--set", "fetch.final_pass_delay=0",
    ]  # fmt: skip
    done = run_subprocess("run", str(src), "-o", str(out), *FILES, *settings)
    assert done.returncode == 0, done.stderr
    expected = {
        u: (n, hashlib.sha256(file_bytes(n)).hexdigest()) for u, n in zip(urls, sizes, strict=True)
    }
    rows = _check_files(out, expected)
    assert [rows[u]["status"] for u in urls] == ["ok", "failed", "failed", "ok"]
    for url in urls[1:3]:
        assert rows[url]["error_kind"] == "checksum_mismatch" and rows[url]["attempts"] == 3
        assert rows[url]["path"] is None
    assert "the input expects 0000" in rows[urls[1]]["error_message"]
    assert rows[urls[2]]["error_message"] == "100,000 bytes, the input expects 99,999"
    if algorithm != "sha256":
        assert rows[urls[0]][algorithm] == good[0]
    else:
        assert algorithm not in ("md5", "sha1")


def test_a_suspiciously_small_file_is_too_small_and_retried(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    urls = [server_process.url("/file/10/tiny.bin"), server_process.url("/file/5000/fine.bin")]
    out = tmp_path / "out"
    settings = ["--set", "fetch.min_body_bytes=1000", "--set", "fetch.max_attempts=2"]
    done = run_subprocess("run", str(url_file(urls)), "-o", str(out), *FILES, *settings)
    assert done.returncode == 0, done.stderr
    rows = _check_files(out, {urls[1]: (5000, file_sha256(5000))})
    assert rows[urls[0]]["error_kind"] == "too_small" and rows[urls[0]]["attempts"] == 3
    assert rows[urls[0]]["error_message"] == "10 bytes, below fetch.min_body_bytes (1,000)"


@contextlib.contextmanager
def _small_disk(path: Path, size: str) -> Iterator[bool]:
    """A tmpfs of ``size`` at ``path`` where this process may mount one; else False."""
    path.mkdir()
    mounted = False
    if os.geteuid() == 0 and shutil.which("mount"):
        got = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            check=False,
        )
        mounted = got.returncode == 0
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_stops_the_rank_with_one_line_and_a_rerun_completes_once(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    sizes = [4 * MiB + i for i in range(10)]  # 40 MiB on a disk of 24 MiB
    urls = [server_process.url(f"/file/{n}/full{i}.bin") for i, n in enumerate(sizes)]
    src = url_file(urls)
    with _small_disk(tmp_path / "disk", "24m") as mounted:
        out = tmp_path / "disk" / "out"
        env = {} if mounted else {"_FETCHSHARD_FAULT": "enospc:12"}  # the 12th 1 MiB write
        done = run_subprocess(
            "run", str(src), "-o", str(out), *FILES, "--set", "fetch.max_in_flight=2", env=env
        )
        assert done.returncode == 1, done.stderr
        last = done.stderr.strip().splitlines()[-1]
        assert "disk full" in last and "free space and rerun" in last, done.stderr
        assert "Traceback" not in done.stderr
        committed = len(read_current(out))
        assert committed < len(urls)
        if mounted:  # free space: a bigger disk under the same folder
            subprocess.run(["mount", "-o", "remount,size=200m", str(tmp_path / "disk")], check=True)
        again = run_subprocess("run", str(src), "-o", str(out), *FILES)
        assert again.returncode == 0, again.stderr
        assert assert_exactly_once(out) == len(urls)
        expected = {u: (n, file_sha256(n)) for u, n in zip(urls, sizes, strict=True)}
        rows = _check_files(out, expected)
        assert all(r["status"] == "ok" for r in rows.values())


def test_a_file_list_killed_at_random_moments_ends_with_every_file_once(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    rng = random.Random(18)
    sizes = [rng.randrange(64 * 1024, 768 * 1024) for _ in range(200)]
    urls = [
        server_process.url(f"/file/{n}/d{i % 7}/f{i}.bin?pace=0.08", host=i % 3)
        for i, n in enumerate(sizes)
    ]
    src, out = url_file(urls), tmp_path / "out"
    small = ["--set", "output.part_max_rows=10", "--set", "fetch.max_in_flight=12"]
    kills = 0
    for _ in range(5):
        proc = subprocess.Popen(
            fetchshard_cmd("run", str(src), "-o", str(out), *FILES, *small),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(1.0, 2.5))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
    assert kills == 5, "a run finished before it was killed: make the files slower"
    done = run_subprocess("run", str(src), "-o", str(out), *FILES, *small, timeout=180)
    assert done.returncode == 0, done.stderr
    assert assert_exactly_once(out) == len(urls)
    rows = _check_files(out, {u: (n, file_sha256(n)) for u, n in zip(urls, sizes, strict=True)})
    assert all(r["status"] == "ok" for r in rows.values())


def _pattern_sha(n: int) -> str:
    from server.bodies import PATTERN, pattern_chunks

    digest = hashlib.sha256()
    for size in pattern_chunks(n):
        digest.update(PATTERN[:size])
    return digest.hexdigest()


def test_in_parquet_mode_only_bodies_above_the_threshold_go_to_files(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    small = server_process.url("/big/50000?t=small")
    large = server_process.url("/big/3000000?t=large")
    streamed = server_process.url("/big-nolength/2000000?t=streamed")  # no Content-Length
    out = tmp_path / "out"
    done = run_subprocess(
        "run", str(url_file([small, large, streamed])), "-o", str(out), *FAST,
        "--set", "output.body_file_above=1000000",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = {r["url"]: r for r in read_current(out).to_pylist()}
    assert rows[small]["body"] is not None and rows[small]["path"] is None
    assert hashlib.sha256(rows[small]["body"]).hexdigest() == _pattern_sha(50000)
    expected = {
        large: (3_000_000, _pattern_sha(3_000_000)),
        streamed: (2_000_000, _pattern_sha(2_000_000)),
    }
    for url in (large, streamed):
        assert rows[url]["body"] is None and rows[url]["path"] is not None
    assert _files_under(out) == {rows[large]["path"], rows[streamed]["path"]}
    for url, (size, sha) in expected.items():
        path = out / rows[url]["path"]
        assert path.stat().st_size == rows[url]["size"] == size
        assert hashlib.sha256(path.read_bytes()).hexdigest() == rows[url]["sha256"] == sha


def test_retry_failed_and_merge_work_on_files_as_on_parts(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    import pyarrow.parquet as pq

    fine = server_process.url("/file/40000/fine.bin")
    flaky = server_process.url("/flaky/files-retry/1")  # 503 once, then "ok"
    src, out = url_file([fine, flaky]), tmp_path / "out"
    first = run_subprocess("run", str(src), "-o", str(out), *FILES, *ONE_ATTEMPT)
    assert first.returncode == 0, first.stderr
    rows = _check_files(out, {fine: (40000, file_sha256(40000))})
    assert rows[flaky]["error_kind"] == "http_5xx" and rows[flaky]["path"] is None
    server_process.clear_requests()
    again = run_subprocess(
        "run", str(src), "-o", str(out), *FILES, *ONE_ATTEMPT, "--retry-failed", "all"
    )
    assert again.returncode == 0, again.stderr
    assert [r["path"] for r in server_process.requests()] == ["/flaky/files-retry/1"]
    rows = _check_files(
        out,
        {fine: (40000, file_sha256(40000)), flaky: (2, hashlib.sha256(b"ok").hexdigest())},
    )
    assert rows[flaky]["status"] == "ok"  # one current row per item, the failure superseded
    merged = run_subprocess("merge", str(out))
    assert merged.returncode == 0, merged.stderr
    data = pq.read_table(next((out / "merged" / "data").glob("*.parquet"))).to_pylist()
    assert sorted((r["url"], r["path"]) for r in data) == sorted(
        (u, rows[u]["path"]) for u in (fine, flaky)
    )
