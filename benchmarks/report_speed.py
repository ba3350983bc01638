"""``fetchshard report`` on synthetic run folders of 400 and 4,000 ranks (issue 16, "Fast").

    python benchmarks/report_speed.py [--ranks 400,4000] [--repeat 3] [--json OUT.json]
        [--work DIR] [--items-per-rank 2500] [--seed 0] [--cache warm|cold]
        [--profile OUT.pstats]

Makes (once per size, cached in ``WORK/report-N/``, ``synthetic.json`` there when complete) a
run folder of N ranks written with fetchshard's own writers: ``run.json`` as a rank writes it
(``claim_run_folder`` with the real fingerprint of a small URL list), and per rank what a real
rank of a 10-million-URL job would have left at some point of it:

- done (~71 %): a progress snapshot (state ``done``), its RankStats and its DoneMarker;
- running (~17 %), waiting (~3 %: nothing in flight, ``waiting`` set, nothing committed in its
  last two minutes), planning (~1 %): a snapshot, and its lock held by one helper process
  (POSIX locks belong to a process, so the harness cannot hold them itself); a fifth of the
  running ranks are on a second session (``committed_before``), and every live rank has an
  open part (rows written, not yet committed);
- hung (~0.5 %): lock held, snapshot 15 minutes old (the report calls it dead);
- stopped (~3 %): snapshot ``interrupted``, RankStats (not complete), lock free, a ledger;
- dead (~3 %): snapshot ``fetching``, no stats, lock free, a ledger without its open part;
- not started (~1.5 %): nothing at all.

Snapshots carry 256 history samples, errors, HTTP statuses, content types, size buckets and
the worst hosts with their samples (20-40 a rank, as ``Stats.to_dict`` keeps them: a rank's
hosts are its own but for 8 it shares with its 16-rank group, as ``partition.spread`` 16
would). Ledgers are real (``Ledger``: the slice planned, its committed rows in parts of 500)
but small (``--items-per-rank``) and only where ``report`` reads them (stopped and dead
ranks); done and running ranks get none, nor logs or parts, which ``report`` never opens.
Every started rank has its lock file. Writes are not fsynced.

Then for each size, ``--repeat`` times (the live ranks' snapshots re-dated to "just now"
before each, untimed, so their states hold however old the cache is):

- the command, ``python -m fetchshard report DIR --json`` with stdout to /dev/null, as a child
  of a small launcher process (so its ``ru_maxrss`` is not the harness's high-water mark):
  wall seconds (fork to reaped), CPU user + sys and peak RSS from ``os.wait4``, and the CPU
  the rest of the machine used meanwhile (``other load``);
- in-process, in this interpreter (imports done): ``collect(RunFolder(DIR))``, ``summarize``
  and the JSON encoding (``Report.to_bytes``) timed apart (wall and CPU).

Medians of the repeats. ``--cache warm`` (default) measures with the folder in the page cache
(just written or read by the previous run): "local disk" here means warm cache. ``--cache
cold`` asks the kernel to drop the folder's pages (``posix_fadvise DONTNEED`` after ``sync``)
before every timed run; dentries and inodes stay cached either way.

Prints a table and writes one JSON (``--json``, default ``benchmarks/results/report-latest.json``)
with every run, the medians, the rank states expected and reported (they must match) and the
verdict on the targets: the command under 2 s at 400 ranks and under 10 s at 4,000.
``--profile FILE`` also runs ``build_report`` + JSON once under cProfile on the largest size,
writes the pstats to FILE and prints the top functions (also in the JSON). Exit 1 when a run
failed or the states do not match; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime
import io
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from measure import evict_folder, machine_busy_cpu

import fetchshard
from fetchshard.config import load_config, to_plain
from fetchshard.ledger import Ledger, PlannedItem
from fetchshard.planning.fingerprint import claim_run_folder, fingerprint
from fetchshard.ranks import RankInfo
from fetchshard.reporting.collect import RANK_STATES, collect
from fetchshard.reporting.summary import summarize
from fetchshard.reporting.timeline import RATE_WINDOW
from fetchshard.runfolder.documents import (
    DoneMarker,
    ProgressHistory,
    ProgressSnapshot,
    RankStats,
)
from fetchshard.runfolder.layout import RunPaths, ledger_paths
from fetchshard.runfolder.lock import rank_lock
from fetchshard.runfolder.view import RunFolder
from fetchshard.stats import HostCounts, Stats, worst_hosts
from fetchshard.urls import item_id, item_key

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
_T0 = time.monotonic()

GENERATOR = 5  # bump when the synthetic folder changes: cached folders are rebuilt
TARGETS_S = {400: 2.0, 4000: 10.0}  # issue 16: the command's wall time at these sizes
# Fractions of the ranks per state (the rest is done), rounded, at least one each from 20 ranks.
MIX = {
    "running": 0.17,
    "waiting": 0.03,
    "planning": 0.01,
    "stopped": 0.03,
    "dead": 0.03,
    "hung": 0.005,
    "not started": 0.015,
}
ALIVE = ("running", "waiting", "planning")
HELD = (*ALIVE, "hung")  # their locks are held by the helper
HUNG_AGE_S = 900.0
HISTORY = 256
INTERVAL = 5.0  # run.progress_interval
PART_ROWS = 500
GROUP = 16  # ranks sharing a host (partition.spread)
GROUP_HOSTS = 8  # hosts a rank shares with its group
LOCAL_HOSTS = 52  # hosts of its own that something happened to

ERRORS = {  # error kind: (weight, HTTP status or None, message)
    "http_404": (40, 404, "ClientResponseError: 404, message='Not Found'"),
    "http_4xx": (15, 403, "ClientResponseError: 403, message='Forbidden'"),
    "connect": (10, None, "ClientConnectorError: Cannot connect to host {host}:443 ssl:default"),
    "dns": (10, None, "ClientConnectorDNSError: Cannot connect to host {host}:443"),
    "timeout": (8, None, "total timeout of 30 s"),
    "http_5xx": (6, 503, "ClientResponseError: 503, message='Service Unavailable'"),
    "read_timeout": (4, None, "no byte for 15 s"),
    "tls": (3, None, "ClientConnectorCertificateError: certificate verify failed"),
    "bad_content": (2, 200, "ContentLengthError: Not enough data for satisfy content length"),
    "too_large": (1, 200, "body above 50000000 bytes"),
    "bad_url": (1, None, "URL has no host"),
}
CONTENT_TYPES = {"image/jpeg": 70, "image/png": 15, "image/webp": 8, "image/gif": 3, "text/html": 2}
SIZE_BUCKETS = {12: 2, 13: 4, 14: 8, 15: 14, 16: 22, 17: 26, 18: 15, 19: 6, 20: 2, 21: 1}

# The launcher: runs its command with stdout to /dev/null, reaps it with wait4, prints JSON.
LAUNCHER = """\
import json, os, subprocess, sys, time
with open(sys.argv[1], "wb") as err:
    started = time.perf_counter()
    proc = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
proc.returncode = os.waitstatus_to_exitcode(status)
print(json.dumps({"wall_s": wall, "exit_code": proc.returncode, "cpu_user_s": usage.ru_utime,
                  "cpu_sys_s": usage.ru_stime, "peak_rss_mb": usage.ru_maxrss / 1024}))
"""

# The helper holding the live ranks' locks (argv: folder, JSON list of ranks) until stdin ends.
HOLDER = """\
import contextlib, json, resource, sys
from pathlib import Path
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.lock import rank_lock
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
paths = RunPaths(Path(sys.argv[1]))
with contextlib.ExitStack() as stack:
    for rank in json.loads(sys.argv[2]):
        stack.enter_context(rank_lock(paths.lock(rank), rank, wait=0))
    print("held", flush=True)
    sys.stdin.read()
"""


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the synthetic folder


def assign_states(world_size: int, seed: int) -> list[str]:
    counts = {
        state: max(1, round(frac * world_size)) if world_size >= 20 else round(frac * world_size)
        for state, frac in MIX.items()
    }
    states = [s for s, n in counts.items() for _ in range(n)]
    states += ["done"] * (world_size - len(states))
    random.Random(seed).shuffle(states)
    return states


def expected_report_states(states: list[str]) -> dict[str, int]:
    """The rank states ``report`` must show for the states written (hung ranks are dead)."""
    shown = Counter("dead" if s == "hung" else s for s in states)
    return {s: shown.get(s, 0) for s in RANK_STATES}


def _weighted(rng: random.Random, table: dict[Any, Any], total: int) -> Counter[Any]:
    """``total`` split over the keys of ``table`` by weight (first element if a tuple)."""
    keys = list(table)
    weights = [table[k][0] if isinstance(table[k], tuple) else table[k] for k in keys]
    return Counter(rng.choices(keys, weights, k=total)) if total else Counter()


def rank_hosts(rank: int) -> list[str]:
    group = rank // GROUP
    shared = [f"cdn{group * GROUP_HOSTS + k}.images-example.com" for k in range(GROUP_HOSTS)]
    return shared + [f"img{k}.site{rank}-example.org" for k in range(LOCAL_HOSTS)]


def rank_stats(
    rng: random.Random, rank: int, written: int, failed_kinds: Counter[str], seconds: float
) -> Stats:
    """A session's counters as ``Stats.count_row``/``count_throttled`` would have left them."""
    failed = sum(failed_kinds.values())
    ok = written - failed
    stats = Stats(items=written, ok=ok, failed=failed, seconds=round(seconds, 3))
    stats.retries = int(written * rng.uniform(0.02, 0.08))
    stats.requests = written + stats.retries
    stats.deferred = int(failed * 0.2)
    stats.rate_decreases, stats.rate_increases = rng.randint(0, 30), rng.randint(0, 60)
    stats.host_cooldowns, stats.hosts_unreachable = rng.randint(0, 8), rng.randint(0, 3)
    stats.errors = Counter(failed_kinds)
    for kind, n in failed_kinds.items():
        status = ERRORS[kind][1]
        if status is not None:
            stats.http_status[str(status)] += n
    stats.http_status["200"] += ok  # and the failures answered 200 (bad_content...) above
    stats.content_types = _weighted(rng, CONTENT_TYPES, ok)
    buckets = _weighted(rng, SIZE_BUCKETS, ok)
    stats.sizes = Counter({str(b): n for b, n in buckets.items()})
    stats.bytes = sum(int(2 ** (b - 0.5)) * n for b, n in buckets.items())
    hosts = rank_hosts(rank)
    # Failures over the hosts (a few hosts take most), throttling on some of them.
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(hosts))]
    rng.shuffle(weights)
    for kind, n in failed_kinds.items():
        for host, count in Counter(rng.choices(hosts, weights, k=n)).items():
            counts = stats.hosts.setdefault(host, HostCounts())
            counts.failures += count
            counts.errors[kind] += count
            while len(counts.samples) < 3 and len(counts.samples) < counts.failures:
                url = f"https://{host}/media/{rng.getrandbits(48):012x}/image.jpg"
                counts.samples.append((url, ERRORS[kind][2].format(host=host)))
    for host in rng.sample(hosts, 25):
        counts = stats.hosts.setdefault(host, HostCounts())
        counts.throttled += rng.randint(0, 40)
        counts.parked_s += round(rng.expovariate(1 / 120.0), 3)
    return stats


def history(
    rng: random.Random,
    samples: int,
    started: float,
    step: float,
    before: int,
    written: int,
    committed: int,
    mean_size: float,
    stalled_s: float = 0.0,
) -> ProgressHistory:
    """``written`` rows of this session over ``samples`` samples ``step`` apart from
    ``started`` at a rate that drifts, committed in parts of PART_ROWS (``committed`` at the
    end); nothing in the last ``stalled_s`` seconds."""
    rates = [max(0.05, 1.0 + 0.35 * rng.gauss(0, 1)) for _ in range(samples - 1)]
    stalled = min(int(stalled_s // step) + 1, samples - 2) if stalled_s else 0
    rates[len(rates) - stalled :] = [0.0] * stalled
    scale = written / sum(rates)
    out = ProgressHistory()
    out.append(round(started + rng.uniform(0.01, 0.2), 3), before, before, 0)
    total = 0.0
    for i, rate in enumerate(rates, 1):
        total += rate * scale
        last = i == samples - 1
        rows = written if last else min(round(total), written)
        done = committed if last else before + rows // PART_ROWS * PART_ROWS
        t = round(started + i * step + rng.uniform(0, 0.05), 3)
        out.append(t, done, max(done, before + rows), int(rows * mean_size))
    return out


def write_ledger(
    path: Path,
    rank: int,
    planned: int,
    committed: int,
    failed_kinds: Counter[str],
    fp: dict[str, Any],
    rng: random.Random,
) -> None:
    """A small real ledger: ``planned`` items, the first ``committed`` of them (by id)
    committed in parts of PART_ROWS, the failures among them of ``failed_kinds``."""
    hosts = rank_hosts(rank)
    items = []
    for i in range(planned):
        host = hosts[i % len(hosts)]
        url = f"https://{host}/media/{rank}-{i}/image.jpg"
        items.append(PlannedItem(item_id(item_key(url, None)), item_id(host) or 1, host, url, None))
    kinds = [k for k, n in failed_kinds.items() for _ in range(n)]
    kinds += [None] * (committed - len(kinds))
    rng.shuffle(kinds)
    ids = sorted(it.item_id for it in items)[:committed]
    with Ledger(ledger_paths(path)) as ledger:
        ledger.meta.fingerprint = fp
        ledger.insert_items(items)  # a complete plan: meta.planned
        for part, start in enumerate(range(0, committed, PART_ROWS), 1):
            rows = [(ids[j], 1, kinds[j]) for j in range(start, min(start + PART_ROWS, committed))]
            ledger.commit_part(
                part, rows, rows=len(rows), nbytes=len(rows) * 80_000, now=time.time()
            )
        if committed > PART_ROWS:  # as a resumed rank would have: the first parts folded
            ledger.fold_commits()


def write_rank(
    paths: RunPaths,
    rank: int,
    world_size: int,
    state: str,
    items_per_rank: int,
    fp: dict[str, Any],
    settings: dict[str, Any],
    now: float,
    seed: int,
) -> None:
    rng = random.Random(seed * 1_000_003 + rank)
    if state == "not started":
        return
    # Every started rank has taken its lock once: the lock file exists (it is never removed).
    with rank_lock(paths.lock(rank), rank, wait=0):
        pass
    planned = round(items_per_rank * rng.uniform(0.98, 1.02))
    fail_rate = rng.uniform(0.04, 0.12) if rng.random() < 0.9 else rng.uniform(0.2, 0.4)
    step = INTERVAL * 2 ** rng.choice((1, 2, 2, 3))  # the history's step after doubling
    if state == "planning":
        snap = ProgressSnapshot(rank=rank, world_size=world_size, started_at=now - 14.0)
        snap.state, snap.input_rows, snap.interval = "planning", rng.randint(10**6, 9 * 10**6), 5.0
        for t in (0.05, 5.01, 10.02):
            snap.history.append(snap.started_at + t, 0, 0, 0)
        snap.updated_at = now - 3.0
        snap.write(paths.progress(rank))
        return
    fraction = {"done": 1.0, "stopped": rng.uniform(0.2, 0.8), "dead": rng.uniform(0.1, 0.7)}
    fetched = round(planned * fraction.get(state, rng.uniform(0.3, 0.9)))
    # A fifth of the live ranks are on a second session: part of their work came before.
    second = state in ALIVE and rng.random() < 0.2
    before = round(fetched * rng.uniform(0.2, 0.5)) if second else 0
    written = fetched - before  # rows of this session
    # Done and stopped ranks committed every row they wrote; the others have an open part
    # (a dead rank lost it: its ledger has the committed parts only).
    whole = state in ("done", "stopped")
    committed = fetched if whole else before + written // PART_ROWS * PART_ROWS
    failed_before_kinds = _weighted(rng, ERRORS, round(before * fail_rate))
    failed_kinds = _weighted(rng, ERRORS, round(written * fail_rate))
    duration = (HISTORY - 1) * step
    stats = rank_stats(rng, rank, written, failed_kinds, duration)
    end = {"done": now - rng.uniform(60, 3600), "stopped": now - rng.uniform(300, 1800)}
    updated = end.get(state, now - (HUNG_AGE_S if state == "hung" else rng.uniform(0.2, 4.0)))
    started = updated - duration
    snap = ProgressSnapshot(
        rank=rank,
        world_size=world_size,
        started_at=started,
        history_step=step,
        interval=INTERVAL,
    )
    snap.state = {"done": "done", "stopped": "interrupted"}.get(state, "fetching")
    snap.updated_at = updated
    snap.total, snap.committed, snap.input_rows = planned, committed, planned * world_size
    snap.committed_before = before
    snap.errors_before = dict(failed_before_kinds)
    snap.failed_before = sum(failed_before_kinds.values())
    snap.written, snap.ok, snap.failed = stats.items, stats.ok, stats.failed
    snap.requests, snap.retries, snap.bytes = stats.requests, stats.retries, stats.bytes
    snap.urls_per_s = round(written / duration, 1)
    snap.errors, snap.http_status = dict(stats.errors), dict(stats.http_status)
    snap.content_types, snap.sizes = dict(stats.content_types), dict(stats.sizes)
    # A rank's last snapshot leaves its hosts to its stats document (engine/progress.py).
    final = state in ("done", "stopped")
    snap.hosts = {} if final else {h: c.to_dict() for h, c in worst_hosts(stats.hosts).items()}
    mean_size = stats.bytes / max(written, 1)
    # A waiting rank has committed nothing for a while (report: no rate over its last minute).
    stalled = 2 * RATE_WINDOW if state == "waiting" else 0.0
    snap.history = history(
        rng, HISTORY, started, step, before, written, committed, mean_size, stalled
    )
    if state in ALIVE or state == "hung":
        snap.in_flight, snap.active_hosts = rng.randint(200, 512), rng.randint(40, 300)
    if state == "waiting":
        snap.in_flight = 0
        host = rank_hosts(rank)[0]
        snap.waiting = (
            f"{host} parked (Retry-After), {rng.randint(5, 90)} items waiting, "
            f"next try in {rng.randint(5, 120)}s"
        )
    snap.write(paths.progress(rank))
    if state in ("done", "stopped"):
        RankStats(
            rank=rank,
            world_size=world_size,
            complete=state == "done",
            stats=stats,
            written_at=updated,
            settings=settings,
            command=["fetchshard", "run", "urls.parquet", "-o", "out", "--ranks", "8"],
        ).write(paths.stats(rank))
    if state == "done":
        DoneMarker(rank=rank, world_size=world_size, items=planned, completed_at=updated).write(
            paths.done(rank)
        )
    if state in ("stopped", "dead"):
        # The ledger holds what the rank committed: its failures among them (all of them for
        # a stopped rank; a dead one lost those of its open part).
        kinds = [k for k, n in sorted(failed_kinds.items()) for _ in range(n)]
        rng.shuffle(kinds)
        kept = Counter(kinds[: round(len(kinds) * committed / max(written, 1))])
        write_ledger(paths.ledger(rank), rank, planned, committed, kept, fp, rng)


def folder_key(args: argparse.Namespace, world_size: int) -> dict[str, Any]:
    return {
        "generator": GENERATOR,
        "world_size": world_size,
        "seed": args.seed,
        "items_per_rank": args.items_per_rank,
    }


def ensure_folder(args: argparse.Namespace, work: Path, world_size: int) -> dict[str, Any]:
    """The cached synthetic folder of ``world_size`` ranks, made first if missing or stale."""
    base = work / f"report-{world_size}"
    marker = base / "synthetic.json"
    key = folder_key(args, world_size)
    if marker.exists():
        info: dict[str, Any] = json.loads(marker.read_text())
        if info.get("key") == key:
            log(f"{world_size} ranks: cached folder {base / 'run'}")
            info["built_s"] = None
            return info
    shutil.rmtree(base, ignore_errors=True)
    run = base / "run"
    run.mkdir(parents=True)
    log(f"{world_size} ranks: writing the synthetic folder {run}")
    started = time.perf_counter()
    urls = base / "urls.txt"  # what the fingerprint names: a real (small) URL list
    urls.write_text("".join(f"https://img{k}.example.org/{k}.jpg\n" for k in range(1000)))
    config = load_config(environ={}, overrides={"input.paths": [str(urls)], "output.dir": str(run)})
    fp = fingerprint(config, [urls], world_size)
    paths = RunPaths(run)
    claim_run_folder(paths, fp, RankInfo(0, world_size, "benchmark"), restart=False)
    settings = to_plain(config)
    states = assign_states(world_size, args.seed)
    now = time.time()
    for rank, state in enumerate(states):
        write_rank(
            paths, rank, world_size, state, args.items_per_rank, fp, settings, now, args.seed
        )
    files = [p for p in run.rglob("*") if p.is_file()]
    info = {
        "key": key,
        "folder": str(run),
        "states": states,
        "expected": expected_report_states(states),
        "ledgers": sum(1 for s in states if s in ("stopped", "dead")),
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "built_s": round(time.perf_counter() - started, 1),
        "written_at": now,
    }
    marker.write_text(json.dumps(info, indent=1) + "\n")
    mb = info["bytes"] / 1e6
    log(f"{world_size} ranks: {info['files']} files, {mb:.1f} MB in {info['built_s']} s")
    return info


def redate_live(run: Path, states: list[str]) -> None:
    """Make the live ranks' snapshots fresh again (the hung ranks' stay old), as their ranks
    would by now: the same snapshot, ``updated_at`` a few seconds ago."""
    paths = RunPaths(run)
    now = time.time()
    for rank, state in enumerate(states):
        if state not in HELD:
            continue
        path = paths.progress(rank)
        snap = ProgressSnapshot.read(path)
        assert snap is not None, path
        age = HUNG_AGE_S if state == "hung" else random.Random(rank).uniform(0.2, 4.0)
        shift = now - age - snap.updated_at
        snap.updated_at += shift
        snap.started_at += shift
        snap.history.time = [round(t + shift, 3) for t in snap.history.time]
        snap.write(path)


@contextlib.contextmanager
def hold_locks(run: Path, states: list[str]) -> Any:
    """A helper process holding the locks of the live and hung ranks for the block."""
    ranks = [r for r, s in enumerate(states) if s in HELD]
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run), json.dumps(ranks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "held":
            raise RuntimeError(f"the lock holder did not take the locks (exit {proc.wait()})")
        yield proc
    finally:
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the helper exits, the OS releases the locks
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ------------------------------------------------------------------ the measurements


def run_command(run: Path, work: Path, timeout: float) -> dict[str, Any]:
    """``python -m fetchshard report RUN --json > /dev/null``, measured by the launcher."""
    err = work / "report-stderr.txt"
    cmd = [sys.executable, "-S", "-c", LAUNCHER, str(err)]
    cmd += [sys.executable, "-m", "fetchshard", "report", str(run), "--json"]
    busy = machine_busy_cpu()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    busy = machine_busy_cpu() - busy
    if done.returncode != 0:
        raise RuntimeError(f"the launcher failed: {done.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(done.stdout)
    out["cpu_s"] = out["cpu_user_s"] + out["cpu_sys_s"]
    out["other_load_cores"] = round(max(busy - out["cpu_s"], 0.0) / out["wall_s"], 2)
    if out["exit_code"] != 0:
        out["stderr"] = err.read_text(errors="replace")[-2000:]
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def run_in_process(run: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """collect, summarize and the JSON encoding of ``build_report``, timed apart."""
    marks = [(time.perf_counter(), time.process_time())]
    found = collect(RunFolder(run))
    marks.append((time.perf_counter(), time.process_time()))
    report = summarize(found)
    marks.append((time.perf_counter(), time.process_time()))
    data = report.to_bytes()
    marks.append((time.perf_counter(), time.process_time()))
    out: dict[str, Any] = {}
    for i, name in enumerate(("collect", "summarize", "json")):
        out[f"{name}_s"] = round(marks[i + 1][0] - marks[i][0], 3)
        out[f"{name}_cpu_s"] = round(marks[i + 1][1] - marks[i][1], 3)
    out["total_s"] = round(marks[-1][0] - marks[0][0], 3)
    out["total_cpu_s"] = round(marks[-1][1] - marks[0][1], 3)
    out["json_bytes"] = len(data)
    return out, dict(report.ranks.states)


def profile(run: Path, out: Path, top: int = 25) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    summarize(collect(RunFolder(run))).to_bytes()
    profiler.disable()
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    print(text.getvalue(), file=sys.stderr)
    rows = []
    for (file, line, func), (_, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append(
            {
                "function": f"{Path(file).name}:{line}({func})",
                "ncalls": ncalls,
                "tottime_s": round(tottime, 3),
                "cumtime_s": round(cumtime, 3),
            }
        )
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:top]


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def measure_size(
    args: argparse.Namespace, work: Path, info: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    run = Path(info["folder"])
    states = info["states"]
    world_size = len(states)
    runs: list[dict[str, Any]] = []
    reported: dict[str, int] = {}
    ok = True
    with hold_locks(run, states):
        for round_no in range(1, args.repeat + 1):
            redate_live(run, states)
            if args.cache == "cold":
                evict_folder(run)
            cli = run_command(run, work, timeout=max(120.0, world_size * 0.1))
            redate_live(run, states)
            if args.cache == "cold":
                evict_folder(run)
            inproc, reported = run_in_process(run)
            ok = ok and cli["exit_code"] == 0 and reported == info["expected"]
            runs.append({"round": round_no, "command": cli, "in_process": inproc})
            log(
                f"{world_size} ranks, round {round_no}: command {cli['wall_s']:.2f} s "
                f"(CPU {cli['cpu_s']:.2f} s, {cli['peak_rss_mb']:.0f} MB, exit "
                f"{cli['exit_code']}), in-process {inproc['total_s']:.2f} s"
            )
    commands = [r["command"] for r in runs]
    inprocs = [r["in_process"] for r in runs]
    med = {
        "command": {
            k: median_of(commands, k)
            for k in ("wall_s", "cpu_s", "cpu_user_s", "cpu_sys_s", "peak_rss_mb")
        },
        "in_process": {
            k: median_of(inprocs, k)
            for k in (
                "collect_s",
                "summarize_s",
                "json_s",
                "total_s",
                "collect_cpu_s",
                "summarize_cpu_s",
                "json_cpu_s",
                "total_cpu_s",
            )
        },
    }
    med["command"]["other_load_cores"] = median_of(commands, "other_load_cores")
    target = TARGETS_S.get(world_size)
    result = {
        "ranks": world_size,
        "folder": info["folder"],
        "files": info["files"],
        "bytes": info["bytes"],
        "ledgers": info["ledgers"],
        "locks_held": sum(1 for s in states if s in HELD),
        "built_s": info["built_s"],
        "states_expected": info["expected"],
        "states_reported": reported,
        "states_match": reported == info["expected"],
        "json_bytes": inprocs[-1]["json_bytes"],
        "runs": runs,
        "medians": med,
        "target_s": target,
        "pass": None if target is None else med["command"]["wall_s"] < target,
        "in_process_pass": None if target is None else med["in_process"]["total_s"] < target,
    }
    return result, ok


def _git() -> dict[str, Any]:
    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "--short=12", "HEAD"), "dirty": bool(git("status", "-s"))}


def table(sizes: dict[str, dict[str, Any]]) -> str:
    head = (
        "| ranks | command wall s | CPU s | peak RSS MB | other load | in-process s "
        "(collect / summarize / json) | target | met |"
    )
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for size in sizes.values():
        c, p = size["medians"]["command"], size["medians"]["in_process"]
        target = f"< {size['target_s']:g} s" if size["target_s"] is not None else "-"
        met = {None: "-", True: "yes", False: "**no**"}[size["pass"]]
        lines.append(
            f"| {size['ranks']:,} | {c['wall_s']:.2f} | {c['cpu_s']:.2f} | "
            f"{c['peak_rss_mb']:.0f} | {c['other_load_cores']:.2f} | {p['total_s']:.2f} "
            f"({p['collect_s']:.2f} / {p['summarize_s']:.2f} / {p['json_s']:.2f}) | "
            f"{target} | {met} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", default="400,4000", help="world sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--items-per-rank", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", choices=("warm", "cold"), default="warm")
    parser.add_argument("--work", type=Path, default=HERE / ".work")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "report-latest.json")
    parser.add_argument("--profile", type=Path, default=None, help="pstats file (largest size)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sizes_wanted = [int(n) for n in args.ranks.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    out: dict[str, Any] = {
        "benchmark": "report_speed",
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
        },
        "fetchshard_version": fetchshard.__version__,
        "git": _git(),
        "repeat": args.repeat,
        "cache": args.cache,
        "items_per_rank": args.items_per_rank,
        "seed": args.seed,
        "targets_s": {str(k): v for k, v in TARGETS_S.items()},
        "sizes": {},
    }
    all_ok = True
    infos = {}
    for world_size in sizes_wanted:
        infos[world_size] = info = ensure_folder(args, args.work, world_size)
        result, ok = measure_size(args, args.work, info)
        out["sizes"][str(world_size)] = result
        all_ok = all_ok and ok
    if args.profile is not None:
        info = infos[max(sizes_wanted)]
        run = Path(info["folder"])
        with hold_locks(run, info["states"]):
            redate_live(run, info["states"])
            log(f"{len(info['states'])} ranks: build_report under cProfile")
            out["profile"] = {
                "ranks": len(info["states"]),
                "pstats": str(args.profile),
                "top_by_tottime": profile(run, args.profile),
            }
    out["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    verdicts = [s["pass"] for s in out["sizes"].values() if s["pass"] is not None]
    out["pass"] = all(verdicts) if verdicts else None
    out["ok"] = all_ok
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1) + "\n")
    print(table(out["sizes"]))
    print(
        f"medians of {args.repeat}, {args.cache} page cache, {os.cpu_count()} CPUs, load "
        f"average {load_before[0]:.2f} before, {out['machine']['loadavg_after'][0]:.2f} after; "
        f"JSON: {args.json}"
    )
    for size in out["sizes"].values():
        if not size["states_match"]:
            print(
                f"{size['ranks']} ranks: states {size['states_reported']} != expected "
                f"{size['states_expected']}",
                file=sys.stderr,
            )
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
