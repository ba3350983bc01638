"""fetchshard merge against DuckDB's COPY of the same Parquet parts (issue 15, acceptance 6).

    python benchmarks/merge_speed.py [--gb 2.0] [--repeat 3] [--ranks 4] [--json OUT.json]
        [--work DIR] [--server auto|nginx|aiohttp] [--cache warm|cold] [--merge-args "..."]

Makes (once, cached in the work folder under a name keyed by its parameters) a real fetchshard
run folder of at least --gb GB (10^9 bytes) of Parquet parts: the seeded JPEG corpus served from
loopback, N unique URLs, ``python -m fetchshard run urls.txt -o RUN --ranks 4`` with
politeness limits that cannot bind on loopback. Then, for --repeat rounds in alternating
order, times as separate child processes

- ``python -m fetchshard merge RUN -o OUT`` (default options), and
- DuckDB: ``COPY (SELECT * FROM read_parquet('RUN/shards/*/*.parquet')) TO 'OUT/dup.parquet'
  (FORMAT parquet, COMPRESSION zstd)`` (its default settings),

each into a wiped folder after ``sync``: wall seconds, CPU user+sys of the process tree
(``os.wait4``), peak RSS (sampled: tree and largest process), output bytes and rows (from the
Parquet footers). Prints a table and writes one JSON with the medians, the ratios merge/DuckDB
and whether the targets hold: merge time <= 1.5 x DuckDB's, merge peak RSS <= 500 MB and below
DuckDB's. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shlex
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pyarrow
from corpus import ensure_corpus
from measure import Measurement, result_header, run_measured
from peers import count_fetchshard, fetchshard_peer, fetchshard_source
from run import _interrupt, client_env, fresh_dir
from servers import start_server
from urllist import UrlList, write_url_list

import fetchshard

HERE = Path(__file__).resolve().parent
_T0 = time.monotonic()

TIME_RATIO_TARGET = 1.5  # merge wall time <= 1.5 x DuckDB's
RSS_LIMIT_MB = 500.0  # merge peak RSS (MB, 2^20 bytes) <= 500 and below DuckDB's
# Parts bytes per URL over the corpus mean, a first guess for N (bodies are stored as they
# came: JPEGs do not shrink; the other columns add a little). Checked after the run.
_BYTES_PER_URL_OVER_MEAN = 1.0
_FETCH_ATTEMPTS = 3  # a run short of the target is redone with N scaled, at most this often

# The DuckDB side, run as ``python -c DUCKDB_SCRIPT GLOB OUT``: one COPY, default settings.
DUCKDB_SCRIPT = """\
import json, sys, time
import duckdb
glob, out = (a.replace("'", "''") for a in sys.argv[1:3])
con = duckdb.connect()
names = ("threads", "memory_limit", "preserve_insertion_order")
settings = {n: str(con.execute(f"SELECT current_setting('{n}')").fetchone()[0]) for n in names}
started = time.perf_counter()
con.execute(
    f"COPY (SELECT * FROM read_parquet('{glob}')) TO '{out}' (FORMAT parquet, COMPRESSION zstd)"
)
copy_s = time.perf_counter() - started
print(json.dumps({"duckdb": duckdb.__version__, "copy_s": copy_s, "settings": settings}))
"""


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def parquet_files(root: Path, pattern: str = "**/*.parquet") -> list[Path]:
    return sorted(p for p in root.glob(pattern) if p.is_file())


def parquet_rows(paths: list[Path]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(p).metadata.num_rows for p in paths)


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def tail(path: Path, lines: int = 8) -> list[str]:
    return path.read_text(errors="replace").strip().splitlines()[-lines:]


# --- the run folder of parts --------------------------------------------------------------


def parts_key(args: argparse.Namespace) -> str:
    return (
        f"merge-parts-{args.gb:g}gb-r{args.ranks}-h{args.hosts}-c{args.corpus_files}-s{args.seed}"
    )


def parts_summary(run_dir: Path) -> dict[str, Any]:
    parts = parquet_files(run_dir / "shards", "*/*.parquet")
    sizes = [p.stat().st_size for p in parts]
    return {
        "parts": len(parts),
        "bytes": sum(sizes),
        "rows": parquet_rows(parts),
        "ranks": len({p.parent.name for p in parts}),
        "part_bytes_min": min(sizes, default=0),
        "part_bytes_max": max(sizes, default=0),
        "tmp_files": len(list((run_dir / "shards").glob("*/*.tmp"))),
    }


def fetch_parts(
    args: argparse.Namespace, work: Path, base: Path, target: int, urls_n: int
) -> dict[str, Any]:
    """One ``fetchshard run`` of ``urls_n`` URLs into ``base / "run"``; the server is ours."""
    corpus = ensure_corpus(work, args.corpus_files, args.seed)
    run_dir = base / "run"
    fresh_dir(run_dir)
    probe = f"/img/{corpus.names[0]}"
    server = start_server(args.server, corpus.root, work, args.hosts, probe, corpus.sizes[0])
    try:
        log(f"server: {server.kind} ({server.version}), pid {server.pid}, port {server.port}")
        urls: UrlList = write_url_list(
            base / "urls.txt", corpus, server.addresses, server.port, urls_n, args.seed
        )
        peer = fetchshard_peer(args.ranks)
        argv = peer.build(urls, run_dir, work)
        log(f"fetching {urls_n:,} URLs ({urls.expected_bytes / 1e9:.2f} GB of bodies)")
        with open(base / "fetch.out", "wb") as so, open(base / "fetch.err", "wb") as se:
            m = run_measured(
                argv, timeout=peer.timeout(urls_n), stdout=so, stderr=se, env=client_env(peer)
            )
    finally:
        server.stop()
        log(f"server stopped (exit {server.proc.returncode})")
    if m.exit_code != 0 or m.timed_out:
        raise RuntimeError(
            f"fetchshard run exit {m.exit_code}{' (timed out)' if m.timed_out else ''}: "
            + "\n".join(tail(base / "fetch.err"))
        )
    counted = count_fetchshard(urls, run_dir, base / "fetch.out")
    if counted.errors or counted.detail["duplicate_rows"] or counted.detail["missing_rows"]:
        raise RuntimeError(f"the run is not clean: {counted.ok} ok of {urls_n}, {counted.detail}")
    summary = parts_summary(run_dir)
    log(
        f"fetched in {m.wall_s:.1f} s: {summary['parts']} parts, {summary['bytes'] / 1e9:.3f} GB, "
        f"{summary['rows']:,} rows"
    )
    return {
        "urls": urls_n,
        "body_bytes": urls.expected_bytes,
        "argv": argv,
        "server": {"kind": server.kind, "version": server.version, "hosts": args.hosts},
        "fetch_wall_s": round(m.wall_s, 2),
        "fetchshard_source": fetchshard_source(),
        "made": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "target_bytes": target,
        **summary,
    }


def ensure_parts(args: argparse.Namespace, work: Path) -> tuple[Path, dict[str, Any]]:
    """The cached run folder (``parts.json`` there means complete), made if missing."""
    base = work / parts_key(args)
    marker = base / "parts.json"
    run_dir = base / "run"
    target = math.ceil(args.gb * 1e9)
    if marker.exists():
        info: dict[str, Any] = json.loads(marker.read_text())
        now = parts_summary(run_dir)
        if now["bytes"] == info["bytes"] and now["parts"] == info["parts"]:
            log(f"reusing {run_dir}: {info['parts']} parts, {info['bytes'] / 1e9:.3f} GB")
            return run_dir, info
        log(f"{run_dir} changed since it was made ({now} against {info}): making it again")
        marker.unlink()
    base.mkdir(parents=True, exist_ok=True)
    corpus = ensure_corpus(work, args.corpus_files, args.seed)
    mean = statistics.fmean(corpus.sizes)
    urls_n = math.ceil(target / (mean * _BYTES_PER_URL_OVER_MEAN) * 1.01) + 100
    for attempt in range(1, _FETCH_ATTEMPTS + 1):
        info = fetch_parts(args, work, base, target, urls_n)
        if info["bytes"] >= target:
            break
        # Short of the target (more compression or a smaller mean than guessed): scale N.
        urls_n = math.ceil(urls_n * target / info["bytes"] * 1.02) + 100
        log(f"attempt {attempt}: {info['bytes']:,} bytes < {target:,}: again with {urls_n:,}")
    else:
        raise RuntimeError(f"the parts stayed below {target:,} bytes after {_FETCH_ATTEMPTS} runs")
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    tmp.replace(marker)  # written last: the marker means the run folder is complete
    return run_dir, info


def settle_cache(run_dir: Path, mode: str) -> None:
    """Both sides start alike: every part in the page cache (warm) or none of them (cold).

    The run drops each part from the cache once written (POSIX_FADV_DONTNEED), so a fresh run
    folder is cold; warm reads it once. Cold evicts its clean pages again (no root needed)."""
    for part in parquet_files(run_dir / "shards", "*/*.parquet"):
        fd = os.open(part, os.O_RDONLY)
        try:
            if mode == "warm":
                while os.read(fd, 8 << 20):
                    pass
            elif hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# --- the measured runs ------------------------------------------------------------------


def merge_argv(run_dir: Path, out: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "fetchshard", "merge", str(run_dir), "-o", str(out), *extra]


def duckdb_argv(run_dir: Path, out: Path) -> list[str]:
    glob = str(run_dir / "shards" / "*" / "*.parquet")
    return [sys.executable, "-c", DUCKDB_SCRIPT, glob, str(out / "dup.parquet")]


def count_output(tool: str, out: Path) -> dict[str, Any]:
    if tool == "duckdb":
        files = parquet_files(out)
        return {"rows": parquet_rows(files), "files": len(files)}
    data = parquet_files(out / "data")
    errors = parquet_files(out / "errors")
    rows_ok, rows_err = parquet_rows(data), parquet_rows(errors)
    counted: dict[str, Any] = {
        "rows": rows_ok + rows_err,
        "rows_data": rows_ok,
        "rows_errors": rows_err,
        "files": len(data) + len(errors),
        "files_data": len(data),
        "data_file_bytes": [p.stat().st_size for p in data],
        "card": (out / "README.md").exists(),
    }
    manifest = out / "manifest.json"
    if manifest.exists():
        doc = json.loads(manifest.read_text())
        counted["manifest"] = {"complete": doc.get("complete"), "counts": doc.get("counts")}
    return counted


def run_tool(
    tool: str,
    run_dir: Path,
    work: Path,
    round_no: int,
    cache: str,
    merge_extra: list[str],
    timeout: float,
) -> dict[str, Any]:
    out = work / "out" / tool
    prep = time.monotonic()
    settle_cache(run_dir, cache)
    fresh_dir(out)  # wipe, mkdir, sync
    prep_s = time.monotonic() - prep
    argv = (
        merge_argv(run_dir, out / "merged", merge_extra)
        if tool == "merge"
        else duckdb_argv(run_dir, out)
    )
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = logs / f"{tool}-r{round_no}.out", logs / f"{tool}-r{round_no}.err"
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        m: Measurement = run_measured(argv, timeout=timeout, stdout=so, stderr=se)
    ok = m.exit_code == 0 and not m.timed_out
    record: dict[str, Any] = {
        "tool": tool,
        "round": round_no,
        "status": "ok" if ok else ("timeout" if m.timed_out else f"exit {m.exit_code}"),
        "argv": [*argv[:2], "<script>", *argv[3:]] if tool == "duckdb" else argv,
        **m.to_dict(),
        "prepare_s": round(prep_s, 2),  # cache, wipe and sync: not in wall_s
        "output_bytes": tree_bytes(out),
    }
    record.update(count_output(tool, out / "merged" if tool == "merge" else out))
    if tool == "duckdb":
        lines = [ln for ln in stdout_path.read_text(errors="replace").splitlines() if ln[:1] == "{"]
        if lines:
            record["duckdb"] = json.loads(lines[-1])
    if not ok:
        record["stderr_tail"] = tail(stderr_path)
    shutil.rmtree(out, ignore_errors=True)
    log(
        f"{tool} round {round_no}: {record['status']}, {m.wall_s:.2f} s, CPU {m.cpu_s:.2f} s, "
        f"RSS tree {m.peak_rss_tree_mb:.0f} MB (largest {m.peak_rss_largest_mb:.0f}), "
        f"{record['output_bytes'] / 1e6:,.1f} MB out, {record['rows']:,} rows"
    )
    return record


MEDIAN_KEYS = [
    "wall_s",
    "cpu_s",
    "cpu_user_s",
    "cpu_sys_s",
    "peak_rss_tree_mb",
    "peak_rss_largest_mb",
    "output_bytes",
    "rows",
    "files",
]


def medians(runs: list[dict[str, Any]], tool: str) -> dict[str, Any]:
    done = [r for r in runs if r["tool"] == tool and r["status"] == "ok"]
    entry: dict[str, Any] = {
        "runs": sum(r["tool"] == tool for r in runs),
        "completed_runs": len(done),
    }
    for key in MEDIAN_KEYS:
        values = [r[key] for r in done]
        entry[key] = round(statistics.median(values), 3) if values else None
    return entry


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def verdict(
    med: dict[str, dict[str, Any]], runs: list[dict[str, Any]], parts: dict[str, Any]
) -> dict[str, Any]:
    merge, duck = med["merge"], med["duckdb"]
    time_ratio = _ratio(merge["wall_s"], duck["wall_s"])
    rss_ratio = _ratio(merge["peak_rss_tree_mb"], duck["peak_rss_tree_mb"])
    rows = {r["rows"] for r in runs if r["status"] == "ok"}
    all_ok = all(r["status"] == "ok" for r in runs)
    rows_match = all_ok and rows == {parts["rows"]}
    merge_complete = all(
        (r.get("manifest") or {}).get("complete") is True for r in runs if r["tool"] == "merge"
    )
    per_round = []
    for round_no in sorted({r["round"] for r in runs}):
        pair = {r["tool"]: r for r in runs if r["round"] == round_no and r["status"] == "ok"}
        if len(pair) == 2:
            per_round.append(
                {
                    "round": round_no,
                    "time_ratio": _ratio(pair["merge"]["wall_s"], pair["duckdb"]["wall_s"]),
                    "rss_ratio": _ratio(
                        pair["merge"]["peak_rss_tree_mb"], pair["duckdb"]["peak_rss_tree_mb"]
                    ),
                }
            )
    rss = merge["peak_rss_tree_mb"]
    return {
        "merge_time_over_duckdb": time_ratio,
        "merge_rss_over_duckdb": rss_ratio,
        "merge_cpu_over_duckdb": _ratio(merge["cpu_s"], duck["cpu_s"]),
        "per_round": per_round,
        "all_runs_ok": all_ok,
        "rows_parts": parts["rows"],
        "rows_match": rows_match,
        "merge_manifest_complete": merge_complete,
        "parts_bytes": parts["bytes"],
        "parts_at_least_2gb": parts["bytes"] >= 2e9,
        "targets": {
            "time_le_1_5x_duckdb": time_ratio is not None and time_ratio <= TIME_RATIO_TARGET,
            "rss_le_500mb": rss is not None and rss <= RSS_LIMIT_MB,
            "rss_below_duckdb": rss_ratio is not None and rss_ratio < 1.0,
        },
    }


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def table(med: dict[str, dict[str, Any]], v: dict[str, Any]) -> str:
    lines = [
        "| tool | wall s | CPU s (user + sys) | peak RSS MB: tree (largest process) | output MB "
        "| files | rows | runs ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool, label in (("merge", "fetchshard merge"), ("duckdb", "DuckDB COPY")):
        e = med[tool]
        out_mb = e["output_bytes"] / 1e6 if e["output_bytes"] is not None else None
        rows = int(e["rows"]) if e["rows"] is not None else None
        files = int(e["files"]) if e["files"] is not None else None
        lines.append(
            f"| {label} | {_fmt(e['wall_s'], 2)} | {_fmt(e['cpu_s'], 2)} | "
            f"{_fmt(e['peak_rss_tree_mb'], 0)} ({_fmt(e['peak_rss_largest_mb'], 0)}) | "
            f"{_fmt(out_mb)} | {_fmt(files)} | {_fmt(rows)} | "
            f"{e['completed_runs']}/{e['runs']} |"
        )
    t = v["targets"]

    def yes(flag: bool) -> str:
        return "yes" if flag else "**no**"

    lines += [
        "",
        f"merge / DuckDB: time {_fmt(v['merge_time_over_duckdb'], 2)} x (target <= "
        f"{TIME_RATIO_TARGET}: {yes(t['time_le_1_5x_duckdb'])}), peak RSS "
        f"{_fmt(v['merge_rss_over_duckdb'], 2)} x (below DuckDB's: {yes(t['rss_below_duckdb'])}"
        f"; <= {RSS_LIMIT_MB:.0f} MB: {yes(t['rss_le_500mb'])}), CPU "
        f"{_fmt(v['merge_cpu_over_duckdb'], 2)} x",
        "per round (time, RSS): "
        + ", ".join(f"{r['time_ratio']} / {r['rss_ratio']}" for r in v["per_round"]),
        f"rows: parts {v['rows_parts']:,}, every output holds them all: {yes(v['rows_match'])}"
        f" (merge manifest complete: {yes(v['merge_manifest_complete'])}); "
        f"parts {v['parts_bytes'] / 1e9:.3f} GB (>= 2 GB: {yes(v['parts_at_least_2gb'])})",
    ]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=2.0, help="parts to make, 10^9 bytes")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of both, order alternated")
    parser.add_argument("--ranks", type=int, default=4, help="ranks of the fetch making the parts")
    parser.add_argument("--json", default=str(HERE / "results" / "merge-latest.json"))
    parser.add_argument("--work", default=str(HERE / ".work"), help="corpus, parts, outputs")
    parser.add_argument("--server", choices=["auto", "nginx", "aiohttp"], default="auto")
    parser.add_argument("--hosts", type=int, default=64, help="loopback hosts 127.0.0.2...")
    parser.add_argument("--corpus-files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache",
        choices=["warm", "cold"],
        default="warm",
        help="before each run: read every part once (warm) or evict them from the page cache",
    )
    parser.add_argument(
        "--merge-args",
        default="",
        help='extra options for fetchshard merge, e.g. "--ranks 2" (default: none)',
    )
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per measured run (default: scaled)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    if args.repeat < 1 or args.gb <= 0:
        raise SystemExit("--repeat >= 1 and --gb > 0")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started_at = datetime.datetime.now().astimezone()
    run_dir, parts = ensure_parts(args, work)
    bench = work / "merge-bench"  # outputs (wiped before and after each run) and logs
    merge_extra = shlex.split(args.merge_args)
    timeout = args.timeout or max(300.0, 600.0 * parts["bytes"] / 1e9)
    runs: list[dict[str, Any]] = []
    for round_no in range(1, args.repeat + 1):
        # Alternated: merge first in odd rounds, DuckDB first in even ones.
        order = ["merge", "duckdb"] if round_no % 2 else ["duckdb", "merge"]
        for tool in order:
            runs.append(run_tool(tool, run_dir, bench, round_no, args.cache, merge_extra, timeout))
    med = {tool: medians(runs, tool) for tool in ("merge", "duckdb")}
    v = verdict(med, runs, parts)
    result: dict[str, Any] = {
        **result_header(started_at),
        "versions": {
            "fetchshard": fetchshard.__version__,
            "duckdb": duckdb.__version__,
            "pyarrow": pyarrow.__version__,
        },
        "fetchshard_source": fetchshard_source(),
        "settings": {
            "gb": args.gb,
            "repeat": args.repeat,
            "cache": args.cache,
            "merge_args": merge_extra,
            "duckdb_sql": "COPY (SELECT * FROM read_parquet('RUN/shards/*/*.parquet')) TO "
            "'OUT/dup.parquet' (FORMAT parquet, COMPRESSION zstd)",
        },
        "run_dir": str(run_dir),
        "parts": parts,
        "runs": runs,
        "medians": med,
        **v,
    }
    print(
        f"\nfetchshard merge against DuckDB COPY: {parts['parts']} parts of {parts['ranks']} "
        f"ranks, {parts['bytes'] / 1e9:.3f} GB, {parts['rows']:,} rows; medians of "
        f"{args.repeat} round(s), {args.cache} page cache; {started_at:%Y-%m-%d %H:%M %Z}\n"
    )
    print(table(med, v))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"results in {out}")
    return 0 if v["all_runs_ok"] and v["rows_match"] and v["merge_manifest_complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
