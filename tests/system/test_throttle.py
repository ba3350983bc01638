"""A host that answers only 429 is given up in bounded time; the others are not held back."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fetchshard.config import FetchConfig
from fetchshard.engine.retry import throttled_host_bound
from server import HubProcess, HubRepo, ServerProcess
from util import FAST, arrivals, fetchshard_cmd, max_excess, rows_by_url, run_subprocess

SHORT = {  # the same code path as the defaults, with windows a test can wait for
    "fetch.per_host_rate": 20.0,
    "fetch.per_host_burst": 2,
    "fetch.per_host_min_rate": 5.0,
    "fetch.host_throttle_window": 2.0,
    "fetch.host_cooldown": 0.5,
    "fetch.host_max_cooldowns": 1,
    "fetch.retry_max_delay": 0.5,
    "fetch.retry_after_max": 1.0,
    "fetch.total_timeout": 5.0,
    "fetch.connect_timeout": 1.0,
    "partition.spread": 1,
}


def test_a_host_answering_only_429_ends_as_rate_limited_within_its_bound(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    throttling = [server_process.url(f"/status/429?t=thr429-{i}", host=0) for i in range(40)]
    good = [server_process.url(f"/ok/thr-{i}", host=1 + i % 3) for i in range(300)]
    src, out = url_file([*throttling, *good]), tmp_path / "out"
    settings = [arg for key, value in SHORT.items() for arg in ("--set", f"{key}={value}")]
    started = time.monotonic()
    done = run_subprocess("run", str(src), "-o", str(out), *FAST, *settings)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    config = FetchConfig(**{k.split(".")[1]: v for k, v in SHORT.items() if k.startswith("fetch.")})
    bound = throttled_host_bound(config, 1)
    assert bound < 20
    assert elapsed < bound + 5.0, (elapsed, bound)  # + start-up and the good hosts
    rows = rows_by_url(out)
    assert {rows[u]["error_kind"] for u in throttling} == {"rate_limited"}
    assert {rows[u]["status"] for u in good} == {"ok"}
    times = arrivals(server_process, "thr429-")
    assert max_excess(times, rate=20.0, burst=2) <= 0
    host = urlsplit(throttling[0]).netloc
    assert f"{host}: only 429/503 for 2s, no success: cool-down 1 of 1" in done.stderr
    assert f"{host} answered only 429/503 through 1 cool-downs" in done.stderr


def test_a_rank_with_nothing_in_flight_says_what_it_waits_for(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    """Three URLs answered 429 + Retry-After: 3 at first: the rank logs the parked host and
    shows it in its progress snapshot while it waits, then fetches them."""
    urls = [server_process.url(f"/retry-after/why-{i}/3", host=2) for i in range(3)]
    src, out = url_file(urls), tmp_path / "out"
    snapshot = out / "progress" / "rank-00000.json"
    proc = subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), *FAST),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while proc.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            waiting = json.loads(snapshot.read_text()).get("waiting")
            if waiting:
                seen.add(waiting)
        time.sleep(0.05)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    host = urlsplit(urls[0]).netloc
    assert f"nothing in flight, waiting: {host} parked (Retry-After)" in err, err
    assert any(w.startswith(f"{host} parked (Retry-After)") and "next try in" in w for w in seen)
    assert {r["status"] for r in rows_by_url(out).values()} == {"ok"}


def test_a_429_with_a_ratelimit_header_is_waited_out_without_a_failed_row(
    tmp_path: Path,
) -> None:
    """The fake Hugging Face Hub answers its resolves 429 with ``RateLimit: "resolvers";r=0;
    t=2`` and no Retry-After: the rank waits the reset (and a second), then gets the file."""
    repo = HubRepo("ns/limited", {"main": {"a.txt": b"small file", "b.bin": b"x" * 5000}})
    with HubProcess([repo], tmp_path / "hub.jsonl") as hub:
        urls = [hub.resolve_url("ns/limited", path) for path in ("a.txt", "b.bin")]
        src = tmp_path / "urls.txt"
        src.write_text("\n".join(urls) + "\n")
        hub.rate_limit(2, reset=2)  # both first resolves: r=0, the window resets in 2 s
        out = tmp_path / "out"
        done = run_subprocess("run", str(src), "-o", str(out), *FAST)
        assert done.returncode == 0, done.stderr
        rows = rows_by_url(out)
        assert {rows[u]["status"] for u in urls} == {"ok"}
        resolves = [r for r in hub.requests("hub") if "/resolve/" in r["path"]]
        for url in urls:
            path = urlsplit(url).path
            times = [r["t"] for r in resolves if r["path"].startswith(path)]
            assert len(times) == 2, times  # the 429, then the answer
            assert times[1] - times[0] >= 3.0 - 0.25  # t=2, plus one second
