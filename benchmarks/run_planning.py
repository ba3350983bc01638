"""A plan step's run ranks at scale (issue 33): what a sampled rank of ``fetchshard run`` reads
to derive its assignment and plan its rows, with the host counts aggregated by host-hash range,
against every slice's host counts (how every run rank planned before).

    python benchmarks/run_planning.py [--rows 1000000000] [--hosts 10000000] [--zipf 1.1]
        [--world 400] [--sample 0,101,257,399] [--before 1] [--work /tmp/fetchshard-run-planning]
        [--json benchmarks/results/run-planning-latest.json]

Only what the sampled ranks need is generated, plus every slice's host counts (issue 33,
acceptance 1), so 10^9 rows fit in minutes and a few GB:

1. Every plan slice's host counts: rows / W rows' hosts drawn from Zipf(--zipf) over --hosts
   hosts (their hashes uniform, as XXH3's are), as plan rank p's hosts file.
2. The counted assignment from every host's count (``Assignment.from_counts``, here), then
   each slice's items holding only the sampled ranks' rows (a small host's rows whole; a heavy
   host's rows in one of their pieces, keys in its key range, their number drawn), and each
   slice's PlanSliceDone (its rows: all of them): a plan folder ``fetchshard run`` takes.
3. For each sampled rank r, as in a run where every rank sums its own range first: every
   other range summed here, range r not; then, each in its own process, the plan folder's
   files evicted from the page cache first (posix_fadvise, so a read is a cold one without
   dropping every cache on the machine):
   ``assign``: ``aggregate.rank_assignment()`` alone (range r summed, every range's document,
   the counts of the ranges its small hosts are in); ``run``: ``plan_rank()`` from the plan
   into a fresh ledger (range r summed again first: the whole planning of a run rank);
   ``before``: ``planfile.plan_assignment()`` over every slice's host counts, for the first
   --before ranks. Each: wall seconds, the kernel's read_bytes (storage reads, a mapped file's
   page faults included) and rchar (read() calls), peak RSS.
4. Checks: each sampled rank's partial assignment gives the RankRuns and shares of the full
   one, and its run planning kept exactly the rows generated for it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from measure import evict_folder  # noqa: E402


def _io() -> dict[str, int]:
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {"rchar": int(fields["rchar"]), "read_bytes": int(fields["read_bytes"])}


def _status_mb(key: str) -> float:
    """VmRSS (now) or VmHWM (the peak) of this process, in MB. Not getrusage's ru_maxrss:
    Linux keeps it across fork and exec, so a child would report its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _config(src: Path, out: Path) -> Any:
    from fetchshard.config import load_config

    return load_config(environ={}, overrides={"input.paths": [str(src)], "output.dir": str(out)})


# ------------------------------------------------------------------------- the plan folder


def _slice_hosts(rank: int, rows: int, cdf: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The host indices of plan rank ``rank``'s rows (drawn by the hosts' ``cdf``, as
    plan_step.py draws its input's) and their rows."""
    draws = np.random.default_rng([seed, rank]).random(rows)
    draws.sort()  # the same draws; searched in order, several times faster
    hosts = np.minimum(np.searchsorted(cdf, draws), len(cdf) - 1)
    counts = np.bincount(hosts, minlength=len(cdf))
    which = np.flatnonzero(counts)
    return which, counts[which]


def _write_hosts(path: Path, hashes: np.ndarray, rows: np.ndarray) -> None:
    from fetchshard.planning.slicefiles import HOSTS

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({"host_hash": hashes, "rows": rows.astype(np.int64)}, schema=HOSTS)
    with ipc.new_file(str(path), HOSTS) as writer:
        writer.write_table(table)


def _read_hosts(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with pa.OSFile(str(path), "rb") as source:
        table = ipc.open_file(source).read_all()
    return table.column(0).to_numpy(), table.column(1).to_numpy()


def _rows_of(
    assignment: Any,
    ranks: list[int],
    hashes: np.ndarray,
    counts: np.ndarray,
    first_position: int,
    rng: np.random.Generator,
) -> tuple[pa.Table, dict[int, int]]:
    """A slice's rows of the sampled ``ranks`` (ITEMS), and how many of each rank."""
    from fetchshard.planning.assignment import _find, range_start
    from fetchshard.urls import ID_MASK

    want = np.array(ranks, np.int64)
    host_parts, key_parts = [], []
    at, found = _find(assignment.tiny_hosts, hashes)
    small = found & np.isin(assignment.tiny_ranks[at], want)
    host_parts.append(np.repeat(hashes[small], counts[small]))
    key_parts.append(rng.integers(0, 2**64, int(counts[small].sum()), dtype=np.uint64))
    per_rank = {r: 0 for r in ranks}
    for r, n in zip(assignment.tiny_ranks[at[small]].tolist(), counts[small].tolist(), strict=True):
        per_rank[r] += n
    at, heavy = _find(assignment.big_hosts, hashes)
    for index, host, count in zip(
        at[heavy].tolist(), hashes[heavy].tolist(), counts[heavy].tolist(), strict=True
    ):
        n, start = int(assignment.big_pieces[index]), int(assignment.big_starts[index])
        for i, owner in enumerate(assignment.big_ranks[start : start + n].tolist()):
            if owner in per_rank:
                m = int(rng.binomial(count, 1 / n))
                lo, hi = range_start(i, n), range_start(i + 1, n)
                host_parts.append(np.full(m, host, np.uint64))
                key_parts.append(rng.integers(lo, hi, m, dtype=np.uint64))
                per_rank[owner] += m
    host_hash = np.concatenate(host_parts)
    n_rows = len(host_hash)
    positions = first_position + np.arange(n_rows, dtype=np.int64)
    host_text = pc.binary_join_element_wise(
        "h", pa.array(host_hash).cast(pa.string()), ".example.org", ""
    )
    url = pc.binary_join_element_wise(
        "https://", host_text, "/img/", pa.array(positions).cast(pa.string()), ".jpg", ""
    )
    table = pa.table(
        {
            "host_hash": host_hash,
            "key_hash": np.concatenate(key_parts),
            "position": positions,
            "host_id": (host_hash & np.uint64(ID_MASK)).astype(np.int64),
            "host": host_text,
            "url": url,
            "fetch_url": pa.nulls(n_rows, pa.string()),
            "extras": pa.nulls(n_rows, pa.string()),
            "error_kind": pa.nulls(n_rows, pa.string()),
            "error_message": pa.nulls(n_rows, pa.string()),
        }
    )
    return table, per_rank


def make_plan(
    src: Path, out: Path, rows: int, hosts: int, zipf: float, world: int, sample: list[int]
) -> dict[str, Any]:
    """Steps 1 and 2: the plan folder; returns what was generated (rows per sampled rank)."""
    from fetchshard.planning.assignment import Assignment
    from fetchshard.planning.fingerprint import claim_plan_folder, plan_fingerprint
    from fetchshard.planning.slicefiles import write_slice
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.documents import PlanSliceDone
    from fetchshard.runfolder.layout import PlanPaths

    seed = 33
    paths = PlanPaths(out)
    config = _config(src, out)
    fp = plan_fingerprint(config, [src], world)
    manifest = claim_plan_folder(paths, fp, RankInfo(0, world, "benchmark"), restart=False)
    host_hashes = np.random.default_rng(seed).integers(0, 2**64, hosts, dtype=np.uint64)
    assert len(np.unique(host_hashes)) == hosts, "draw again: two hosts share a hash"
    share = [rows // world + (1 if p < rows % world else 0) for p in range(world)]
    totals = np.zeros(hosts, np.int64)
    started = time.perf_counter()
    weights = 1.0 / np.arange(1, hosts + 1) ** zipf
    cdf = np.cumsum(weights / weights.sum())
    del weights
    for p in range(world):
        which, counts = _slice_hosts(p, share[p], cdf, seed)
        totals[which] += counts
        hashes = host_hashes[which]
        order = np.argsort(hashes)
        _write_hosts(paths.slice(p).hosts, hashes[order], counts[order])
    counted = time.perf_counter() - started
    print(f"host counts of {world} slices: {counted:.0f} s")
    used = np.flatnonzero(totals)
    full = Assignment.from_counts(host_hashes[used], totals[used], world)
    expected = {r: 0 for r in sample}
    rng = np.random.default_rng(seed + 1)
    first = 0
    for p in range(world):
        files = paths.slice(p)
        hashes, counts = _read_hosts(files.hosts)
        table, per_rank = _rows_of(full, sample, hashes, counts, first, rng)
        write_slice(files, table)  # items and index (and its own hosts file: replaced)
        _write_hosts(files.hosts, hashes, counts)
        for r, n in per_rank.items():
            expected[r] += n
        PlanSliceDone(
            rank=p, world_size=world, plan=manifest.digest, rows=share[p], items=share[p],
            hosts=len(hashes), bytes_read=0, seconds=0.0, completed_at=time.time(),
        ).write(files.done)  # fmt: skip
        first += share[p]
    print(f"items of the sampled ranks: {time.perf_counter() - started - counted:.0f} s")
    heavy_hosts = int((totals[used] > (rows / world) / 100).sum())
    return {
        "hosts_used": len(used),
        "heavy_hosts": heavy_hosts,
        "pieces": int(full.big_pieces.sum()),
        "generated_rows": {str(r): n for r, n in expected.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


# --------------------------------------------------------------------------- the ranks


def _drop_range(out: Path, number: int) -> None:
    from fetchshard.runfolder.layout import PlanPaths, tmp_of

    files = PlanPaths(out).range_counts(number)
    for path in (files.done, files.counts, tmp_of(files.counts)):
        path.unlink(missing_ok=True)


def _sum_others(out: Path, world: int, rank: int) -> None:
    """Every range but ``rank``'s, summed in this process (as the other ranks would)."""
    from fetchshard.planning.aggregate import _summed, plan_rows, sum_range
    from fetchshard.runfolder.documents import PlanManifest
    from fetchshard.runfolder.layout import PlanPaths

    paths = PlanPaths(out)
    manifest = PlanManifest.read(paths.manifest)
    assert manifest is not None
    total = plan_rows(paths, world)
    for number in range(world):
        if number != rank and not _summed(paths.range_counts(number), manifest.digest, world):
            sum_range(paths, manifest.digest, world, number, total)


def child(kind: str, src: Path, out: Path, rank: int, world: int) -> None:
    """One sampled rank's work in its own process; prints JSON."""
    import sqlite3

    from fetchshard.cli import skip_pandas

    skip_pandas()  # as in a rank's process (cli.main): pyarrow would import it on first use

    from fetchshard.inputs import open_inputs
    from fetchshard.ledger import Ledger
    from fetchshard.planning.aggregate import rank_assignment
    from fetchshard.planning.planfile import RankRuns, plan_assignment, plan_in_use, plan_slices
    from fetchshard.planning.rank import plan_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import PlanPaths, ledger_paths

    sqlite3.connect(":memory:").close()
    config = _config(src, out)
    inputs = open_inputs(config.input)
    paths = PlanPaths(out)
    ledger_dir = out / "bench-ledgers"
    ledger_dir.mkdir(parents=True, exist_ok=True)
    for old in ledger_dir.glob(f"rank-{rank:05d}*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    rss_before = _status_mb("VmRSS")
    before, started = _io(), time.perf_counter()
    result: dict[str, Any] = {}
    if kind == "assign":
        assignment = rank_assignment(paths, world, rank, lock_wait=60)
        result["small_hosts_known"] = len(assignment.tiny_hosts)
    elif kind == "before":
        assignment = plan_assignment(plan_slices(paths, world), world)
        RankRuns.of(assignment, rank)
    else:
        from_plan = plan_in_use(config, inputs.files, world)
        info = RankInfo(rank, world, "benchmark")
        with Ledger(ledger_paths(ledger_dir / f"rank-{rank:05d}.sqlite")) as ledger:
            got = plan_rank(ledger, config, info, {"fp": kind}, inputs, from_plan=from_plan)
        result["kept"] = got.kept
    after = _io()
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["read_bytes"] = after["read_bytes"] - before["read_bytes"]
    result["rchar"] = after["rchar"] - before["rchar"]
    result["rss_before_mb"] = round(rss_before, 1)
    result["peak_rss_mb"] = round(_status_mb("VmHWM"), 1)
    print(json.dumps(result))


def _timed_child(kind: str, src: Path, out: Path, rank: int, world: int) -> dict[str, Any]:
    evict_folder(out / "plan")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--rank", str(rank), "--world", str(world),
         "--src", str(src), "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(f"{kind} of rank {rank} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _check(out: Path, world: int, sample: list[int], full_counts: Any) -> dict[str, bool]:
    """Each sampled rank's partial assignment against the one from every host's count."""
    from fetchshard.planning.aggregate import rank_assignment
    from fetchshard.planning.planfile import RankRuns
    from fetchshard.runfolder.layout import PlanPaths

    same = {}
    for rank in sample:
        part = rank_assignment(PlanPaths(out), world, rank, lock_wait=60)
        same[str(rank)] = RankRuns.of(part, rank) == RankRuns.of(
            full_counts, rank
        ) and part.split_shares(rank) == full_counts.split_shares(rank)
    return same


def _full_assignment(out: Path, world: int) -> Any:
    """from_counts over every host's count, summed from the ranges' counts files."""
    from fetchshard.planning.aggregate import read_counts, read_ranges
    from fetchshard.planning.assignment import Assignment
    from fetchshard.runfolder.documents import PlanManifest
    from fetchshard.runfolder.layout import PlanPaths

    paths = PlanPaths(out)
    manifest = PlanManifest.read(paths.manifest)
    assert manifest is not None
    docs = read_ranges(paths, manifest.digest, world)
    parts = [read_counts(paths.range_counts(n), docs[n]) for n in range(world)]
    return Assignment.from_counts(
        np.concatenate([h for h, _ in parts]), np.concatenate([r for _, r in parts]), world
    )


def _sizes(folder: Path, pattern: str) -> int:
    return sum(p.stat().st_size for p in folder.glob(pattern))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000_000)
    parser.add_argument("--hosts", type=int, default=10_000_000)
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--world", type=int, default=400)
    parser.add_argument("--sample", default="0,101,257,399")
    parser.add_argument("--before", type=int, default=1, help="ranks measured the old way")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fetchshard-run-planning"))
    parser.add_argument("--reuse", action="store_true", help="keep a plan folder made before")
    parser.add_argument("--json", type=Path, default=HERE / "results" / "run-planning-latest.json")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.src, args.out, args.rank, args.world)
        return
    world, sample = args.world, [int(r) for r in args.sample.split(",")]
    args.work.mkdir(parents=True, exist_ok=True)
    src = args.work / "input.txt"  # the plan's input as the fingerprint names it; not read
    if not src.exists():
        src.write_text("https://h0.example.org/img/0.jpg\n")
    out = args.work / f"out-{args.rows}-{args.hosts}-{args.zipf}-{world}"
    made_file = out / "generated.json"
    if args.reuse and made_file.exists():
        made = json.loads(made_file.read_text())
    else:
        shutil.rmtree(out, ignore_errors=True)
        made = make_plan(src, out, args.rows, args.hosts, args.zipf, world, sample)
        made_file.write_text(json.dumps(made))
    plan_dir = out / "plan"
    hosts_bytes = _sizes(plan_dir, "rank-*.hosts.arrow")
    items_bytes = _sizes(plan_dir, "rank-*.items.arrow")
    items_rows = sum(made["generated_rows"].values())
    report: dict[str, Any] = {
        "rows": args.rows,
        "hosts": args.hosts,
        "zipf": args.zipf,
        "world_size": world,
        "generated": made,
        "plan_files": {
            "hosts_bytes": hosts_bytes,  # what every run rank read before, each
            "index_bytes": _sizes(plan_dir, "rank-*.index.arrow"),
            "items_bytes_per_row": items_bytes / max(items_rows, 1),
        },
        "ranks": {},
    }
    for number, rank in enumerate(sample):
        entry: dict[str, Any] = {"generated_rows": made["generated_rows"][str(rank)]}
        _sum_others(out, world, rank)
        _drop_range(out, rank)
        entry["assign"] = _timed_child("assign", src, out, rank, world)
        _drop_range(out, rank)
        entry["run"] = _timed_child("run", src, out, rank, world)
        if number < args.before:
            entry["before"] = _timed_child("before", src, out, rank, world)
        entry["kept_all_its_rows"] = entry["run"]["kept"] == entry["generated_rows"]
        report["ranks"][str(rank)] = entry
        print(f"rank {rank}: {json.dumps(entry)}")
    counts_dir = plan_dir / "counts"
    report["counts_files"] = {
        "documents_bytes": _sizes(counts_dir, "done/*.json"),
        "counts_bytes": _sizes(counts_dir, "*.arrow"),
    }
    full = _full_assignment(out, world)
    report["same_as_from_all_counts"] = _check(out, world, sample, full)
    print(json.dumps({k: v for k, v in report.items() if k != "ranks"}, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
