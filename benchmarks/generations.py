"""Generations at scale (issue 31, acceptance 5): a run stopped part-way with W ranks resumed
with W' ranks, per new rank, against planning the same leftover from scratch.

    python benchmarks/generations.py [--rows 10000000] [--world 400] [--new-world 100]
                                     [--committed 0.6] [--failed 0.03] [--sample 0,14,...]
                                     [--cold] [--jobs 2] [--work /tmp/fetchshard-generations]
                                     [--fetchshard-src live|REV] [--reuse]
                                     [--json benchmarks/results/generations-DATE.json]
                                     [--md benchmarks/results/generations.md]
    python benchmarks/generations.py --markdown-from RESULTS.json --md OUT.md

Quick: ``--rows 20000 --world 8 --new-world 3`` (every new rank sampled; ~15 s).

1. The input: plan_step.py's generator (Parquet, Zipf(1.3) over 200,000 hosts, random order,
   no repeats), once per size.
2. Generation 0 of W ranks, without fetching: the plan step of every rank, run.json as a
   rank claims it, every rank planned from the plan (``plan_rank``, the run's fingerprint),
   then ``--committed`` of each rank's items (a random choice) committed in a few fake parts
   (``Ledger.commit_part``; no Parquet file: a leftover reads only the ledger), ``--failed``
   of them as failures. The last part stays in the commit log unfolded, as a rank stopped
   mid-session leaves it. ``--jobs`` processes share this work (it is not measured).
3. Generation 1 of W' ranks: its manifest (``enter_generation``), then phase 1 of every new
   rank p, each its own process: ``seal()`` of its sources i (i % W' == p), timed, with the
   bytes it read (``rchar`` and ``read_bytes`` of /proc/self/io around the work) and its CPU
   time. Then phase 2 of the sampled ranks, each its own process: ``plan_generation_rank`` into
   a fresh ledger (every slice is sealed by then, so only the counted assignment over the
   slices' host counts and the rank's runs of each slice).
4. The baseline, planning the same leftover from scratch: the URLs without a committed row
   (``read_without_row`` of every old ledger) written, shuffled, to a new Parquet input; the
   plan step of W' ranks over it (the sampled ranks as their own processes, the others here),
   then the sampled ranks' run planning from that plan, each its own process.
5. With ``--cold`` (root only), the page cache is dropped before each sampled rank's process
   and every sampled measurement is taken again cold (their slices removed and written anew):
   memory-mapped reads (the slices' host counts, indexes and runs) show only in
   ``read_bytes``, and only when cold.
6. The JSON (every rank's figures, medians and max, the files' sizes, the checks) and a
   markdown summary. ``--reuse`` keeps generation 0 as an earlier run built it (the slow
   part); ``--fetchshard-src REV`` runs that commit's src/ (``git archive``), ``live`` (the
   default) a copy of src/ as it is at the start.

The bound, per new rank: phase 1 reads its W/W' sources' ledgers and items files whole,
O(N/W'); phase 2 reads every slice's host counts and index and its own runs, O(S x hosts per
slice + N/W') for S = W slices. The results record each term from the files' sizes beside
the bytes measured. Checks: the leftover's items over all slices and (when every new rank is
sampled) the items planned over all new ranks equal the uncommitted count; the sampled ranks'
items are uncommitted items of generation 0, no two ranks holding the same; the baseline
plans the same number of items.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from plan_step import make_input  # noqa: E402

SRC = HERE.parent / "src"
PARTS = 4  # fake parts committed per generation-0 rank
FAIL_KINDS = ("http_404", "dns")
WARM_ROWS = 2000  # the warm-up's tiny run


def _use_src(src: Path) -> None:
    """Import fetchshard from ``src``: first on the path (plan_step.py puts src/ there)."""
    if sys.path[:1] != [str(src)]:
        if str(src) in sys.path:
            sys.path.remove(str(src))
        sys.path.insert(0, str(src))


# ------------------------------------------------------------------ measuring


def _io() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("rchar", "read_bytes"):
            out[key] = int(value)
    return out


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Meter:
    """Wall, CPU and bytes read by this process between start and stop."""

    def __init__(self) -> None:
        self.io, self.cpu, self.wall = _io(), _cpu(), time.perf_counter()

    def stop(self) -> dict[str, Any]:
        io = _io()
        return {
            "work_seconds": round(time.perf_counter() - self.wall, 3),
            "cpu_seconds": round(_cpu() - self.cpu, 3),
            "rchar": io["rchar"] - self.io["rchar"],
            "read_bytes": io["read_bytes"] - self.io["read_bytes"],
        }


def _drop_caches() -> None:
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def _can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


# ------------------------------------------------------------------ generation 0


def _config(src: Path, out: Path) -> Any:
    from fetchshard.config import load_config

    return load_config(environ={}, overrides={"input.paths": [str(src)], "output.dir": str(out)})


def _run_fp(config: Any, files: list[Path], world: int, generation: int) -> dict[str, Any]:
    """A rank's ledger fingerprint, as engine/rank.py computes it."""
    from fetchshard.planning.fingerprint import fingerprint
    from fetchshard.planning.generations import generation_fingerprint

    planned = generation == 0  # generation 0 planned from a plan step; later ones never
    return generation_fingerprint(fingerprint(config, files, world, planned=planned), generation)


def plan_step_ranks(src: Path, out: Path, world: int, ranks: Iterable[int]) -> None:
    """The plan step of ``ranks`` in this process."""
    _use_src(SRC_IN_USE)
    from fetchshard.planning.step import plan_step_rank
    from fetchshard.ranks import RankInfo

    config = _config(src, out)
    for rank in ranks:
        plan_step_rank(config, RankInfo(rank, world, "benchmark"))


def plan_and_commit(
    src: Path, out: Path, world: int, ranks: Iterable[int], committed: float, failed: float,
    seed: int,
) -> list[dict[str, int]]:  # fmt: skip
    """Generation-0 ranks planned from the plan step, then a ``committed`` share of each
    rank's items committed in PARTS fake parts (``failed`` of them failures)."""
    _use_src(SRC_IN_USE)
    from fetchshard.inputs import open_inputs
    from fetchshard.ledger import ItemFile, Ledger
    from fetchshard.planning.rank import plan_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import PlanPaths, RunPaths

    config = _config(src, out)
    inputs = open_inputs(config.input)
    fp = _run_fp(config, inputs.files, world, 0)
    paths = RunPaths(out)
    done = []
    for rank in ranks:
        files = paths.ledger_paths(rank)
        with Ledger(files) as ledger:
            plan_rank(
                ledger, config, RankInfo(rank, world, "benchmark"), fp, inputs,
                from_plan=PlanPaths(out),
            )  # fmt: skip
            reader = ItemFile(files.items)
            try:
                ids = np.concatenate(
                    [b.column("item_id").to_numpy() for b in reader.batches()]
                    or [np.zeros(0, np.int64)]
                )
            finally:
                reader.close()
            rng = np.random.default_rng([seed, rank])
            take = round(committed * len(ids))
            chosen = ids[rng.choice(len(ids), take, replace=False)]
            fails = rng.random(take) < failed
            kinds = rng.integers(0, len(FAIL_KINDS), take)
            now = time.time()
            for part, rows in enumerate(np.array_split(np.arange(take), PARTS), 1):
                items = [
                    (int(chosen[j]), 3 if fails[j] else 1,
                     FAIL_KINDS[kinds[j]] if fails[j] else None)
                    for j in rows.tolist()
                ]  # fmt: skip
                ledger.commit_part(
                    part, items, rows=len(items), nbytes=80_000 * len(items), now=now
                )
                if part == PARTS - 1:
                    ledger.fold_commits()  # the last part stays in the log
            done.append(
                {"rank": rank, "items": len(ids), "committed": take, "failed": int(fails.sum())}
            )
    return done


def _spread(jobs: int, fn: Any, ranks: list[int], **kwargs: Any) -> list[Any]:
    """``fn(ranks=chunk, **kwargs)`` over ``jobs`` processes, the ranks dealt round-robin."""
    chunks = [ranks[j::jobs] for j in range(jobs)]
    if jobs == 1:
        return [fn(ranks=chunks[0], **kwargs)]
    with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_init,
                             initargs=(str(SRC_IN_USE),)) as pool:  # fmt: skip
        futures = [pool.submit(fn, ranks=chunk, **kwargs) for chunk in chunks]
        return [f.result() for f in futures]


def _init(src: str) -> None:
    global SRC_IN_USE
    SRC_IN_USE = Path(src)
    _use_src(SRC_IN_USE)


def build_generation0(
    src: Path, out: Path, world: int, committed: float, failed: float, seed: int, jobs: int
) -> dict[str, Any]:
    from fetchshard.inputs import open_inputs
    from fetchshard.planning.fingerprint import claim_run_folder
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import RunPaths

    shutil.rmtree(out, ignore_errors=True)
    ranks = list(range(world))
    t0 = time.perf_counter()
    _spread(jobs, plan_step_ranks, ranks, src=src, out=out, world=world)
    step_seconds = time.perf_counter() - t0
    config = _config(src, out)
    fp = _run_fp(config, open_inputs(config.input).files, world, 0)
    claim_run_folder(RunPaths(out), fp, RankInfo(0, world, "benchmark"), restart=False)
    t1 = time.perf_counter()
    per_rank = [
        r
        for chunk in _spread(
            jobs,
            plan_and_commit,
            ranks,
            src=src,
            out=out,
            world=world,
            committed=committed,
            failed=failed,
            seed=seed,
        )
        for r in chunk
    ]
    plan_seconds = time.perf_counter() - t1
    items = sum(r["items"] for r in per_rank)
    done = sum(r["committed"] for r in per_rank)
    paths = RunPaths(out)
    return {
        "plan_step_seconds": round(step_seconds, 2),
        "plan_and_commit_seconds": round(plan_seconds, 2),
        "items": items,
        "committed": done,
        "failed": sum(r["failed"] for r in per_rank),
        "uncommitted": items - done,
        "ledger_bytes": sum(paths.ledger_paths(r).db.stat().st_size for r in ranks),
        "items_file_bytes": sum(paths.ledger_paths(r).items.stat().st_size for r in ranks),
    }


# ------------------------------------------------------------------ generation 1


def _context(src: Path, out: Path) -> Any:
    from fetchshard.inputs import open_inputs
    from fetchshard.planning.leftover import SealContext
    from fetchshard.runfolder.generations import read_generations

    config = _config(src, out)
    return SealContext(
        out, config, open_inputs(config.input), read_generations(out), should_stop=lambda: False
    )


def own_sources(rank: int, world: int, new_world: int) -> list[int]:
    return list(range(rank, world, new_world))


def seal_rank(src: Path, out: Path, world: int, new_world: int, rank: int) -> dict[str, Any]:
    """Phase 1 of new rank ``rank``: the leftover slices of its own sources."""
    from fetchshard.planning.leftover import Source, seal

    ctx = _context(src, out)
    items = read = 0
    for i in own_sources(rank, world, new_world):
        done = seal(ctx, 1, Source(0, i))
        if done is None:
            raise RuntimeError(f"leftover of rank {i} is being written by another process")
        items += done.items
        read += done.bytes_read
    return {"sources": len(own_sources(rank, world, new_world)), "items": items,
            "bytes_of_sources": read}  # fmt: skip


def plan_new_rank(src: Path, out: Path, new_world: int, rank: int, ledger_dir: Path) -> dict:
    """Phase 2 of new rank ``rank`` into a fresh ledger in ``ledger_dir``."""
    from fetchshard.ledger import Ledger
    from fetchshard.planning.leftover import plan_generation_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import ledger_paths, rank_name

    ctx = _context(src, out)
    fp = _run_fp(ctx.config, ctx.inputs.files, new_world, 1)
    path = _fresh_ledger(ledger_dir, rank)
    with Ledger(ledger_paths(path)) as ledger:
        got = plan_generation_rank(ledger, ctx, RankInfo(rank, new_world, "benchmark"), fp, 1)
        total = ledger.counts().total
    assert path.name.startswith(rank_name(rank))
    return {"items": total, "kept": got.kept}


def _fresh_ledger(folder: Path, rank: int) -> Path:
    from fetchshard.runfolder.layout import rank_name

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob(f"{rank_name(rank)}*"):
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    return folder / f"{rank_name(rank)}.sqlite"


# ------------------------------------------------------------------ the baseline


def write_leftover_input(out: Path, world: int, path: Path, new_world: int, seed: int) -> dict:
    """The URLs of generation 0 without a committed row, shuffled, as a Parquet input."""
    from fetchshard.ledger import read_without_row
    from fetchshard.runfolder.layout import RunPaths

    paths = RunPaths(out)
    urls, ids = [], []
    for rank in range(world):
        files = paths.ledger_paths(rank)
        table = read_without_row(files.db, files.items)
        urls.append(table.column("url"))
        ids.append(table.column("item_id").to_numpy())
    all_urls = pa.chunked_array([c for u in urls for c in u.chunks], pa.string())
    order = np.random.default_rng(seed).permutation(len(all_urls))
    table = pa.table({"url": all_urls.take(pa.array(order))})
    groups = min(100_000, max(1000, -(-len(table) // (new_world * 4))))
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=groups)
    tmp.rename(path)
    item_ids = np.sort(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
    np.save(path.with_suffix(".ids.npy"), item_ids)
    return {"rows": len(table), "bytes": path.stat().st_size, "row_group_rows": groups}


def step_rank(src: Path, out: Path, new_world: int, rank: int) -> dict[str, Any]:
    from fetchshard.planning.step import plan_step_rank
    from fetchshard.ranks import RankInfo

    done = plan_step_rank(_config(src, out), RankInfo(rank, new_world, "benchmark"))
    return {"rows": done.rows, "items": done.items, "bytes_read_own_count": done.bytes_read}


def run_rank_planning(src: Path, out: Path, new_world: int, rank: int, ledger_dir: Path) -> dict:
    from fetchshard.inputs import open_inputs
    from fetchshard.ledger import Ledger
    from fetchshard.planning.planfile import plan_in_use
    from fetchshard.planning.rank import plan_rank
    from fetchshard.ranks import RankInfo
    from fetchshard.runfolder.layout import ledger_paths

    config = _config(src, out)
    inputs = open_inputs(config.input)
    from_plan = plan_in_use(config, inputs.files, new_world)
    assert from_plan is not None
    fp = _run_fp(config, inputs.files, new_world, 0)
    with Ledger(ledger_paths(_fresh_ledger(ledger_dir, rank))) as ledger:
        got = plan_rank(
            ledger, config, RankInfo(rank, new_world, "benchmark"), fp, inputs,
            from_plan=from_plan,
        )  # fmt: skip
        total = ledger.counts().total
    return {"items": total, "kept": got.kept}


# ------------------------------------------------------------------ child processes


def warm_template(work: Path) -> Path:
    """A tiny run for the children's warm-up: generation 0 of 2 ranks, half committed, and
    the manifest of generation 1 of 1 rank."""
    from fetchshard.planning.generations import enter_generation

    tiny = work / "warm.parquet"
    make_input(tiny, WARM_ROWS, "parquet", seed=2)
    template = work / "warm-template"
    build_generation0(tiny, template, 2, 0.5, 0.1, 1, 1)
    enter_generation(template, 1, (), lock_wait=0)
    return template


def _warm_up(work: Path) -> float:
    """Every code path once on a copy of the tiny run (phase 1, phase 2, a plan step and a
    run rank's planning from it), so that the bytes counted next are the run's, not those of
    modules imported on first use; returns the seconds it took."""
    from fetchshard.runfolder.layout import PlanPaths

    started = time.perf_counter()
    tiny = work / "warm.parquet"
    scratch = work / f"warm-{os.getpid()}"
    try:
        shutil.copytree(work / "warm-template", scratch)
        seal_rank(tiny, scratch, 2, 1, 0)
        plan_new_rank(tiny, scratch, 1, 0, scratch / "bench-gen")
        for path in PlanPaths(scratch).slice(0).files():
            path.unlink(missing_ok=True)
        plan_step_ranks(tiny, scratch, 2, [0])
        run_rank_planning(tiny, scratch, 2, 0, scratch / "bench-run")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - started


def child(args: argparse.Namespace) -> None:
    """One rank's measured work in its own process; prints one JSON line."""
    import fetchshard

    if not Path(fetchshard.__file__).is_relative_to(args.src_root):
        raise SystemExit(f"fetchshard imported from {fetchshard.__file__}, not {args.src_root}")
    warm = _warm_up(args.work)
    meter = Meter()
    if args.child == "seal":
        result = seal_rank(args.src, args.out, args.world, args.new_world, args.rank)
    elif args.child == "gen":
        result = plan_new_rank(args.src, args.out, args.new_world, args.rank, args.ledgers)
    elif args.child == "step":
        result = step_rank(args.src, args.out, args.new_world, args.rank)
    elif args.child == "run":
        result = run_rank_planning(args.src, args.out, args.new_world, args.rank, args.ledgers)
    else:
        raise SystemExit(f"unknown child {args.child}")
    result |= meter.stop()
    result["warm_up_seconds"] = round(warm, 3)
    print(json.dumps(result))


def timed_child(
    kind: str, rank: int, *, src: Path, out: Path, world: int, new_world: int, work: Path,
    ledgers: Path | None = None, cold: bool = False,
) -> dict[str, Any]:  # fmt: skip
    if cold:
        _drop_caches()
    cmd = [
        sys.executable, str(CHILD_SCRIPT), "--child", kind, "--rank", str(rank),
        "--src", str(src), "--out", str(out), "--world", str(world),
        "--new-world", str(new_world), "--work", str(work), "--src-root", str(SRC_IN_USE),
    ]  # fmt: skip
    if ledgers is not None:
        cmd += ["--ledgers", str(ledgers)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} rank {rank} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    # The process's life but the warm-up (an artefact of counting bytes, not of the rank).
    result["wall_seconds"] = round(time.perf_counter() - started - result["warm_up_seconds"], 3)
    return result


# ------------------------------------------------------------------ sizes and bounds


def _slice_sizes(slices: list[Any]) -> dict[str, Any]:
    from fetchshard.planning.slicefiles import read_hosts

    items = sum(s.items.stat().st_size for s in slices)
    hosts = sum(s.hosts.stat().st_size for s in slices)
    index = sum(s.index.stat().st_size for s in slices)
    rows = [len(read_hosts(s)[0]) for s in slices]
    done = [json.loads(s.done.read_text()) for s in slices]
    item_rows = sum(d["items"] for d in done)
    return {
        "slices": len(slices),
        "items_bytes": items,
        "hosts_bytes": hosts,
        "index_bytes": index,
        "item_rows": item_rows,
        "items_bytes_per_row": items / max(item_rows, 1),
        "hosts_per_slice_mean": round(float(np.mean(rows)), 1) if rows else 0,
        "hosts_per_slice_max": max(rows, default=0),
    }


def runs_of(slices: list[Any], world: int, sample: list[int]) -> dict[str, Any]:
    """The assignment over ``world`` ranks from ``slices``, and of each sampled rank's runs in
    a slice: its heavy hosts' pieces and the heavy hosts cut out of its small-host interval
    (two searches of each slice for each)."""
    from fetchshard.planning.planfile import RankRuns, plan_assignment

    assignment = plan_assignment(slices, world)
    ranks = {r: RankRuns.of(assignment, r) for r in sample}
    return {
        "heavy_hosts": len(assignment.big_hosts),
        "pieces": int(assignment.big_pieces.sum()),
        "ranks": {r: {"pieces": len(x.pieces), "skip": len(x.skip)} for r, x in ranks.items()},
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
    }


def _summaries(ranks: dict[int, dict[str, Any]], keys: tuple[str, ...]) -> dict[str, Any]:
    return {
        key: _summary([float(r[key]) for r in ranks.values()])
        for key in keys
        if ranks and all(key in r for r in ranks.values())
    }


# ------------------------------------------------------------------ checks


def _ledger_ids(folder: Path, ranks: Iterable[int]) -> dict[int, np.ndarray]:
    from fetchshard.ledger import ItemFile
    from fetchshard.runfolder.layout import items_file, rank_name

    found = {}
    for rank in ranks:
        reader = ItemFile(items_file(folder / f"{rank_name(rank)}.sqlite"))
        try:
            found[rank] = np.concatenate(
                [b.column("item_id").to_numpy() for b in reader.batches()]
                or [np.zeros(0, np.int64)]
            )
        finally:
            reader.close()
    return found


def check_ids(
    uncommitted: np.ndarray, ledgers: Path, ranks: list[int], every_rank: bool
) -> dict[str, Any]:
    """The sampled ranks' items: uncommitted items of generation 0, in one rank each; with
    every rank sampled, all of them."""
    got = _ledger_ids(ledgers, ranks)
    together = np.concatenate(list(got.values())) if got else np.zeros(0, np.int64)
    unique = np.unique(together)
    out = {
        "sampled_items": len(together),
        "sampled_duplicates": len(together) - len(unique),
        "sampled_not_uncommitted": int((~np.isin(unique, uncommitted)).sum()),
    }
    if every_rank:
        out["uncommitted_not_planned"] = int((~np.isin(uncommitted, unique)).sum())
    return out


# ------------------------------------------------------------------ the report


def machine() -> dict[str, Any]:
    from fetchshard import __version__

    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split()[1]
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory_gb": round(int(mem) / 2**20, 1),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "fetchshard": __version__,
        **SRC_STATE,
        "src_snapshot": str(SRC_IN_USE),
        "src_snapshot_sha256": _tree_digest(SRC_IN_USE),
        "read_ahead_kb": read_ahead_kb(SRC_IN_USE),
    }


def read_ahead_kb(path: Path) -> int | None:
    """The read-ahead of the block device holding ``path`` (a memory-mapped page fault reads
    this much around it, cold)."""
    dev = os.stat(path).st_dev
    block = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}")
    for queue in (block / "queue", block.parent / "queue", block / ".." / "queue"):
        try:
            return int((queue / "read_ahead_kb").read_text())
        except (OSError, ValueError):
            continue
    return None


def _tree_digest(root: Path) -> str:
    """One digest of every file of the source the run used (src/ may have been edited)."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    m = report["machine"]
    g0 = report["generation0"]
    w, nw = report["world"], report["new_world"]
    lines = [
        f"# Generations at scale: {report['rows']:,} rows, {w} -> {nw} ranks",
        "",
        f"`benchmarks/generations.py`, {report['date']}, commit {m['commit']}"
        + (f" (src/ modified: {', '.join(m['src_modified'])})" if m["src_modified"] else "")
        + f"; {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, Python {m['python']}, "
        f"pyarrow {m['pyarrow']}. Results: `{report['json_name']}`; the whole benchmark took "
        f"{report['total_seconds'] / 60:.1f} min"
        + (
            f" (generation 0 reused from an earlier run, which built it in "
            f"{(g0['plan_step_seconds'] + g0['plan_and_commit_seconds']) / 60:.1f} min)."
            if report.get("generation0_reused")
            else f", building generation 0 "
            f"{(g0['plan_step_seconds'] + g0['plan_and_commit_seconds']) / 60:.1f} min of it."
        ),
        "",
        f"Input: {report['rows']:,} URLs, Zipf(1.3) over 200,000 hosts, Parquet "
        f"({_mb(report['input_bytes'])}). Generation 0: {w} ranks planned from a plan step "
        f"({g0['items']:,} items), {g0['committed']:,} committed "
        f"({g0['committed'] / g0['items']:.1%}; {g0['failed']:,} of them failures) in "
        f"{PARTS} fake parts a rank, {g0['uncommitted']:,} left. Generation 1: {nw} ranks; "
        f"each new rank writes the leftover slices of its {w // nw}-{-(-w // nw)} sources "
        f"(phase 1), then plans its share of the leftover from all {w} slices (phase 2). "
        f"Baseline: the same leftover URLs written to a new input "
        f"({_mb(report['baseline']['input']['bytes'])}) and planned from scratch the fastest "
        f"way: the plan step of {nw} ranks, then each run rank from the plan. Sampled ranks: "
        f"{', '.join(str(r) for r in report['sample'])}; each measurement is its own process "
        '(interpreter start and a warm-up on a tiny run excluded from the bytes; "wall" is '
        "the process's life minus the warm-up).",
        "",
    ]
    for mode in report["modes"]:
        s = report["summary"][mode]
        lines += [
            f"## Per sampled new rank, {mode} page cache (median / max)",
            "",
            "| | generation 1: phase 1 | phase 2 | phase 1 + 2 | baseline: plan step "
            "| run planning | plan step + run |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, label, fmt in (
            ("work_seconds", "work s (in the process)", "{:.2f}"),
            ("cpu_seconds", "CPU s", "{:.2f}"),
            ("wall_seconds", "process wall s", "{:.2f}"),
            ("rchar", "rchar (read() calls)", "mb"),
            ("read_bytes", "read_bytes (from disk)", "mb"),
        ):
            cells = []
            for part in ("phase1", "phase2", "generation", "step", "run", "baseline"):
                v = s[part].get(key)
                if v is None:
                    cells.append("")
                elif fmt == "mb":
                    cells.append(f"{v['median'] / 1e6:.2f} / {v['max'] / 1e6:.2f} MB")
                else:
                    cells.append(f"{fmt.format(v['median'])} / {fmt.format(v['max'])}")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        items = s["phase2"]["items"]
        base_items = s["run"]["items"]
        lines.append(
            f"| items planned | | {items['median']:,.0f} / {items['max']:,.0f} | | | "
            f"{base_items['median']:,.0f} / {base_items['max']:,.0f} | |"
        )
        ratios = ", ".join(
            f"{label} {s['generation'][key]['median'] / s['baseline'][key]['median']:.2f}"
            for key, label in (
                ("work_seconds", "work"),
                ("cpu_seconds", "CPU"),
                ("wall_seconds", "process wall"),
                ("rchar", "rchar"),
                ("read_bytes", "read_bytes"),
            )
            if s["baseline"][key]["median"] > 0
        )
        lines += ["", f"Generation 1 (phase 1 + 2) over the baseline, medians: {ratios}.", ""]
        if mode == "cold":
            lines += [
                "Cold, phase 1 writes the sampled ranks' slices again after the warm pass, "
                "which folded their sources' commit logs: that fold is not in these figures.",
                "",
            ]
    b = report["bound"]
    p1 = report["summary"]["warm"]["phase1_all"]
    made = report["baseline"]["input"].get("seconds")
    if made is not None:
        lines += [
            "The baseline's figures leave out making its input: finding the items without a "
            "committed row in the old ledgers, which phase 1 does. This script did it in "
            f"{made:.1f} s in one process over all {w} ledgers (`read_without_row`, the URLs "
            f"shuffled and written), {made / nw:.2f} s per new rank if shared out.",
            "",
        ]
    runs = report["runs"]
    per_rank = {
        name: statistics.median(r["pieces"] + r["skip"] for r in runs[name]["ranks"].values())
        for name in ("generation", "baseline")
    }
    lines += [
        f"The assignments: generation 1 cuts the leftover's {runs['generation']['heavy_hosts']} "
        f"heavy hosts into {runs['generation']['pieces']:,} pieces, the baseline the same "
        f"hosts into {runs['baseline']['pieces']:,}; a sampled rank holds (or cuts out of its "
        f"small-host interval) {per_rank['generation']:.0f} heavy hosts in generation 1 and "
        f"{per_rank['baseline']:.0f} in the baseline (medians), two searches of every slice "
        "each.",
        "",
        f"Phase 1 of all {nw} new ranks (warm, median / max): work "
        f"{p1['work_seconds']['median']:.2f} / {p1['work_seconds']['max']:.2f} s, CPU "
        f"{p1['cpu_seconds']['median']:.2f} / {p1['cpu_seconds']['max']:.2f} s, process wall "
        f"{p1['wall_seconds']['median']:.2f} / {p1['wall_seconds']['max']:.2f} s, rchar "
        f"{p1['rchar']['median'] / 1e6:.2f} / {p1['rchar']['max'] / 1e6:.2f} MB. Work is the "
        "measured call alone (fsyncs included: the slices' files, the ledger's commit); "
        "process wall adds the interpreter's start and imports.",
        "",
        "## Against the bound",
        "",
        "Per new rank, phase 1 reads its sources' ledgers and items files whole: "
        f"(ledger + items bytes of generation 0) / W' = "
        f"({_mb(g0['ledger_bytes'])} + {_mb(g0['items_file_bytes'])}) / {nw} = "
        f"{_mb(b['phase1_per_rank_mean'])}, O(N/W'). Phase 2 reads every slice's host counts "
        f"and index, {_mb(b['phase2_hosts_index'])} for S = {b['slices']} slices "
        f"({b['hosts_per_slice_mean']:,.0f} hosts a slice on average), and its own runs, "
        f"{_mb(b['phase2_own_rows_median'])} (its items x {b['items_bytes_per_row']:.0f} bytes "
        f"a row): O(S x hosts per slice + N/W'). The baseline's run planning reads "
        f"{_mb(b['baseline_hosts_index'])} of host counts and indexes ({nw} slices) and its "
        f"own runs; its plan step 1/W' of the leftover input, "
        f"{_mb(report['baseline']['input']['bytes'] / nw)}.",
        "",
        "| per sampled rank (median) | bound from the files' sizes | measured |",
        "|---|---|---|",
        f"| phase 1: its sources' ledgers + items files | {_mb(b['phase1_median'])} | rchar "
        f"{_mb(report['summary']['warm']['phase1']['rchar']['median'])} warm"
        + (
            f", read_bytes {_mb(report['summary']['cold']['phase1']['read_bytes']['median'])} cold"
            if "cold" in report["modes"]
            else ""
        )
        + " |",
        f"| phase 2: all slices' hosts + index, own runs | "
        f"{_mb(b['phase2_hosts_index'] + b['phase2_own_rows_median'])} | "
        + (
            f"read_bytes {_mb(report['summary']['cold']['phase2']['read_bytes']['median'])} "
            f"cold, the device's read-ahead {m.get('read_ahead_kb')} KB (memory-mapped: rchar "
            f"{_mb(report['summary']['warm']['phase2']['rchar']['median'])} warm)"
            if "cold" in report["modes"]
            else "memory-mapped: rchar "
            f"{_mb(report['summary']['warm']['phase2']['rchar']['median'])} warm (run with "
            "--cold for read_bytes)"
        )
        + " |",
        f"| baseline run planning: {nw} slices' hosts + index, own runs | "
        f"{_mb(b['baseline_hosts_index'] + b['baseline_own_rows_median'])} | "
        + (
            f"read_bytes {_mb(report['summary']['cold']['run']['read_bytes']['median'])} cold"
            if "cold" in report["modes"]
            else f"rchar {_mb(report['summary']['warm']['run']['rchar']['median'])} warm"
        )
        + " |",
        "",
        "Cold, a rank reads a memory-mapped slice by the page, and the kernel reads ahead "
        "around each fault: a run of a few rows touches a page of each column buffer of its "
        f"record batch, and each search for a heavy host its batch's hash columns, in each of "
        f"the {w} slices, so what it reads grows with S x (runs + heavy hosts searched) a "
        "slice, not with the bytes it keeps.",
        "",
        "## Checks",
        "",
    ]
    for key, value in report["checks"].items():
        lines.append(f"- {key}: {value}")
    lines.append("")
    path.write_text("\n".join(lines))


# ------------------------------------------------------------------ main


SRC_IN_USE = SRC
CHILD_SCRIPT = Path(__file__)
SRC_STATE: dict[str, Any] = {}  # the commit the run's src/ came from, and what was modified


def _snapshot_src(work: Path, rev: str) -> Path:
    """A copy of src/ (``rev`` "live": as it is on disk; else that commit's, ``git archive``)
    and of this script for this run: edits to either while it runs change nothing (the
    children run the copy)."""
    global CHILD_SCRIPT, SRC_STATE
    dest = work / "src-snapshot"
    shutil.rmtree(dest, ignore_errors=True)
    if rev == "live":
        shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns("__pycache__"))
        diff = _git("diff", "HEAD", "--", "src")
        (work / "src-snapshot.diff").write_text(diff)  # what src/ held beyond the commit
        dirty = _git("status", "--porcelain", "--", "src")
        SRC_STATE = {"commit": _git("rev-parse", "--short=12", "HEAD").strip(),
                     "src_modified": [line[3:] for line in dirty.splitlines()]}  # fmt: skip
    else:
        commit = _git("rev-parse", "--short=12", f"{rev}^{{commit}}").strip()
        if not commit:
            raise SystemExit(f"--fetchshard-src {rev}: no such commit in {HERE.parent}")
        archive = subprocess.run(
            ["git", "-C", str(HERE.parent), "archive", commit, "src"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        unpacked = work / "src-archive"
        shutil.rmtree(unpacked, ignore_errors=True)
        unpacked.mkdir()
        subprocess.run(["tar", "-x", "-C", str(unpacked)], input=archive, check=True)
        (unpacked / "src").rename(dest)
        unpacked.rmdir()
        SRC_STATE = {"commit": commit, "src_modified": []}
    scripts = work / "bench-snapshot"
    scripts.mkdir(exist_ok=True)
    for name in (Path(__file__).name, "plan_step.py"):
        shutil.copy2(HERE / name, scripts / name)
    CHILD_SCRIPT = scripts / Path(__file__).name
    return dest


def _git(*args: str) -> str:
    """git's output in this checkout ("" outside one: a live src/ runs anyway)."""
    done = subprocess.run(["git", "-C", str(HERE.parent), *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def _sample(text: str, new_world: int) -> list[int]:
    if text == "all" or (text == "auto" and new_world <= 8):
        return list(range(new_world))
    if text == "auto":
        return sorted({round(k * (new_world - 1) / 7) for k in range(8)})
    return [int(r) for r in text.split(",")]


def main() -> None:
    global SRC_IN_USE
    today = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--world", type=int, default=400, help="generation 0's ranks")
    parser.add_argument("--new-world", type=int, default=100, help="generation 1's ranks")
    parser.add_argument("--committed", type=float, default=0.6)
    parser.add_argument("--failed", type=float, default=0.03, help="of the committed items")
    parser.add_argument("--sample", default="auto", help="new ranks measured: auto, all, 0,5,..")
    parser.add_argument("--cold", action="store_true", help="also measure cold (needs root)")
    parser.add_argument("--jobs", type=int, default=2, help="processes building generation 0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse generation 0 as an earlier run built it"
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/fetchshard-generations"))
    parser.add_argument("--json", type=Path, default=HERE / "results" / f"generations-{today}.json")
    parser.add_argument("--md", type=Path, default=HERE / "results" / "generations.md")
    parser.add_argument(
        "--fetchshard-src",
        default="live",
        metavar="live|REV",
        help="live: src/ as it is on disk (copied at the start); REV (e.g. HEAD): that "
        "commit's src/, so edits during the benchmark do not change what runs",
    )
    parser.add_argument(
        "--markdown-from", type=Path, default=None, help="only write --md from this JSON"
    )
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ledgers", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--src-root", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        SRC_IN_USE = args.src_root
        _use_src(SRC_IN_USE)
        child(args)
        return
    if args.markdown_from is not None:
        write_markdown(json.loads(args.markdown_from.read_text()), args.md)
        return
    if args.cold and not _can_drop_caches():
        raise SystemExit("--cold drops the page cache: it needs root")
    started = time.perf_counter()
    load_before = os.getloadavg()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    SRC_IN_USE = _snapshot_src(work, args.fetchshard_src)
    _use_src(SRC_IN_USE)
    from fetchshard.planning.generations import enter_generation
    from fetchshard.runfolder.layout import GenerationPaths, PlanPaths

    world, new_world = args.world, args.new_world
    sample = _sample(args.sample, new_world)
    every_rank = sample == list(range(new_world))
    warm_template(work)
    src = work / f"input-{args.rows}.parquet"
    t0 = time.perf_counter()
    make_input(src, args.rows, "parquet", seed=args.seed)
    print(f"input {src}: {src.stat().st_size:,} bytes ({time.perf_counter() - t0:.0f} s)")

    out = work / f"out-{args.rows}-{world}"
    # Generation 0 as built, kept aside (--reuse): phase 1 changes its ledgers (the fold).
    pristine = work / f"gen0-{args.rows}-{world}-{args.committed}-{args.failed}-{args.seed}"
    t0 = time.perf_counter()
    reused = args.reuse and (pristine / "generation0.json").exists()
    if reused:
        g0 = json.loads((pristine / "generation0.json").read_text())
    else:
        jobs = args.jobs if args.rows >= 1_000_000 else 1  # a pool's start-up outweighs it
        g0 = build_generation0(src, pristine, world, args.committed, args.failed, args.seed, jobs)
        (pristine / "generation0.json").write_text(json.dumps(g0))
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(pristine, out)
    subprocess.run(["sync"], check=True)
    print(
        f"generation 0: {world} ranks, {g0['items']:,} items, {g0['committed']:,} committed, "
        f"{g0['uncommitted']:,} left ({time.perf_counter() - t0:.0f} s: plan step "
        f"{g0['plan_step_seconds']:.0f} s, planning and commits "
        f"{g0['plan_and_commit_seconds']:.0f} s)"
    )
    leftover_src = work / f"leftover-{args.rows}-{world}.parquet"
    leftover_src.unlink(missing_ok=True)
    t0 = time.perf_counter()
    baseline_input = write_leftover_input(out, world, leftover_src, new_world, args.seed)
    # Not counted in the baseline's figures: what phase 1 does, finding the items without a
    # committed row, done here in one process over every old ledger.
    baseline_input["seconds"] = round(time.perf_counter() - t0, 2)
    uncommitted = np.load(leftover_src.with_suffix(".ids.npy"))
    print(f"leftover input {leftover_src}: {baseline_input['rows']:,} rows, "
          f"{baseline_input['bytes']:,} bytes")  # fmt: skip

    enter_generation(out, new_world, (), lock_wait=0)
    common = {"src": src, "out": out, "world": world, "new_world": new_world, "work": work}
    modes = ["warm", *(["cold"] if args.cold else [])]
    measured: dict[str, dict[str, dict[int, dict[str, Any]]]] = {m: {} for m in modes}
    t0 = time.perf_counter()
    phase1_all = {p: timed_child("seal", p, **common) for p in range(new_world)}
    measured["warm"]["phase1"] = {p: phase1_all[p] for p in sample}
    print(f"phase 1 of {new_world} new ranks: {time.perf_counter() - t0:.0f} s")
    gen_slices = [GenerationPaths(out, 1).leftover(0, i) for i in range(world)]
    leftover_items = sum(json.loads(s.done.read_text())["items"] for s in gen_slices)
    for mode in modes:
        cold = mode == "cold"
        if cold:  # the sampled ranks' slices written again, cold
            measured[mode]["phase1"] = {}
            for p in sample:
                for i in own_sources(p, world, new_world):
                    for path in gen_slices[i].files():
                        path.unlink(missing_ok=True)
                measured[mode]["phase1"][p] = timed_child("seal", p, cold=True, **common)
        ledgers = work / f"gen1-ledgers-{mode}"
        shutil.rmtree(ledgers, ignore_errors=True)
        measured[mode]["phase2"] = {
            p: timed_child("gen", p, ledgers=ledgers, cold=cold, **common) for p in sample
        }
        for p in sample:
            one, two = measured[mode]["phase1"][p], measured[mode]["phase2"][p]
            print(
                f"{mode} new rank {p}: phase 1 {one['wall_seconds']:.2f} s, phase 2 "
                f"{two['wall_seconds']:.2f} s ({two['items']:,} items)"
            )
    id_checks = check_ids(uncommitted, work / "gen1-ledgers-warm", sample, every_rank)

    # The baseline: the leftover planned from scratch with a plan step of W' ranks.
    base_out = work / f"baseline-{args.rows}-{world}-{new_world}"
    shutil.rmtree(base_out, ignore_errors=True)
    base = {"src": leftover_src, "out": base_out, "world": world, "new_world": new_world,
            "work": work}  # fmt: skip
    for mode in modes:
        cold = mode == "cold"
        step: dict[int, dict[str, Any]] = {}
        for r in range(new_world):
            if r in sample:
                if cold:
                    for path in PlanPaths(base_out).slice(r).files():
                        path.unlink(missing_ok=True)
                step[r] = timed_child("step", r, cold=cold, **base)
            elif not cold:
                plan_step_ranks(leftover_src, base_out, new_world, [r])
        measured[mode]["step"] = step
        ledgers = work / f"baseline-ledgers-{mode}"
        shutil.rmtree(ledgers, ignore_errors=True)
        measured[mode]["run"] = {
            r: timed_child("run", r, ledgers=ledgers, cold=cold, **base) for r in sample
        }
        for r in sample:
            print(f"{mode} baseline rank {r}: plan step {step[r]['wall_seconds']:.2f} s, "
                  f"run planning {measured[mode]['run'][r]['wall_seconds']:.2f} s "
                  f"({measured[mode]['run'][r]['items']:,} items)")  # fmt: skip
    base_slices = [PlanPaths(base_out).slice(r) for r in range(new_world)]
    base_items = sum(json.loads(s.done.read_text())["items"] for s in base_slices)

    # Per rank: the two phases together, the baseline's two steps together.
    keys = ("wall_seconds", "work_seconds", "cpu_seconds", "rchar", "read_bytes")
    for mode in modes:
        m = measured[mode]
        m["generation"] = {p: {k: m["phase1"][p][k] + m["phase2"][p][k] for k in keys}
                           for p in sample}  # fmt: skip
        m["baseline"] = {p: {k: m["step"][p][k] + m["run"][p][k] for k in keys}
                         for p in sample}  # fmt: skip
    summary = {
        mode: {part: _summaries(ranks, (*keys, "items")) for part, ranks in measured[mode].items()}
        for mode in modes
    }
    summary["warm"]["phase1_all"] = _summaries(phase1_all, keys)

    runs = {"generation": runs_of(gen_slices, new_world, sample),
            "baseline": runs_of(base_slices, new_world, sample)}  # fmt: skip
    gen_sizes = _slice_sizes(gen_slices)
    base_sizes = _slice_sizes(base_slices)
    phase1_bounds = [measured["warm"]["phase1"][p]["bytes_of_sources"] for p in sample]
    own_rows = [measured["warm"]["phase2"][p]["items"] * gen_sizes["items_bytes_per_row"]
                for p in sample]  # fmt: skip
    base_rows = [measured["warm"]["run"][p]["items"] * base_sizes["items_bytes_per_row"]
                 for p in sample]  # fmt: skip
    bound = {
        "slices": world,
        "hosts_per_slice_mean": gen_sizes["hosts_per_slice_mean"],
        "items_bytes_per_row": gen_sizes["items_bytes_per_row"],
        "phase1_per_rank_mean": (g0["ledger_bytes"] + g0["items_file_bytes"]) / new_world,
        "phase1_median": statistics.median(phase1_bounds),
        "phase1_max": max(phase1_bounds),
        "phase2_hosts_index": gen_sizes["hosts_bytes"] + gen_sizes["index_bytes"],
        "phase2_own_rows_median": statistics.median(own_rows),
        "baseline_hosts_index": base_sizes["hosts_bytes"] + base_sizes["index_bytes"],
        "baseline_own_rows_median": statistics.median(base_rows),
    }
    planned = sum(r["items"] for r in measured["warm"]["phase2"].values())
    checks: dict[str, Any] = {
        "uncommitted": g0["uncommitted"],
        "leftover_items_in_slices": leftover_items,
        "leftover_equals_uncommitted": leftover_items == g0["uncommitted"],
        "baseline_input_rows": baseline_input["rows"],
        "baseline_plan_items": base_items,
        "baseline_equals_uncommitted": base_items == g0["uncommitted"]
        and baseline_input["rows"] == g0["uncommitted"],
        "every_sampled_rank_planned_items": all(
            measured[mode]["phase2"][p]["items"] > 0 for mode in modes for p in sample
        ),
        **id_checks,
    }
    if every_rank:
        checks["planned_over_all_new_ranks"] = planned
        checks["planned_equals_uncommitted"] = planned == g0["uncommitted"]
        base_planned = sum(r["items"] for r in measured["warm"]["run"].values())
        checks["baseline_planned_over_all_ranks"] = base_planned
    report: dict[str, Any] = {
        "date": today,
        "machine": machine(),
        "rows": args.rows,
        "world": world,
        "new_world": new_world,
        "committed_fraction": args.committed,
        "failed_fraction": args.failed,
        "sample": sample,
        "modes": modes,
        "input_bytes": src.stat().st_size,
        "generation0": g0,
        "leftover_slices": gen_sizes,
        "baseline": {"input": baseline_input, "plan_slices": base_sizes},
        "bound": bound,
        "runs": runs,
        "phase1_all_ranks": phase1_all,
        "measured": measured,
        "summary": summary,
        "checks": checks,
        "json_name": args.json.name,
        "generation0_reused": reused,
    }
    report["total_seconds"] = round(time.perf_counter() - started, 1)
    # Load averages (1, 5, 15 min) at the start and the end: other work on the machine.
    report["machine"]["load_average"] = {"start": load_before, "end": os.getloadavg()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.md)
    print(json.dumps(checks))
    print(f"wrote {args.json} and {args.md} ({report['total_seconds'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
