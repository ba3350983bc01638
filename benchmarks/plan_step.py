"""The plan step at scale (issue 19, acceptance 3): 10^8 rows, world size 400, sampled ranks.

    python benchmarks/plan_step.py [--rows 100000000] [--world 400] [--format parquet|txt]
                                   [--sample 0,101,257,399] [--work /tmp/fetchshard-plan-step]
                                   [--json benchmarks/results/plan-step-latest.json]
                                   [--plan-memory BYTES] [--reuse] [--no-balance]
                                   [--hosts 200000] [--zipf 1.3] [--sampled-only]
                                   [--split N] [--rate ROWS_PER_S]

1. Writes a Zipf(--zipf) input over --hosts hosts (random order, no repeats), once per shape.
2. The single-rank planning rate: ``plan_rank()`` at world size 1 over a 10^7-row file of the
   same shape, in-process (rows / wall second).
3. The plan step of every rank (``fetchshard plan --rank r --world-size W``): the sampled
   ranks as their own processes, timed from start to exit, with the bytes they read of the
   input (their own count, and the kernel's ``rchar`` from /proc/self/io around the work)
   and their peak RSS; the others in this process, since a run needs every slice.
   ``--plan-memory`` sets ``plan.memory`` (a small one makes the sampled ranks spill).
   With ``--cold`` the page cache is dropped before each sampled rank's process.
4. The run's planning of each sampled rank from the plan (its own process: start, then
   ``plan_rank()`` into a fresh ledger), timed and with the bytes it read of the plan.
5. The same rank without a plan step: ``plan_rank()`` reading the whole input (counting pass,
   then selection), timed, with its bytes read.
6. Balance over the whole input: items per rank under the counted assignment and under the
   fixed ``spread: 16`` (and 64), from every row's hashes in the slices.

Checks, per sampled rank: input bytes read <= 1.1 x (input bytes / W) + one row group (or
8 MB for text), and plan step + run planning wall <= 3 x (its rows / single-rank rate) + 5 s.

``--sampled-only`` (10^9 rows: every plan rank would take an hour on 2 cores): step 3 for the
sampled ranks alone, then nothing that needs every slice (4-6 are skipped). Each plan rank's
peak RSS is checked against 1 GB and its reads other than the input's (``rchar`` less the
input's bytes: the spilled runs read back, its share of the input again) against 2 x its
rows' share (issue 33). A run rank's side at that size, which needs every slice's host
counts, is benchmarks/run_planning.py's (it generates them without the plan step).
``--split N`` makes the input N Parquet files of consecutive row groups (a folder), as large
lists ship: every plan rank reads the footer of each file it reads from, and one file's footer
of 10,000 row groups is 2 MB. ``--rate`` takes a single-rank rate measured before.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

HOSTS = 200_000
ZIPF = 1.3
CHUNK = 2_000_000


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, not ru_maxrss, which keeps across exec the peak of the
    process it was forked from (this benchmark's, planning the other ranks)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def make_input(path: Path, rows: int, fmt: str, seed: int = 0) -> None:
    """``rows`` URLs, hosts Zipf(ZIPF) over HOSTS, written in chunks (bounded memory)."""
    if path.exists():
        return
    weights = 1.0 / np.arange(1, HOSTS + 1) ** ZIPF
    cdf = np.cumsum(weights / weights.sum())
    rng = np.random.default_rng(seed)
    tmp = path.with_name(path.name + ".tmp")
    writer: Any = None
    out = open(tmp, "wb") if fmt == "txt" else None  # noqa: SIM115
    try:
        for start in range(0, rows, CHUNK):
            n = min(CHUNK, rows - start)
            hosts = np.minimum(np.searchsorted(cdf, rng.random(n)), HOSTS - 1)
            ids = np.arange(start, start + n)
            urls = pc.binary_join_element_wise(
                "https://s",
                pa.array(hosts).cast(pa.string()),
                ".example.org/img/",
                pa.array(ids).cast(pa.string()),
                ".jpg",
                "",
            )
            if out is not None:
                out.write(("\n".join(urls.to_pylist()) + "\n").encode())
            else:
                table = pa.table({"url": urls})
                if writer is None:
                    writer = pq.ParquetWriter(str(tmp), table.schema, compression="zstd")
                writer.write_table(table, row_group_size=100_000)
    finally:
        if writer is not None:
            writer.close()
        if out is not None:
            out.close()
    tmp.rename(path)


def split_input(src: Path, parts: int) -> Path:
    """The same rows as ``parts`` Parquet files of consecutive row groups, in a folder (how
    large lists ship): each file's footer holds only its own row groups' metadata."""
    folder = src.with_name(f"{src.stem}-{parts}-files.d")
    if folder.exists():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    source = pq.ParquetFile(src)
    groups = source.metadata.num_row_groups
    for part in range(parts):
        first, stop = part * groups // parts, (part + 1) * groups // parts
        with pq.ParquetWriter(
            str(tmp / f"part-{part:04d}.parquet"), source.schema_arrow, compression="zstd"
        ) as writer:
            for group in range(first, stop):
                table = source.read_row_group(group)
                writer.write_table(table, row_group_size=table.num_rows)
    tmp.rename(folder)
    return folder


def _input_files(src: Path) -> list[Path]:
    return sorted(src.glob("*.parquet")) if src.is_dir() else [src]


def _input_bytes(src: Path) -> int:
    return sum(f.stat().st_size for f in _input_files(src))


PLAN_MEMORY: int | None = None  # --plan-memory; None: the default (and a tree without it)


def _config(src: Path, out: Path) -> Any:
    from fetchshard.config import load_config

    overrides: dict[str, Any] = {"input.paths": [str(src)], "output.dir": str(out)}
    if PLAN_MEMORY is not None:
        overrides["plan.memory"] = PLAN_MEMORY
    return load_config(environ={}, overrides=overrides)


def child(kind: str, src: Path, out: Path, rank: int, world: int) -> None:
    """One sampled rank's work in its own process; prints JSON."""
    from fetchshard.ledger import Ledger
    from fetchshard.planning.planfile import plan_in_use
    from fetchshard.planning.rank import plan_rank
    from fetchshard.planning.step import plan_step_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import ledger_paths

    config = _config(src, out)
    info = RankInfo(rank, world, "benchmark")
    warm = _warm_up("parquet" if src.is_dir() else src.suffix.lstrip("."), out.parent)
    before, started = _rchar(), time.perf_counter()
    result: dict[str, Any] = {}
    if kind == "plan":
        done = plan_step_rank(config, info)
        result = {"rows": done.rows, "bytes_read": done.bytes_read}
    else:
        from fetchshard.inputs import open_inputs

        inputs = open_inputs(config.input)
        from_plan = plan_in_use(config, inputs.files, world) if kind == "run" else None
        ledger_dir = out / f"bench-{kind}"
        ledger_dir.mkdir(parents=True, exist_ok=True)
        path = ledger_dir / f"rank-{rank:05d}.sqlite"
        for old in ledger_dir.glob(f"rank-{rank:05d}*"):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        with Ledger(ledger_paths(path)) as ledger:
            got = plan_rank(ledger, config, info, {"fp": kind}, inputs, from_plan=from_plan)
        result = {"rows": got.rows, "kept": got.kept}
    result["work_seconds"] = time.perf_counter() - started
    result["rchar"] = _rchar() - before
    result["warm_up_seconds"] = warm
    # The process's peak (the warm-up's tiny plans included: far below the rank's).
    result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def _warm_up(fmt: str, work: Path) -> float:
    """Plan a tiny input both ways first, so that the bytes counted next are the input's and
    the plan's, not those of modules imported on first use; returns the seconds it took."""
    from fetchshard.ledger import Ledger
    from fetchshard.planning.planfile import plan_in_use
    from fetchshard.planning.rank import plan_rank
    from fetchshard.planning.step import plan_step_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import ledger_paths

    started = time.perf_counter()
    tiny = work / f"warm.{fmt}"
    make_input(tiny, 2000, fmt, seed=2)
    scratch = work / f"warm-{os.getpid()}"
    config = _config(tiny, scratch)
    info = RankInfo(0, 2, "benchmark")
    plan_step_rank(config, info)
    plan_step_rank(config, RankInfo(1, 2, "benchmark"))
    for name, from_plan in (("a", plan_in_use(config, [tiny], 2)), ("b", None)):
        with Ledger(ledger_paths(scratch / f"{name}.sqlite")) as ledger:
            plan_rank(ledger, config, info, {"fp": name}, from_plan=from_plan)
    shutil.rmtree(scratch)
    return time.perf_counter() - started


COLD = False  # --cold: the page cache dropped before each sampled rank (root only)


def _drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _timed_child(kind: str, src: Path, out: Path, rank: int, world: int) -> dict[str, Any]:
    if COLD:
        _drop_caches()
    started = time.perf_counter()
    memory = [] if PLAN_MEMORY is None else ["--plan-memory", str(PLAN_MEMORY)]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--rank", str(rank), "--world", str(world),
         "--src", str(src), "--out", str(out), *memory],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    # The process's life but the warm-up (an artefact of counting bytes, not of the rank).
    result["wall_seconds"] = round(time.perf_counter() - started - result["warm_up_seconds"], 3)
    return result


def single_rank_rate(work: Path, fmt: str) -> dict[str, float]:
    from fetchshard.ledger import Ledger
    from fetchshard.planning.rank import plan_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import ledger_paths

    shape = "" if (HOSTS, ZIPF) == (200_000, 1.3) else f"-h{HOSTS}-z{ZIPF}"
    src = work / f"rate-1e7{shape}.{fmt}"
    make_input(src, 10_000_000, fmt, seed=1)
    ledger_dir = work / "rate-ledger"
    shutil.rmtree(ledger_dir, ignore_errors=True)
    ledger_dir.mkdir(parents=True)
    config = _config(src, work / "rate-out")
    started = time.perf_counter()
    with Ledger(ledger_paths(ledger_dir / "rank-00000.sqlite")) as ledger:
        got = plan_rank(ledger, config, RankInfo(0, 1, "benchmark"), {"fp": 1})
    seconds = time.perf_counter() - started
    shutil.rmtree(ledger_dir)
    return {"rows": got.rows, "seconds": round(seconds, 2), "rows_per_s": got.rows / seconds}


def balance(out: Path, world: int, spreads: tuple[int, ...]) -> dict[str, Any]:
    """Items per rank over every row of the slices: the assignment against fixed spreads."""
    from fetchshard.planning.placement import FixedSpread
    from fetchshard.planning.planfile import plan_assignment, plan_slices
    from fetchshard.planning.slicefiles import SliceItems
    from fetchshard.runfolder.layout import PlanPaths

    paths = PlanPaths(out)
    started = time.perf_counter()
    assignment = plan_assignment(plan_slices(paths, world), world)
    assign_seconds = time.perf_counter() - started
    loads = {"auto": np.zeros(world, np.int64)} | {
        f"spread {s}": np.zeros(world, np.int64) for s in spreads
    }
    for rank in range(world):
        with SliceItems.open(paths.slice(rank)) as items:
            table = items.read(0, items.rows)
        hosts = table.column("host_hash").to_numpy()
        keys = table.column("key_hash").to_numpy()
        loads["auto"] += np.bincount(assignment.ranks_of(hosts, keys), minlength=world)
        for s in spreads:
            ranks = FixedSpread(world, s).ranks_of(hosts, keys)
            loads[f"spread {s}"] += np.bincount(ranks, minlength=world)
    out_rows: dict[str, Any] = {"assignment_seconds": round(assign_seconds, 2)}
    for name, load in loads.items():
        mean = load.sum() / world
        out_rows[name] = {
            "max_over_mean": round(float(load.max() / mean), 3),
            "min_over_mean": round(float(load.min() / mean), 3),
        }
    return out_rows


def _check_plan_ranks(report: dict[str, Any], out: Path, rate: dict[str, float]) -> None:
    """Issue 33's checks of each sampled plan rank: input read, other reads, peak RSS."""
    from fetchshard.runfolder.layout import PlanPaths

    for rank, entry in report["ranks"].items():
        plan = entry["plan"]
        share = PlanPaths(out).slice(rank).items.stat().st_size  # its rows, as it sorts them
        plan["rows_share_bytes"] = share
        plan["other_reads"] = plan["rchar"] - plan["bytes_read"]
        plan["allowed_other_reads"] = 2 * share
        plan["allowed_wall"] = round(3 * plan["rows"] / rate["rows_per_s"] + 5, 2)
        plan["bytes_ok"] = plan["bytes_read"] <= report["allowed_bytes"]
        plan["other_reads_ok"] = plan["other_reads"] <= plan["allowed_other_reads"]
        plan["rss_ok"] = plan["peak_rss_mb"] <= 1000
        plan["wall_ok"] = plan["wall_seconds"] <= plan["allowed_wall"]
        print(
            f"plan rank {rank}: {plan['rows']:,} rows in {plan['wall_seconds']:.1f} s "
            f"(<= {plan['allowed_wall']}: {plan['wall_ok']}); input read "
            f"{plan['bytes_read']:,} B (<= {report['allowed_bytes']:,.0f}: {plan['bytes_ok']}); "
            f"other reads {plan['other_reads']:,} B (<= 2 x {share:,}: "
            f"{plan['other_reads_ok']}); peak RSS {plan['peak_rss_mb']} MB "
            f"(<= 1000: {plan['rss_ok']})"
        )


def main() -> None:
    global PLAN_MEMORY, HOSTS, ZIPF
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000_000)
    parser.add_argument("--world", type=int, default=400)
    parser.add_argument("--format", choices=["parquet", "txt"], default="parquet")
    parser.add_argument("--sample", default="0,101,257,399")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fetchshard-plan-step"))
    parser.add_argument("--json", type=Path, default=HERE / "results" / "plan-step-latest.json")
    parser.add_argument("--no-baseline", action="store_true", help="skip step 5 (slow)")
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drop the page cache before each sampled rank, as a shared filesystem would "
        "have it (needs root)",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the slices of an earlier run but the sampled ranks' (redone and timed)",
    )
    parser.add_argument(
        "--plan-memory", type=int, default=None, help="plan.memory in bytes (default: its own)"
    )
    parser.add_argument("--no-balance", action="store_true", help="skip step 6")
    parser.add_argument(
        "--split", type=int, default=1, help="the input as this many files (a folder)"
    )
    parser.add_argument(
        "--rate", type=float, default=None, help="the single-rank rate (rows/s) measured before"
    )
    parser.add_argument("--hosts", type=int, default=HOSTS)
    parser.add_argument("--zipf", type=float, default=ZIPF)
    parser.add_argument(
        "--sampled-only",
        action="store_true",
        help="plan the sampled ranks alone and measure them (steps 4-6 need every slice)",
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    PLAN_MEMORY, HOSTS, ZIPF = args.plan_memory, args.hosts, args.zipf
    if args.child:
        child(args.child, args.src, args.out, args.rank, args.world)
        return
    from fetchshard.planning.step import plan_step_rank
    from fetchshard.ranks import RankInfo

    global COLD
    COLD = args.cold
    world, work = args.world, args.work
    work.mkdir(parents=True, exist_ok=True)
    shape = "" if (HOSTS, ZIPF) == (200_000, 1.3) else f"-h{HOSTS}-z{ZIPF}"
    src = work / f"input-{args.rows}{shape}.{args.format}"
    t0 = time.perf_counter()
    make_input(src, args.rows, args.format)
    if args.split > 1:
        src = split_input(src, args.split)
    print(f"input {src}: {_input_bytes(src):,} bytes ({time.perf_counter() - t0:.0f} s)")
    if args.rate is not None:  # measured before (a 10^7-row file of 10^7 hosts takes minutes)
        rate = {"rows": 0, "seconds": 0.0, "rows_per_s": args.rate}
    else:
        rate = single_rank_rate(work, args.format)
    print(f"single-rank planning rate: {rate['rows_per_s']:,.0f} rows/s")
    files = f"-{args.split}files" if args.split > 1 else ""
    out = work / f"out-{args.rows}{shape}{files}-{world}-{args.format}"
    sample = [int(r) for r in args.sample.split(",")]
    if not args.reuse:
        shutil.rmtree(out, ignore_errors=True)
    else:
        from fetchshard.runfolder.layout import PlanPaths

        for rank in sample:
            for path in PlanPaths(out).slice(rank).files():
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    ranks: dict[int, dict[str, Any]] = {}
    config = _config(src, out)
    t0 = time.perf_counter()
    for rank in range(world):
        if rank in sample:
            ranks[rank] = {"plan": _timed_child("plan", src, out, rank, world)}
        elif not args.sampled_only:
            plan_step_rank(config, RankInfo(rank, world, "benchmark"))
    print(f"plan step of {world} ranks: {time.perf_counter() - t0:.0f} s")
    size = _input_bytes(src)
    slack = 8 * 2**20
    if args.format == "parquet":
        slack = max(
            meta.row_group(g).column(0).total_compressed_size
            for meta in (pq.ParquetFile(f).metadata for f in _input_files(src))
            for g in range(meta.num_row_groups)
        )
    report: dict[str, Any] = {
        "cold_cache": args.cold,
        "rows": args.rows,
        "world_size": world,
        "format": args.format,
        "plan_memory": PLAN_MEMORY,
        "input_bytes": size,
        "share_bytes": size / world,
        "allowed_bytes": 1.1 * size / world + slack,
        "single_rank_rate": rate,
        "ranks": ranks,
    }
    if args.sampled_only:
        _check_plan_ranks(report, out, rate)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
        return
    for rank in sample:
        ranks[rank]["run_planning"] = _timed_child("run", src, out, rank, world)
        entry = ranks[rank]
        total_wall = entry["plan"]["wall_seconds"] + entry["run_planning"]["wall_seconds"]
        allowed_wall = 3 * (entry["plan"]["rows"] / rate["rows_per_s"]) + 5
        entry["total_planning_wall"] = round(total_wall, 2)
        entry["allowed_wall"] = round(allowed_wall, 2)
        entry["bytes_ok"] = entry["plan"]["bytes_read"] <= report["allowed_bytes"]
        entry["wall_ok"] = total_wall <= allowed_wall
        print(
            f"rank {rank}: plan {entry['plan']['wall_seconds']:.2f} s "
            f"({entry['plan']['bytes_read']:,} B, rchar {entry['plan']['rchar']:,}, peak RSS "
            f"{entry['plan']['peak_rss_mb']} MB), run planning "
            f"{entry['run_planning']['wall_seconds']:.2f} s ({entry['run_planning']['kept']:,} "
            f"rows, rchar {entry['run_planning']['rchar']:,}); total {total_wall:.2f} s "
            f"<= {allowed_wall:.2f}: {entry['wall_ok']}; bytes <= "
            f"{report['allowed_bytes']:,.0f}: {entry['bytes_ok']}"
        )
    if not args.no_baseline:
        base = _timed_child("noplan", src, out, sample[0], world)
        report["without_plan_step"] = {"rank": sample[0], **base}
        print(
            f"rank {sample[0]} without the plan step: {base['wall_seconds']:.1f} s, "
            f"rchar {base['rchar']:,} ({base['rchar'] / size:.2f} x the input)"
        )
    plan_dir = out / "plan"
    files = {kind: sum(p.stat().st_size for p in plan_dir.glob(f"rank-*.{kind}.arrow"))
             for kind in ("hosts", "index", "items")}  # fmt: skip
    report["plan_files"] = {
        **files,
        "items_bytes_per_row": files["items"] / max(args.rows, 1),
        # What a run rank reads of them: every hosts and index file (memory-mapped, so the
        # kernel's rchar does not see it) and its own rows of the items.
        "per_run_rank": files["hosts"] + files["index"] + files["items"] / world,
    }
    if not args.no_balance:
        report["balance"] = balance(out, world, (16, 64))
        print(json.dumps(report["balance"]))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
