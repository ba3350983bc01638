"""The Python ceiling: the least an aiohttp client can do for a URL list.

    python benchmarks/bare_aiohttp.py URLS.txt [--concurrency 512] [--processes N]

One process, uvloop, one ClientSession with a TCPConnector(limit=512) and no per-host limit,
a pool of workers that read and discard each body. No politeness, no retries, no output.
Prints one JSON line: ok, errors, bytes, seconds. ``--processes N`` runs N such processes on
interleaved shares of the list at once (the ceiling of N ranks) and prints their sums.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections import Counter

import aiohttp


async def fetch_all(urls: list[str], concurrency: int) -> dict[str, object]:
    ok = errors = received = 0
    kinds: Counter[str] = Counter()
    queue = iter(urls)  # shared iterator: workers take the next URL, no task per URL
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=120, sock_connect=10, sock_read=30)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal ok, errors, received
            for url in queue:
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        if resp.status == 200:
                            ok += 1
                            received += len(body)
                        else:
                            errors += 1
                            kinds[f"http_{resp.status}"] += 1
                except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                    errors += 1
                    kinds[type(exc).__name__] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "ok": ok,
        "errors": errors,
        "error_kinds": dict(kinds),
        "bytes": received,
        "seconds": round(time.perf_counter() - started, 3),
    }


def _side_by_side(args: argparse.Namespace) -> dict[str, object]:
    """N processes of this script on shares k/N, started together; their results summed."""
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                *(sys.executable, __file__, args.urls),
                *("--concurrency", str(args.concurrency), "--share", f"{k}/{args.processes}"),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for k in range(args.processes)
    ]
    results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    kinds: Counter[str] = Counter()
    for r in results:
        kinds.update(r["error_kinds"])
    return {
        "ok": sum(r["ok"] for r in results),
        "errors": sum(r["errors"] for r in results),
        "error_kinds": dict(kinds),
        "bytes": sum(r["bytes"] for r in results),
        "seconds": round(time.perf_counter() - started, 3),
        "processes": args.processes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls")
    parser.add_argument("--concurrency", type=int, default=512)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--share", default="0/1", help="k/N: every N-th URL from the k-th")
    args = parser.parse_args()
    if args.processes > 1:
        print(json.dumps(_side_by_side(args)), flush=True)
        return
    k, n = (int(x) for x in args.share.split("/"))
    with open(args.urls, encoding="utf-8") as fh:
        urls = [line.strip() for line in fh if line.strip()][k::n]
    coro = fetch_all(urls, args.concurrency)
    try:
        import uvloop
    except ImportError:  # still a fair ceiling on platforms without uvloop, only lower
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
