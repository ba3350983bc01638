"""Throughput of fetchshard against its peers on a loopback image server (issue 5).

    python benchmarks/run.py --urls 50000 [--repeat 3] [--peers fetchshard,bare,curl,...]
        [--scale 10000,100000,1000000] [--json out.json] [--work DIR]

Generates (once) a seeded JPEG corpus, serves it from nginx (or an aiohttp fallback) on 64
loopback hosts, writes N unique shuffled URLs, runs every peer in alternation for --repeat
rounds, and prints medians and ratios to fetchshard. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from corpus import Corpus, ensure_corpus
from measure import machine_busy_cpu, result_header, run_measured, session_cpu
from peers import (
    FETCHSHARD_UNLIMITED,
    PEER_NAMES,
    Peer,
    fetchshard_peer,
    fetchshard_source,
    make_peer,
    snapshot_fetchshard,
)
from report import medians, peer_table, scale_summary, scale_table
from servers import Server, start_server
from urllist import UrlList, write_parquet_urls, write_url_list

HERE = Path(__file__).resolve().parent
_T0 = time.monotonic()
# fetchshard's planner logs this once the rank's slice is in its ledger (planning/rank.py).
PLANNED_LINE = re.compile(r"\bplanned \d+ of \d+ input rows")


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def client_env(peer: Peer) -> dict[str, str]:
    env = dict(os.environ)
    # A proxy from the environment must never see loopback traffic.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(var, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.0/8,localhost"
    env.update(peer.env)
    return env


def fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    # The previous run's dirty pages must not be written back during this one.
    os.sync()


def run_once(
    peer: Peer, urls: UrlList, server: Server, work: Path, round_no: int, keep_output: bool
) -> dict[str, Any]:
    prep_started = time.monotonic()
    out = work / "out" / peer.name
    fresh_dir(out)
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    stdout_path = logs / f"{peer.name}-{len(urls)}-r{round_no}.out"
    stderr_path = logs / f"{peer.name}-{len(urls)}-r{round_no}.err"
    argv = peer.build(urls, out, work)
    prep_s = time.monotonic() - prep_started
    source = peer.source
    if source is None and peer.name.startswith("fetchshard"):
        source = fetchshard_source()
    server_cpu0, busy0 = session_cpu(server.pid), machine_busy_cpu()
    with open(stdout_path, "wb") as so, open(stderr_path, "wb") as se:
        m = run_measured(
            argv, timeout=peer.timeout(len(urls)), stdout=so, stderr=se, env=client_env(peer)
        )
    server_cpu, busy = session_cpu(server.pid) - server_cpu0, machine_busy_cpu() - busy0
    counted = peer.count(urls, out, stdout_path)
    if not keep_output:
        shutil.rmtree(out, ignore_errors=True)
    status = "timeout" if m.timed_out else "ok"
    n = len(urls)
    record: dict[str, Any] = {
        "peer": peer.name,
        "round": round_no,
        "urls": n,
        "status": status,
        "argv": argv,
        **m.to_dict(),
        "ok": counted.ok,
        "errors": counted.errors,
        "bytes": counted.bytes,
        "urls_per_s": round(counted.ok / m.wall_s, 1),
        "mb_per_s": round(counted.bytes / 1e6 / m.wall_s, 1),
        "cpu_s_per_1000": round(m.cpu_s / n * 1000, 4),
        # the kernel's share: storing bodies costs page-cache writes and fsync, which a client
        # that discards them does not pay
        "sys_s_per_1000": round(m.cpu_sys_s / n * 1000, 4),
        "detail": counted.detail,
        "fetchshard_source": source,
        "prepare_s": round(prep_s, 1),  # wipe, sync, input files: not in wall_s
        "server_cpu_s": round(server_cpu, 2),
        # Busy CPU of the whole machine minus client and server: the harness itself and
        # anything else running (another benchmark disturbs the figures; this shows it).
        "other_cpu_s": round(busy - m.cpu_s - server_cpu, 2),
        "other_cores": round((busy - m.cpu_s - server_cpu) / m.wall_s, 2),
        "loadavg_after": os.getloadavg()[0],
    }
    if m.exit_code != 0:
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
        record["stderr_tail"] = tail
    log(
        f"{peer.name} round {round_no}: {counted.ok}/{n} ok, {m.wall_s:.1f} s, "
        f"{record['urls_per_s']:.0f} URLs/s, CPU {m.cpu_s:.1f} s "
        f"(sampled {m.cpu_sampled_s:.1f}), RSS tree {m.peak_rss_tree_mb:.0f} MB, "
        f"server CPU {server_cpu:.1f} s, other CPU {record['other_cpu_s']:.1f} s, "
        f"exit {m.exit_code}{' TIMEOUT' if m.timed_out else ''}"
    )
    return record


def run_peers(
    peers: list[Peer],
    urls: UrlList,
    server: Server,
    per_peer_urls: dict[str, int],
    work: Path,
    repeat: int,
    keep_output: bool,
) -> list[dict[str, Any]]:
    lists = {
        p.name: urls.head(per_peer_urls[p.name], work / f"urls-{per_peer_urls[p.name]}.txt")
        if p.name in per_peer_urls
        else urls
        for p in peers
    }
    runs: list[dict[str, Any]] = []
    # Round-robin: a drift of the machine (another job, thermal) hits every peer alike.
    for round_no in range(1, repeat + 1):
        for peer in peers:
            if peer.unavailable is None:
                runs.append(run_once(peer, lists[peer.name], server, work, round_no, keep_output))
    return runs


def plan_once(n: int, parquet: Path, work: Path, round_no: int, peer: Peer) -> dict[str, Any]:
    """Seconds from process start to fetchshard's "planned ..." line, then stop the run."""
    out = work / "out" / "plan"
    fresh_dir(out)
    argv = [sys.executable, "-m", "fetchshard", "run", str(parquet), "-o", str(out)]
    argv += [*FETCHSHARD_UNLIMITED, "--log-level", "info"]
    lines: list[str] = []
    m = run_measured(
        argv,
        timeout=max(300.0, n / 500),
        stop_on_line=PLANNED_LINE,
        stderr_sink=lines.append,
        env=client_env(peer),
    )
    shutil.rmtree(out, ignore_errors=True)
    record: dict[str, Any] = {
        "urls": n,
        "round": round_no,
        "planned_s": m.marker_s,
        "rows_per_s": round(n / m.marker_s, 1) if m.marker_s else None,
        "peak_rss_tree_mb": m.peak_rss_tree_mb,
        "peak_rss_largest_mb": m.peak_rss_largest_mb,
        "planned_line": next((ln.strip() for ln in lines if PLANNED_LINE.search(ln)), None),
    }
    if m.marker_s is None:
        record["stderr_tail"] = [ln.rstrip() for ln in lines[-5:]]
    return record


def run_scale(
    sizes: list[int],
    server: Server,
    corpus: Corpus,
    work: Path,
    repeat: int,
    store_body: str,
    keep_output: bool,
    snapshot: tuple[Path, str] | None,
) -> dict[str, Any]:
    mean_size = sum(corpus.sizes) / len(corpus.sizes)
    needed = max(sizes) * mean_size * 1.2
    free = shutil.disk_usage(work).free
    keep_bodies = store_body == "yes" or (store_body == "auto" and needed < free)
    peer = fetchshard_peer(1, snapshot)
    if not keep_bodies:
        base_build = peer.build
        peer.build = lambda u, o, w: [*base_build(u, o, w), "--set", "output.store_body=false"]
    lists = {
        n: write_url_list(work / f"urls-scale-{n}.txt", corpus, server.addresses, server.port, n)
        for n in sizes
    }
    runs: list[dict[str, Any]] = []
    for round_no in range(1, repeat + 1):
        for n in sizes:
            runs.append(run_once(peer, lists[n], server, work, round_no, keep_output))
    # Planning alone: a Parquet input of N URLs; a 1-row input gives the start-up cost.
    plans: list[dict[str, Any]] = []
    one = work / "plan-1.parquet"
    write_parquet_urls(one, lists[sizes[0]].urls[:1])
    plan_once(1, one, work, 0, peer)  # warm-up, discarded: the first start reads cold files
    startup = [plan_once(1, one, work, r, peer)["planned_s"] for r in range(1, repeat + 1)]
    startup_s = sorted(s for s in startup if s is not None)
    start_med = startup_s[len(startup_s) // 2] if startup_s else None
    for n in sizes:
        parquet = work / f"plan-{n}.parquet"
        write_parquet_urls(parquet, lists[n].urls)
        for round_no in range(1, repeat + 1):
            rec = plan_once(n, parquet, work, round_no, peer)
            if rec["planned_s"] and start_med is not None and rec["planned_s"] > start_med:
                rec["rows_per_s_net"] = round(n / (rec["planned_s"] - start_med), 1)
            plans.append(rec)
            log(f"planning {n} rows round {round_no}: {rec['planned_s']} s")
    summary = scale_summary(runs, plans)
    summary["store_body"] = keep_bodies
    summary["startup_planned_s_1_row"] = start_med
    if not keep_bodies:
        summary["note"] = (
            f"output.store_body=false: bodies of {max(sizes):,} URLs (~{needed / 1e9:.0f} GB) "
            f"would not fit the {free / 1e9:.0f} GB free"
        )
    return {"runs": runs, "plans": plans, "summary": summary}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=50_000, help="URLs per run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over all peers")
    parser.add_argument("--peers", default=",".join(PEER_NAMES), help="comma-separated")
    parser.add_argument(
        "--peer-urls",
        action="append",
        default=[],
        metavar="PEER=N",
        help="fewer URLs for a slow peer (its first N), e.g. img2dataset-default=20000",
    )
    parser.add_argument(
        "--scale",
        default="",
        help="sizes, e.g. 10000,100000,1000000: run the fetchshard scale series instead",
    )
    parser.add_argument(
        "--scale-store-body",
        choices=["auto", "yes", "no"],
        default="auto",
        help="keep bodies in the scale series (auto: only if the largest run fits the disk)",
    )
    parser.add_argument("--json", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--work", default=str(HERE / ".work"), help="corpus, venvs, outputs")
    parser.add_argument("--server", choices=["auto", "nginx", "aiohttp"], default="auto")
    parser.add_argument("--hosts", type=int, default=64, help="loopback hosts 127.0.0.2...")
    parser.add_argument("--corpus-files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-output", action="store_true", help="do not delete outputs")
    parser.add_argument(
        "--fetchshard-src",
        default="live",
        metavar="live|REV",
        help="live: the installed fetchshard as it is on disk; REV (e.g. HEAD): that commit's "
        "src/, so edits during the benchmark do not change what runs",
    )
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also run each fetchshard peer from commit REV, in the same rounds (an A/B): "
        "listed as fetchshard@REV, its ratios taken to the fetchshard under test",
    )
    return parser.parse_args(argv)


def with_baseline(
    names: list[str], peers: list[Peer], work: Path, rev: str
) -> tuple[list[str], list[Peer], str]:
    """Each fetchshard peer followed by its twin from ``rev``, so a round runs both in turn."""
    base = snapshot_fetchshard(rev, work)
    log(f"baseline fetchshard from commit {base[1]} ({base[0]})")
    out_names: list[str] = []
    out_peers: list[Peer] = []
    for name, peer in zip(names, peers, strict=True):
        out_names.append(name)
        out_peers.append(peer)
        if name.startswith("fetchshard"):
            twin = make_peer(name, work, log, base)
            twin.name = f"{name}@{base[1][:7]}"
            out_names.append(twin.name)
            out_peers.append(twin)
    return out_names, out_peers, base[1]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM, and SIGINT even where a background shell ignores it, unwind like Ctrl-C: the
    # running client's group is killed and the server stopped (they have sessions of their own).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    names = [p.strip() for p in args.peers.split(",") if p.strip()]
    per_peer_urls = {k: int(v) for k, _, v in (s.partition("=") for s in args.peer_urls)}
    scale = [int(s) for s in args.scale.split(",") if s.strip()]
    started_at = datetime.datetime.now().astimezone()

    log(f"corpus ({args.corpus_files} JPEGs) in {work}")
    corpus = ensure_corpus(work, args.corpus_files, args.seed)
    log(f"corpus: {corpus.summary()}")
    snapshot = None
    if args.fetchshard_src != "live":
        snapshot = snapshot_fetchshard(args.fetchshard_src, work)
        log(f"fetchshard from commit {snapshot[1]} ({snapshot[0]})")
    peers = [make_peer(name, work, log, snapshot) for name in names]
    baseline = None
    if args.baseline:
        names, peers, baseline = with_baseline(names, peers, work, args.baseline)
    for p in peers:
        if p.unavailable:
            log(f"{p.name}: {p.unavailable}")
    unavailable = {p.name: p.unavailable for p in peers if p.unavailable}

    probe = f"/img/{corpus.names[0]}"
    server = start_server(args.server, corpus.root, work, args.hosts, probe, corpus.sizes[0])
    try:
        log(
            f"server: {server.kind} ({server.version}), pid {server.pid}, port {server.port}, "
            f"{len(server.addresses)} hosts {server.addresses[0]}…{server.addresses[-1]}"
        )
        urls = write_url_list(
            work / "urls.txt", corpus, server.addresses, server.port, args.urls, args.seed
        )
        # The scale series is a run of its own: it measures fetchshard alone.
        runs = (
            []
            if scale
            else run_peers(peers, urls, server, per_peer_urls, work, args.repeat, args.keep_output)
        )
        scale_result = (
            run_scale(
                scale,
                server,
                corpus,
                work,
                args.repeat,
                args.scale_store_body,
                args.keep_output,
                snapshot,
            )
            if scale
            else None
        )
    finally:
        server.stop()
        log(f"server stopped (exit {server.proc.returncode})")

    med = medians(runs)
    result: dict[str, Any] = {
        **result_header(started_at),
        "server": server.describe(),
        "fetchshard_src": snapshot[1] if snapshot else "live",
        "fetchshard_baseline": baseline,
        "corpus": corpus.summary(),
        "urls": args.urls,
        "repeat": args.repeat,
        "peers": {
            p.name: {
                "description": p.description,
                "version": p.version,
                "unavailable": p.unavailable,
                "urls": per_peer_urls.get(p.name, args.urls),
            }
            for p in peers
        },
        "runs": runs,
        "medians": med,
    }
    if runs:
        print(
            f"\n{args.urls:,} URLs, medians of {args.repeat} run(s); server {server.kind} "
            f"({server.version}); {started_at:%Y-%m-%d %H:%M %Z}\n"
        )
        print(peer_table(names, med, unavailable))
    if scale_result is not None:
        result["scale"] = scale_result
        print("\nfetchshard scale series (1 rank)\n")
        print(scale_table(scale_result["summary"]))
        if "note" in scale_result["summary"]:
            print(f"\n{scale_result['summary']['note']}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
