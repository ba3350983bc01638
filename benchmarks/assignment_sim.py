"""Balance of the host assignment (issue 19) against today's fixed spread, on Zipf inputs.

    python benchmarks/assignment_sim.py [--items 10000000] [--hosts 200000] [--json OUT.json]

For each world size and Zipf exponent: host counts drawn once (seeded multinomial), every
item's rank computed with the code's own rules, vectorized: ``FixedSpread``'s
``(h(host) + h(key) mod spread) mod W`` for each fixed spread, and ``Assignment.ranks_of`` for
the counted assignment (uniform 64-bit key hashes stand in for XXH3's). Prints and writes
max/mean and min/mean items per rank, the ranks of the largest host, and how long
``Assignment.from_counts`` took. CPU only, no network.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from fetchshard.planning.assignment import Assignment  # noqa: E402
from fetchshard.urls import hash64  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=10_000_000)
    parser.add_argument("--hosts", type=int, default=200_000)
    parser.add_argument("--worlds", default="8,400")
    parser.add_argument("--exponents", default="1.1,1.3,1.5")
    parser.add_argument("--spreads", default="16,64")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=HERE / "results" / "assignment-latest.json")
    args = parser.parse_args()
    names = np.array([hash64(f"server{k}.example.org") for k in range(args.hosts)], np.uint64)
    rows: list[dict[str, Any]] = []
    for exponent in (float(e) for e in args.exponents.split(",")):
        weights = 1.0 / np.arange(1, args.hosts + 1) ** exponent
        rng = np.random.default_rng(args.seed)
        counts = rng.multinomial(args.items, weights / weights.sum())
        present = counts > 0
        hosts, counts = names[present], counts[present]
        item_hosts = np.repeat(hosts, counts)
        keys = rng.integers(0, 2**64, args.items, dtype=np.uint64)
        top = int(hosts[np.argmax(counts)])
        for world in (int(w) for w in args.worlds.split(",")):
            mean = args.items / world
            row: dict[str, Any] = {
                "world_size": world,
                "zipf": exponent,
                "largest_host_share": round(float(counts.max()) / args.items, 4),
            }
            for spread in (int(s) for s in args.spreads.split(",")):
                ranks = ((item_hosts + keys % np.uint64(spread)) % np.uint64(world)).astype(
                    np.int64
                )
                per = np.bincount(ranks, minlength=world)
                row[f"spread_{spread}"] = [round(per.max() / mean, 3), round(per.min() / mean, 3)]
            started = time.perf_counter()
            plan = Assignment.from_counts(hosts, counts, world)
            row["assignment_seconds"] = round(time.perf_counter() - started, 3)
            per = np.bincount(plan.ranks_of(item_hosts, keys), minlength=world)
            row["assignment"] = [round(per.max() / mean, 3), round(per.min() / mean, 3)]
            row["largest_host_ranks"] = len(plan.ranks_of_host(top))
            rows.append(row)
            print(json.dumps(row), flush=True)
    doc = {"items": args.items, "hosts": args.hosts, "seed": args.seed, "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
