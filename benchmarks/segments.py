"""One large file over several connections (fetch.segments): fetchshard --files on a 2 GB file
behind a server that caps each connection, with one connection and with N.

    flock /tmp/bench.lock python benchmarks/segments.py [--mb 2000] [--rate 20] [--segments 8]
        [--repeat 3] [--small-mb 256] [--json benchmarks/results/segments.json] [--keep]

Makes one seeded random file of ``--mb`` MB (10^6 bytes) in ``benchmarks/.work/segments/``
and serves it from a small asyncio server in a subprocess (this script with ``--serve``:
HTTP/1.1 keep-alive, GET with one ``Range`` answered 206 with ``Content-Range``, an
``ETag``, every response paced to ``--rate`` MB/s: a CDN's per-connection cap; loopback
only). ``/file/N`` is the file's first N bytes. Then ``fetchshard run LIST -o OUT --files``
with ``input.size_column`` runs with ``fetch.segments`` 1 and ``--segments``, alternated,
``--repeat`` rounds each, the output folder wiped and ``sync`` called before each run; each
run is counted from its row (ok, size, and sha256 against the file's). Once more, the N
segments on a ``--small-mb`` prefix: the rank's peak private memory (RssAnon + RssShmem,
sampled every 20 ms) must not grow with the file. Medians, the speed ratio, the peaks go to
``--json``. The file is deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import run_measured  # noqa: E402

MB = 1000 * 1000
BLOCK = 4 * 1024 * 1024  # written and hashed per call while making the file
SEND = 256 * 1024  # the server's write per step
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


# --- the server (--serve) --------------------------------------------------------------------


async def _serve(path: Path, rate: float) -> None:
    """Serve ``path`` on a loopback port (printed as JSON on stdout) until stdin closes."""
    fd = os.open(path, os.O_RDONLY)
    size = os.fstat(fd).st_size
    tag = f'"{size}-{int(os.stat(path).st_mtime)}"'

    async def one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # keep-alive: requests one after another on this connection
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                target = lines[0].split(" ")[1]
                asked = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in lines[1:] if ":" in line)
                }
                n = min(int(target.split("?")[0].rsplit("/", 1)[1]), size)
                start, end, status = 0, n, "200 OK"
                extra = ""
                match = _RANGE.fullmatch(asked.get("range", ""))
                if match and asked.get("if-range", tag) == tag and int(match.group(1)) < n:
                    start = int(match.group(1))
                    end = min(int(match.group(2)) + 1 if match.group(2) else n, n)
                    status = "206 Partial Content"
                    extra = f"Content-Range: bytes {start}-{end - 1}/{n}\r\n"
                writer.write(
                    (
                        f"HTTP/1.1 {status}\r\nContent-Length: {end - start}\r\n"
                        f"Content-Type: application/octet-stream\r\nETag: {tag}\r\n"
                        f"Accept-Ranges: bytes\r\n{extra}\r\n"
                    ).encode()
                )
                began = time.monotonic()
                pos = start
                while pos < end:
                    chunk = os.pread(fd, min(SEND, end - pos), pos)
                    writer.write(chunk)
                    await writer.drain()
                    pos += len(chunk)
                    delay = began + (pos - start) / rate - time.monotonic()
                    if delay > 0:  # the per-connection cap
                        await asyncio.sleep(delay)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError, ValueError):
            pass  # the client left, or a request this server does not read
        finally:
            writer.close()

    server = await asyncio.start_server(one, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(json.dumps({"port": port}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the harness closes it, or dies
    server.close()


# --- the harness -----------------------------------------------------------------------------


def make_file(path: Path, mb: int, small_mb: int) -> tuple[str, str]:
    """A seeded random file of ``mb`` MB; the sha256 of all of it and of its first ``small_mb``."""
    import numpy as np

    size, small = mb * MB, small_mb * MB
    full, prefix = hashlib.sha256(), hashlib.sha256()
    rng = np.random.default_rng(2026)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        done = 0
        while done < size:
            block = rng.bytes(min(BLOCK, size - done))
            full.update(block)
            if done < small:
                prefix.update(block[: small - done])
            fh.write(block)
            done += len(block)
    return full.hexdigest(), prefix.hexdigest()


class PrivatePeak:
    """The peak private memory (RssAnon + RssShmem) and RSS high-water mark of the process
    whose command line holds ``marker``, sampled every 20 ms."""

    def __init__(self, marker: str) -> None:
        self.marker = marker.encode()
        self.private_kb = self.hwm_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> PrivatePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _find(self) -> str | None:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/cmdline", "rb") as fh:
                        cmdline = fh.read()
                except OSError:
                    continue
                if self.marker in cmdline and b"fetchshard" in cmdline:
                    return entry
        return None

    def _loop(self) -> None:
        pid = None
        while not self._stop.wait(0.02):
            pid = pid or self._find()
            if pid is None:
                continue
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                pid = None
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            kb = {k: int(v.split()[0]) for k, v in fields.items() if v.strip().endswith("kB")}
            self.private_kb = max(self.private_kb, kb.get("RssAnon", 0) + kb.get("RssShmem", 0))
            self.hwm_kb = max(self.hwm_kb, kb.get("VmHWM", 0))


def run_once(
    url: str, n: int, sha: str, segments: int, work: Path, timeout: float
) -> dict[str, Any]:
    """One fetchshard run of ``url`` (``n`` bytes) with ``segments``; what it measured."""
    out = work / f"out-{segments}"
    listing = work / f"list-{n}.csv"
    listing.write_text(f"url,bytes\n{url},{n}\n")
    shutil.rmtree(out, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    cmd = [
        sys.executable, "-m", "fetchshard", "run", str(listing), "-o", str(out), "--files",
        "--log-level", "warning",
        "--set", "input.size_column=bytes",
        "--set", f"fetch.segments={segments}",
        "--set", "fetch.segment_above=1",
        # One connection at --rate needs --mb / rate seconds: no deadline may cut it.
        "--set", f"fetch.total_timeout={timeout}",
        "--set", "fetch.read_timeout=60",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
    with PrivatePeak(str(out)) as peak:
        m = run_measured(cmd, timeout=timeout + 60, env=env)
    import pyarrow.parquet as pq

    rows = [
        r
        for part in sorted(out.glob("shards/rank-*/part-*.parquet"))
        for r in pq.read_table(part, columns=["status", "size", "sha256", "path"]).to_pylist()
    ]
    ok = (
        len(rows) == 1
        and rows[0]["status"] == "ok"
        and rows[0]["size"] == n
        and rows[0]["sha256"] == sha
        and (out / rows[0]["path"]).stat().st_size == n
    )
    shutil.rmtree(out, ignore_errors=True)
    return {
        "segments": segments,
        "mb": n / MB,
        "ok": ok,
        "exit_code": m.exit_code,
        "wall_s": round(m.wall_s, 2),
        "mb_s": round(n / MB / m.wall_s, 1),
        "cpu_s": round(m.cpu_s, 2),
        "peak_rss_mb": round(m.peak_rss_largest_mb, 1),
        "peak_private_mb": round(peak.private_kb / 1024, 1),
        "vm_hwm_mb": round(peak.hwm_kb / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=2000, help="the file's size, MB (10^6 bytes)")
    parser.add_argument("--rate", type=float, default=20.0, help="MB/s per connection")
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small-mb", type=int, default=256, help="the memory check's file")
    parser.add_argument("--work", type=Path, default=HERE / ".work" / "segments")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "segments.json")
    parser.add_argument("--keep", action="store_true", help="keep the file for another run")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        asyncio.run(_serve(args.serve, args.rate * MB))
        return

    source = args.work / f"file-{args.mb}mb.bin"
    made = time.perf_counter()
    sha, small_sha = make_file(source, args.mb, args.small_mb)
    print(f"made {source} in {time.perf_counter() - made:.1f}s", flush=True)
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(source), "--rate", str(args.rate)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    timeout = max(600.0, 3 * args.mb / args.rate)
    runs: list[dict[str, Any]] = []
    try:
        assert server.stdout is not None
        port = json.loads(server.stdout.readline())["port"]
        size = args.mb * MB
        url = f"http://127.0.0.1:{port}/file/{size}"
        for round_no in range(1, args.repeat + 1):
            for segments in (1, args.segments):
                measured = run_once(url, size, sha, segments, args.work, timeout)
                entry = {"round": round_no, **measured}
                runs.append(entry)
                print(json.dumps(entry), flush=True)
        small = args.small_mb * MB
        small_url = f"http://127.0.0.1:{port}/file/{small}"
        memory = run_once(small_url, small, small_sha, args.segments, args.work, timeout)
        print(json.dumps({"memory check": memory}), flush=True)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        if not args.keep:
            source.unlink(missing_ok=True)
    summary: dict[str, Any] = {}
    for segments in (1, args.segments):
        mine = [r for r in runs if r["segments"] == segments]
        summary[f"segments_{segments}"] = {
            "median_wall_s": statistics.median(r["wall_s"] for r in mine),
            "median_mb_s": statistics.median(r["mb_s"] for r in mine),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in mine),
            "max_peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
            "max_peak_private_mb": max(r["peak_private_mb"] for r in mine),
            "ok_runs": f"{sum(r['ok'] for r in mine)}/{len(mine)}",
        }
    one, many = summary["segments_1"], summary[f"segments_{args.segments}"]
    summary["speed_ratio"] = round(one["median_wall_s"] / many["median_wall_s"], 2)
    doc = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["python", "benchmarks/segments.py", *sys.argv[1:]]),
        "mb": args.mb,
        "rate_mb_s_per_connection": args.rate,
        "segments": args.segments,
        "repeat": args.repeat,
        "cpus": os.cpu_count(),
        "summary": summary,
        "memory_check": memory,
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
