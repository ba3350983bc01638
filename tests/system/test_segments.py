"""One large file over several connections (fetch.segments, output/segments.py): the ranges a
run asks, a server that ignores Range, a cut range, a kill -9 midway, a corrupted range."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from server import Generated, HubProcess, HubRepo, ServerProcess
from server.routes_files import file_bytes, file_sha256
from util import FAST, fetchshard_cmd, read_current, run_subprocess, wait_for

MiB = 1024 * 1024
SEGMENTS = [
    "--files",
    *FAST,
    "--set", "input.size_column=bytes",
    "--set", "fetch.segments=4",
    "--set", "fetch.segment_above=1000000",
]  # fmt: skip


def _list(tmp_path: Path, urls: list[str], sizes: list[int | None], **columns: list[str]) -> Path:
    """A CSV file list: url, bytes (empty: unknown), and any other columns."""
    src = tmp_path / "files.csv"
    bytes_ = ["" if n is None else str(n) for n in sizes]
    pacsv.write_csv(pa.table({"url": urls, "bytes": bytes_, **columns}), src)
    return src


def _rows(out: Path) -> dict[str, dict[str, Any]]:
    return {r["url"]: r for r in read_current(out).to_pylist()}


def _check_file(out: Path, row: dict[str, Any], n: int) -> None:
    assert row["status"] == "ok", row["error_message"]
    data = (out / row["path"]).read_bytes()
    assert row["size"] == len(data) == n
    assert row["sha256"] == hashlib.sha256(data).hexdigest() == file_sha256(n)


def _ranges(server: ServerProcess, name: str) -> list[str | None]:
    """The Range header of each request for the /file/ called ``name``, in order."""
    return [r["range"] for r in server.requests() if r["path"].split("?")[0].endswith(name)]


def _span(header: str) -> tuple[int, int]:
    first, last = header.removeprefix("bytes=").split("-")
    return int(first), int(last)


def test_a_large_file_comes_whole_as_ranges_and_small_or_unsized_ones_as_one_get(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.clear_requests()
    n, small, unsized = 6 * MiB + 123, 500_000, 3 * MiB
    sizes = {"large.bin": n, "small.bin": small, "unsized.bin": unsized}
    urls = [server_process.url(f"/file/{k}/{name}") for name, k in sizes.items()]
    out = tmp_path / "out"
    done = run_subprocess(
        "run", str(_list(tmp_path, urls, [n, small, None])), "-o", str(out), *SEGMENTS
    )
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    for url, size in zip(urls, sizes.values(), strict=True):
        _check_file(out, rows[url], size)
    asked = sorted(_span(h) for h in _ranges(server_process, "large.bin") if h is not None)
    assert len(asked) >= 4 and len(_ranges(server_process, "large.bin")) == len(asked)
    assert asked[0][0] == 0 and asked[-1][1] == n - 1  # the whole file, each byte once
    assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(asked))
    assert _ranges(server_process, "small.bin") == [None]  # below segment_above: one GET
    assert _ranges(server_process, "unsized.bin") == [None]  # no size: no probe, one GET
    assert server_process.file_bytes() == {
        f"/file/{n}/large.bin": n,
        f"/file/{small}/small.bin": small,
        f"/file/{unsized}/unsized.bin": unsized,
    }
    assert not list((out / "partial").glob("rank-*/*")), "an unfinished transfer was left"


def test_a_server_that_ignores_range_still_gives_the_whole_file(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.clear_requests()
    n = 5 * MiB
    url = server_process.url(f"/file/{n}/norange.bin?norange=1")
    out = tmp_path / "out"
    done = run_subprocess("run", str(_list(tmp_path, [url], [n])), "-o", str(out), *SEGMENTS)
    assert done.returncode == 0, done.stderr
    _check_file(out, _rows(out)[url], n)
    # The first range went alone; its 200 brought the whole file and no other connection.
    assert len(_ranges(server_process, "norange.bin")) == 1
    assert server_process.file_bytes() == {f"/file/{n}/norange.bin": n}


def test_a_cut_range_goes_on_from_its_last_byte(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.clear_requests()
    n, cut = 6 * MiB, 300_000
    url = server_process.url(f"/file/{n}/cut.bin?cut={cut}")  # the first response: 300 kB
    out = tmp_path / "out"
    done = run_subprocess("run", str(_list(tmp_path, [url], [n])), "-o", str(out), *SEGMENTS)
    assert done.returncode == 0, done.stderr
    row = _rows(out)[url]
    _check_file(out, row, n)
    assert row["attempts"] == 1  # asked again inside the attempt, not by the job
    asked = _ranges(server_process, "cut.bin")
    assert len(asked) == 5
    first, again = _span(asked[0] or ""), _span(asked[-1] or "")
    assert first[0] == 0 and again == (cut, first[1])  # that range only, past its start
    assert server_process.file_bytes() == {f"/file/{n}/cut.bin": n}  # no byte twice


def _recorded(out: Path) -> tuple[int, list[tuple[int, int, int]]]:
    """The claimed bytes and ranges of the one segmented record under partial/."""
    for meta in (out / "partial").glob("rank-*/*.json"):
        try:
            doc = json.loads(meta.read_bytes())
        except (OSError, ValueError):  # replaced or removed as it was read
            continue
        if doc.get("segments"):
            spans = [(a, b, d) for a, b, d in doc["segments"]]
            return sum(d for _, _, d in spans), spans
    return 0, []


def test_a_run_killed_midway_resumes_each_range_from_its_record(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.clear_requests()
    n = 8 * MiB
    url = server_process.url(f"/file/{n}/killed.bin?pace=0.05")  # 1.3 MB/s a connection
    src, out = _list(tmp_path, [url], [n]), tmp_path / "out"
    proc = subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), *SEGMENTS),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: _recorded(out)[0] >= MiB, proc, timeout=30)  # a range's first write
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    claimed, spans = _recorded(out)  # the record as the kill left it
    assert MiB <= claimed < n
    part = next((out / "partial").glob("rank-*/*.part")).read_bytes()
    for start, _last, done in spans:  # it claims only bytes that are in the file
        assert part[start : start + done] == file_bytes(n, 0, start, start + done)
    time.sleep(0.3)  # the server's handlers see their client gone before the count is reset
    server_process.clear_requests()
    again = run_subprocess("run", str(src), "-o", str(out), *SEGMENTS)
    assert again.returncode == 0, again.stderr
    _check_file(out, _rows(out)[url], n)
    assert server_process.file_bytes() == {f"/file/{n}/killed.bin": n - claimed}
    asked = sorted(_span(h or "") for h in _ranges(server_process, "killed.bin"))
    assert asked == sorted((a + d, b) for a, b, d in spans if a + d <= b)


def test_a_corrupted_range_is_a_checksum_mismatch_fetched_again(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.clear_requests()
    n = 4 * MiB
    once = server_process.url(f"/file/{n}/corrupt-once.bin?corrupt=1")
    always = server_process.url(f"/file/{n}/corrupt-always.bin?corrupt=100")
    sha = file_sha256(n)
    src = _list(tmp_path, [once, always], [n, n], sha256=[sha, sha])
    out = tmp_path / "out"
    checked = [
        "--set", "input.checksum_column=sha256",
        "--set", "fetch.max_attempts=2",
        "--set", "fetch.final_pass_attempts=0",
    ]  # fmt: skip
    done = run_subprocess("run", str(src), "-o", str(out), *SEGMENTS, *checked)
    assert done.returncode == 0, done.stderr
    rows = _rows(out)
    _check_file(out, rows[once], n)
    assert rows[once]["attempts"] == 2  # the first attempt's file failed its checksum
    assert server_process.file_bytes()[f"/file/{n}/corrupt-once.bin"] == 2 * n  # from scratch
    bad = rows[always]
    assert bad["status"] == "failed" and bad["error_kind"] == "checksum_mismatch"
    assert bad["attempts"] == 2 and bad["path"] is None
    assert {p.name for p in (out / "files").rglob("*") if p.is_file()} == {
        Path(rows[once]["path"]).name
    }
    assert not list((out / "partial").glob("rank-*/*")), "an unfinished transfer was left"


def test_a_file_above_segment_max_bytes_is_ranges_even_with_one_segment(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.clear_requests()
    n = 3 * MiB + 1
    url = server_process.url(f"/file/{n}/limit.bin")
    out = tmp_path / "out"
    limit = ["--set", "fetch.segments=1", "--set", f"fetch.segment_max_bytes={MiB}"]
    done = run_subprocess(
        "run", str(_list(tmp_path, [url], [n])), "-o", str(out), *SEGMENTS, *limit
    )
    assert done.returncode == 0, done.stderr
    _check_file(out, _rows(out)[url], n)
    asked = [_span(h or "") for h in _ranges(server_process, "limit.bin")]
    assert len(asked) == 4 and all(last - first + 1 <= MiB for first, last in asked)
    # One connection: each range asked only after the one before it (in file order).
    assert asked == sorted(asked)


def test_an_hf_file_comes_as_ranges_each_through_the_hub_with_the_token_only_there(
    tmp_path: Path,
) -> None:
    token = "hf_right_token_0123456789abcdef"
    big = Generated(3_000_000, 11)
    repo = HubRepo("ns/ranges", {"main": {"big.bin": big, "a.txt": b"a"}}, tokens=[token])
    with HubProcess([repo], tmp_path / "hub.log", page_size=3) as hub:
        hub.cut_next(1, after=200_000)  # the first CDN answer: that range goes on from there
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING_FACE"))}
        env.update(HF_ENDPOINT=hub.endpoint, HF_HOME=str(tmp_path / "home"), HF_TOKEN=token)
        out = tmp_path / "mirror"
        cmd = fetchshard_cmd(
            "run", "hf://datasets/ns/ranges", "-o", str(out), "--set", "hub.rate=200",
            "--set", "fetch.segments=4", "--set", "fetch.segment_above=1000000",
        )  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-3000:]
        cdn, hub_requests = hub.requests("cdn"), hub.requests("hub")
    assert (out / "big.bin").read_bytes() == big.data()
    blob = [r for r in cdn if r["range"] is not None]
    assert len(blob) == 5  # four ranges, one of them cut and asked again from its last byte
    assert sorted(_span(r["range"])[0] for r in blob)[:2] == [0, 200_000]
    assert all(r["auth"] is None for r in cdn)  # the token never reaches the CDN
    resolves = [r for r in hub_requests if "/resolve/" in r["path"] and r["method"] == "GET"]
    assert len(resolves) >= 5 and all(r["auth"] == "Bearer hf_r***" for r in resolves)


def test_a_full_disk_mid_file_stops_the_rank_and_the_rerun_resumes_the_ranges(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    server_process.clear_requests()
    n = 8 * MiB
    url = server_process.url(f"/file/{n}/full.bin")
    src, out = _list(tmp_path, [url], [n]), tmp_path / "out"
    env = {"_FETCHSHARD_FAULT": "enospc:3"}  # the third 1 MiB write and every later one
    done = run_subprocess("run", str(src), "-o", str(out), *SEGMENTS, env=env)
    assert done.returncode == 1, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "disk full" in last and "free space and rerun" in last, done.stderr
    assert "Traceback" not in done.stderr
    claimed, _spans = _recorded(out)
    assert 0 < claimed < n  # what was written before the disk filled is kept
    time.sleep(0.3)  # the server's handlers see their client gone before the count is reset
    server_process.clear_requests()
    again = run_subprocess("run", str(src), "-o", str(out), *SEGMENTS)
    assert again.returncode == 0, again.stderr
    _check_file(out, _rows(out)[url], n)
    assert server_process.file_bytes() == {f"/file/{n}/full.bin": n - claimed}
