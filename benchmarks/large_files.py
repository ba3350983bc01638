"""Large files to disk: fetchshard --files against curl --parallel and aria2c (issue 18).

    python benchmarks/large_files.py [--files 20] [--mib 100] [--repeat 3] [--json OUT.json]

Makes (once, in benchmarks/.work/large/) ``--files`` seeded random files of ``--mib`` MiB,
serves them from nginx (1 worker, sendfile; the aiohttp server where nginx is missing) on
one loopback host, and runs each client round-robin for ``--repeat`` rounds, the output
folder wiped and ``sync`` called before each run (outside the timing). Every client writes
the files to disk; each is counted from what it left: files of the right size (fetchshard:
its rows too, and each file's sha256 against the corpus's). Wall time is Popen to reaped.

- `fetchshard`: `fetchshard run LIST -o OUT --files`, with limits that cannot bind on
  loopback (each file fsynced before its row counts, the default);
- `fetchshard-nofsync`: the same with `output.fsync_files=false` (curl and aria2c do not fsync);
- `curl`: `curl --parallel --parallel-max N -s -S --fail --config FILE` (`url =`/`output =`);
- `aria2c`: `aria2c -j N -x 1 --auto-save-interval=0 --file-allocation=none -i LIST -d OUT`;
- `aria2c-x4`: the same with `-x 4 -s 4 -k 8M`: four ranges per file, aria2's way with big files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from measure import run_measured  # noqa: E402
from servers import start_server  # noqa: E402

MiB = 1024 * 1024
CHUNK = 4 * MiB


def make_corpus(folder: Path, files: int, mib: int) -> dict[str, str]:
    """``files`` files of ``mib`` MiB (seeded); their sha256 by name, made once."""
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / f"manifest-{files}x{mib}.json"
    if manifest.exists():
        return dict(json.loads(manifest.read_text()))
    import numpy as np

    digests: dict[str, str] = {}
    for i in range(files):
        name = f"f{i:02d}-{mib}m.bin"
        rng = np.random.default_rng(i)
        digest = hashlib.sha256()
        with open(folder / name, "wb") as fh:
            for _ in range(mib * MiB // CHUNK):
                block = rng.bytes(CHUNK)
                digest.update(block)
                fh.write(block)
        digests[name] = digest.hexdigest()
    manifest.write_text(json.dumps(digests, indent=1))
    return digests


def _fetchshard(fsync: bool) -> Callable[[list[str], Path, Path], list[str]]:
    def build(urls: list[str], out: Path, scratch: Path) -> list[str]:
        src = scratch / "urls.txt"
        src.write_text("".join(f"{u}\n" for u in urls))
        return [
            sys.executable, "-m", "fetchshard", "run", str(src), "-o", str(out), "--files",
            "--per-host-rate", "1000000", "--set", "fetch.per_host_burst=1000",
            "--set", f"fetch.per_host_concurrency={len(urls)}", "--log-level", "warning",
            "--set", f"output.fsync_files={'true' if fsync else 'false'}",
        ]  # fmt: skip

    return build


def _curl(urls: list[str], out: Path, scratch: Path) -> list[str]:
    config = scratch / "curl.cfg"
    out.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "".join(f'url = "{u}"\noutput = "{out / u.rsplit("/", 1)[1]}"\n' for u in urls)
    )
    return ["curl", "--parallel", "--parallel-max", str(len(urls)), "-s", "-S", "--fail",
            "--config", str(config)]  # fmt: skip


def _aria2c(ranges: int) -> Callable[[list[str], Path, Path], list[str]]:
    def build(urls: list[str], out: Path, scratch: Path) -> list[str]:
        listing = scratch / "aria2.txt"
        listing.write_text("".join(f"{u}\n" for u in urls))
        cmd = ["aria2c", "-j", str(len(urls)), "-x", str(ranges), "--auto-save-interval=0",
               "--file-allocation=none", "--quiet", "-i", str(listing), "-d", str(out)]  # fmt: skip
        if ranges > 1:
            cmd += ["-s", str(ranges), "-k", "8M"]
        return cmd

    return build


PEERS: dict[str, tuple[Callable[[list[str], Path, Path], list[str]], str | None]] = {
    "fetchshard": (_fetchshard(True), None),
    "fetchshard-nofsync": (_fetchshard(False), None),
    "curl": (_curl, "curl"),
    "aria2c": (_aria2c(1), "aria2c"),
    "aria2c-x4": (_aria2c(4), "aria2c"),
}


def _count(name: str, out: Path, digests: dict[str, str], size: int) -> tuple[int, str]:
    """Files of the right size (fetchshard: rows ok and every sha256 right)."""
    if name.startswith("fetchshard"):
        import pyarrow.parquet as pq

        rows = [
            r
            for part in sorted(out.glob("shards/rank-*/part-*.parquet"))
            for r in pq.read_table(part, columns=["status", "path", "sha256", "size"]).to_pylist()
        ]
        good = 0
        for r in rows:
            path = out / r["path"] if r["path"] else None
            if r["status"] == "ok" and path and path.stat().st_size == size:
                good += r["sha256"] == digests[path.name]
        return good, f"{len(rows)} rows"
    files = [p for p in out.rglob("*.bin") if p.is_file()]
    return sum(p.stat().st_size == size for p in files), f"{len(files)} files"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--server", default="auto", choices=("auto", "nginx", "aiohttp"))
    parser.add_argument("--work", type=Path, default=HERE / ".work" / "large")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "large-files.json")
    parser.add_argument("--timeout", type=float, default=600.0)
    args = parser.parse_args()

    corpus = args.work / "corpus"
    digests = make_corpus(corpus, args.files, args.mib)
    size = args.mib * MiB
    names = sorted(digests)
    server = start_server(args.server, corpus, args.work, 1, f"/{names[0]}", size)
    results: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    try:
        urls = [server.url(server.addresses[0], f"/{n}") for n in names]
        peers = [p for p in args.peers.split(",") if p]
        for peer in peers:
            tool = PEERS[peer][1]
            if tool is not None and shutil.which(tool) is None:
                skipped[peer] = f"{tool} is not installed"
        for round_no in range(1, args.repeat + 1):
            for peer in peers:
                if peer in skipped:
                    continue
                out = args.work / "out" / peer
                scratch = args.work / "scratch" / peer
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(scratch, ignore_errors=True)
                scratch.mkdir(parents=True)
                cmd = PEERS[peer][0](urls, out, scratch)
                subprocess.run(["sync"], check=False)
                env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src")}
                m = run_measured(cmd, timeout=args.timeout, env=env)
                good, seen = _count(peer, out, digests, size)
                entry = {
                    "round": round_no,
                    "wall_s": round(m.wall_s, 3),
                    "cpu_s": round(m.cpu_s, 3),
                    "exit_code": m.exit_code,
                    "files_ok": good,
                    "seen": seen,
                    "mb_s": round(good * size / 1e6 / m.wall_s, 1),
                    "peak_rss_tree_mb": round(m.peak_rss_tree_mb, 1),
                }
                results.setdefault(peer, []).append(entry)
                print(f"round {round_no} {peer:20s} {json.dumps(entry)}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        server.stop()
    summary = {}
    for peer, runs in results.items():
        complete = [r for r in runs if r["files_ok"] == args.files]
        summary[peer] = {
            "median_wall_s": statistics.median(r["wall_s"] for r in runs),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
            "median_mb_s": statistics.median(r["mb_s"] for r in runs),
            "complete_runs": f"{len(complete)}/{len(runs)}",
        }
    others = [summary[p]["median_wall_s"] for p in ("curl", "aria2c", "aria2c-x4") if p in summary]
    if others and "fetchshard" in summary:
        best = min(others)
        for peer in ("fetchshard", "fetchshard-nofsync"):
            if peer in summary:
                summary[peer]["wall_vs_fastest_peer"] = round(
                    summary[peer]["median_wall_s"] / best, 3
                )
    doc = {
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "files": args.files,
        "mib": args.mib,
        "repeat": args.repeat,
        "server": f"{server.kind} {server.version}".strip(),
        "notes": server.notes,
        "skipped": skipped,
        "summary": summary,
        "runs": results,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
