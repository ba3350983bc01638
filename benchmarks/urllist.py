"""The URL list every client gets: N unique URLs over the hosts, shuffled with a seed."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from corpus import Corpus


@dataclass(frozen=True)
class UrlList:
    path: Path
    urls: list[str]
    sizes: list[int]  # bytes of the corpus file behind each URL: what a fetch must bring

    @property
    def expected_bytes(self) -> int:
        return sum(self.sizes)

    def __len__(self) -> int:
        return len(self.urls)

    def head(self, n: int, path: Path) -> UrlList:
        """The first ``n`` URLs (still shuffled), for a peer too slow for the whole list."""
        if n >= len(self.urls):
            return self
        with open(path, "w", encoding="utf-8") as fh:
            fh.writelines(f"{u}\n" for u in self.urls[:n])
        return UrlList(path, self.urls[:n], self.sizes[:n])


def make_urls(
    corpus: Corpus, addresses: list[str], port: int, n: int, seed: int = 0
) -> tuple[list[str], list[int]]:
    """URL k = http://HOST:PORT/img/NNNN.jpg?u=k.

    (host, file) pairs are drawn without repetition until all of them are used (64 hosts x
    2,000 files = 128,000), then again; ``?u=k`` keeps every URL unique either way, so no
    client can deduplicate or serve a URL from a cache."""
    rng = random.Random(seed)
    pairs = [(h, f) for h in range(len(addresses)) for f in range(len(corpus.names))]
    chosen: list[tuple[int, int]] = []
    while len(chosen) < n:
        rng.shuffle(pairs)
        chosen.extend(pairs[: n - len(chosen)])
    rng.shuffle(chosen)
    urls = [
        f"http://{addresses[h]}:{port}/img/{corpus.names[f]}?u={k}"
        for k, (h, f) in enumerate(chosen)
    ]
    return urls, [f for _, f in chosen]


def write_url_list(
    path: Path, corpus: Corpus, addresses: list[str], port: int, n: int, seed: int = 0
) -> UrlList:
    urls, files = make_urls(corpus, addresses, port, n, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(f"{u}\n" for u in urls)
    return UrlList(path, urls, [corpus.sizes[f] for f in files])


def write_parquet_urls(path: Path, urls: list[str]) -> None:
    """The same URLs as a Parquet file with a ``url`` column (the planning measurement)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"url": pa.array(urls, pa.string())}), path)
