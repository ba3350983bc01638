"""Issue 19, acceptance 2: `--ranks 8` on a Zipf input, placed by the counted assignment."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from fetchshard.assignment import Assignment
from fetchshard.config import load_config
from fetchshard.inputs import open_inputs
from fetchshard.partition import hash64, item_id, normalize_url
from fetchshard.plan import count_hosts
from server import ServerProcess
from util import assert_exactly_once, run_subprocess

WORLD = 8
HOSTS = 120
ITEMS = 6000


def _zipf_urls(base_urls: list[str], seed: int) -> list[str]:
    """ITEMS distinct URLs whose hosts follow Zipf(1.3), in random order, a few repeated."""
    weights = 1.0 / np.arange(1, len(base_urls) + 1) ** 1.3
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(ITEMS, weights / weights.sum())
    urls = [f"{base}/ok/z{h}-{i}" for h, base in enumerate(base_urls) for i in range(counts[h])]
    rng.shuffle(urls)
    return urls + urls[:50]  # repeats: rows, not items


@pytest.mark.timeout(300)
def test_eight_ranks_on_a_zipf_input_fetch_each_item_once_where_the_assignment_says(
    tmp_path: Path,
) -> None:
    with ServerProcess(hosts=HOSTS, address_mode="addresses") as srv:
        urls = _zipf_urls(list(srv.base_urls), seed=19)
        src = tmp_path / "urls.txt"
        src.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
        out = tmp_path / "out"
        settings = ["--set", "fetch.per_host_rate=2000", "--set", "fetch.per_host_burst=200"]
        done = run_subprocess(
            "run", str(src), "-o", str(out), "--ranks", str(WORLD), *settings, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        served = Counter(r["path"] for r in srv.requests() if r["path"].startswith("/ok/z"))

    unique = sorted(set(urls))
    # Each item fetched exactly once, one row each.
    assert assert_exactly_once(out, WORLD) == len(unique)
    assert served == Counter({u[u.index("/ok/") :]: 1 for u in unique})

    # Per rank: exactly the items the code's own assignment puts there, and balanced.
    config = load_config(environ={}, overrides={"input.paths": [str(src)]})
    hosts, counts = count_hosts(open_inputs(config.input), config.input.max_url_length)
    assert int(counts.sum()) == len(urls)
    assignment = Assignment.from_counts(hosts, counts, WORLD)
    parsed = [normalize_url(u) for u in unique]
    want = assignment.ranks_of(
        np.array([hash64(p.host) for p in parsed], np.uint64),
        np.array([hash64(p.url) for p in parsed], np.uint64),
    )
    by_id = {item_id(p.url): int(r) for p, r in zip(parsed, want, strict=True)}
    per_rank = []
    for rank in range(WORLD):
        parts = sorted((out / "shards" / f"rank-{rank:05d}").glob("*.parquet"))
        ids = [i for p in parts for i in pq.read_table(p, columns=["item_id"])["item_id"]]
        assert {by_id[i.as_py()] for i in ids} == {rank}
        per_rank.append(len(ids))
    assert per_rank == np.bincount(want, minlength=WORLD).tolist()
    mean = len(unique) / WORLD
    assert max(per_rank) / mean <= 1.05, per_rank
    # Hosts below a rank's mean share sit on one rank; the rest on no more than they need.
    host_of = {item_id(p.url): p.host for p in parsed}
    ranks_of_host: dict[str, set[int]] = {}
    for item, rank in by_id.items():
        ranks_of_host.setdefault(host_of[item], set()).add(rank)
    size = Counter(p.host for p in parsed)
    assert max(size.values()) > 2 * mean, "the input has a host heavier than two ranks"
    for host, ranks in ranks_of_host.items():
        assert len(ranks) == 1 or size[host] >= mean, (host, size[host], ranks)
