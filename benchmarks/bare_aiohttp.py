"""The Python ceiling: the least an aiohttp client can do for a URL list.

    python benchmarks/bare_aiohttp.py URLS.txt [--concurrency 512]

One process, uvloop, one ClientSession with a TCPConnector(limit=512) and no per-host limit,
a pool of workers that read and discard each body. No politeness, no retries, no output.
Prints one JSON line: ok, errors, bytes, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("urls")
    parser.add_argument("--concurrency", type=int, default=512)
    args = parser.parse_args()
    with open(args.urls, encoding="utf-8") as fh:
        urls = [line.strip() for line in fh if line.strip()]
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
