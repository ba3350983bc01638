"""Planning speed in-process: ``plan_rank()`` of rank 0 over a Parquet URL file (issue 5, target 5).

    python benchmarks/plan_speed.py FILE.parquet [--world-sizes 1,8,64,400] [--repeat 3]
                                    [--batch-rows N]

For each world size, rank 0 plans into a fresh ledger in a temporary folder (interpreter
start and imports excluded, which ``run.py --scale`` includes): input rows per second (every
rank reads and hashes every row; it keeps and inserts 1/world_size of them) and CPU seconds,
medians of ``--repeat`` runs. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from fetchshard.config import load_config
from fetchshard.ledger import Ledger
from fetchshard.planning.rank import plan_rank
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.layout import ledger_paths


def plan_once(path: Path, world_size: int, batch_rows: int | None) -> dict[str, float]:
    overrides: dict[str, Any] = {"input.paths": [str(path)]}
    if batch_rows:
        overrides["input.batch_rows"] = batch_rows
    config = load_config(environ={}, overrides=overrides)
    with tempfile.TemporaryDirectory(prefix="plan-speed-") as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        with Ledger(ledger_paths(Path(tmp) / "rank-00000.sqlite")) as ledger:
            result = plan_rank(ledger, config, RankInfo(0, world_size, "benchmark"), {"fp": 1})
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"rows": result.rows, "kept": result.kept, "seconds": wall, "cpu_s": cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parquet", type=Path)
    parser.add_argument("--world-sizes", default="1,8,64,400")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-rows", type=int, default=None, help="default: the config's")
    args = parser.parse_args()
    out: dict[str, Any] = {
        "file": str(args.parquet),
        "repeat": args.repeat,
        "batch_rows": args.batch_rows,
        "runs": {},
    }
    for world_size in (int(w) for w in args.world_sizes.split(",")):
        runs = [plan_once(args.parquet, world_size, args.batch_rows) for _ in range(args.repeat)]
        seconds = statistics.median(r["seconds"] for r in runs)
        out["runs"][world_size] = {
            "rows": runs[0]["rows"],
            "kept": runs[0]["kept"],
            "median_s": round(seconds, 3),
            "median_cpu_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
            "rows_per_s": round(runs[0]["rows"] / seconds),
            "all_s": [round(r["seconds"], 3) for r in runs],
        }
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
