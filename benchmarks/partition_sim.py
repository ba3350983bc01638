"""Partition simulation (issue 5): how evenly fetchshard's host-aware partition spreads work.

    python benchmarks/partition_sim.py --ranks 400 --urls 10000000 --hosts 545

Synthetic URLs over hosts with a Zipf distribution (a few hosts hold most URLs, like GBIF's
545 servers). Prints items per rank (max/mean), ranks per host (at most ``spread``) and checks
that every host's per-rank rate shares sum exactly to the configured rate. Seeded; CPU only.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from fractions import Fraction

from fetchshard.planning.placement import FixedSpread
from fetchshard.urls import hash64


def zipf_hosts(n_hosts: int, n_urls: int, s: float, rng: random.Random) -> list[int]:
    weights = [1.0 / (k**s) for k in range(1, n_hosts + 1)]
    return rng.choices(range(n_hosts), weights=weights, k=n_urls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=400)
    parser.add_argument("--urls", type=int, default=1_000_000)
    parser.add_argument("--hosts", type=int, default=545)
    parser.add_argument("--spread", type=int, default=None, help="default: = --ranks")
    parser.add_argument("--zipf", type=float, default=1.1)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    spread = args.spread or args.ranks
    part = FixedSpread(args.ranks, spread)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    host_of = zipf_hosts(args.hosts, args.urls, args.zipf, rng)
    names = [f"server{h}.example.org" for h in range(args.hosts)]
    host_hash = [hash64(n) for n in names]
    per_rank: Counter[int] = Counter()
    ranks_of_host: dict[int, set[int]] = {}
    for i, h in enumerate(host_of):
        bucket = hash64(f"https://{names[h]}/img/{i}.jpg") % spread
        rank = (host_hash[h] + bucket) % args.ranks
        per_rank[rank] += 1
        ranks_of_host.setdefault(h, set()).add(rank)
    elapsed = time.perf_counter() - started
    counts = [per_rank.get(r, 0) for r in range(args.ranks)]
    mean = statistics.fmean(counts)
    # Shares summed exactly (fractions): what each rank allows itself for a host.
    exact = all(
        sum(Fraction(part.owned_buckets(n, r), spread) for r in range(args.ranks)) == 1
        for n in names
    )
    host_sizes = Counter(host_of)
    result = {
        "ranks": args.ranks,
        "urls": args.urls,
        "hosts": args.hosts,
        "spread": spread,
        "zipf": args.zipf,
        "largest_host_share": round(host_sizes.most_common(1)[0][1] / args.urls, 4),
        "items_per_rank_max_over_mean": round(max(counts) / mean, 4),
        "items_per_rank_min_over_mean": round(min(counts) / mean, 4),
        "max_ranks_per_host": max(len(v) for v in ranks_of_host.values()),
        "rate_shares_sum_to_rate_exactly": exact,
        "seconds": round(elapsed, 1),
        "urls_per_second": round(args.urls / elapsed),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
