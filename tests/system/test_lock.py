"""The same rank started twice at once: the second refuses, the first completes untouched."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from fetchshard.errors import EXIT_USAGE
from server import ServerProcess
from util import FAST, assert_exactly_once, fetchshard_cmd, run_subprocess


def test_the_same_rank_twice_at_once(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    # The first run is held by a slow server (200 URLs of 1 s, 8 at a time: ~25 s) until the
    # second has refused, however slow a loaded machine starts the second; then the server
    # answers at once and the first completes in a moment.
    urls = [server_process.url(f"/paced/1?t=lock-{i}", host=i % 4) for i in range(200)]
    src, out = url_file(urls), tmp_path / "out"
    args = ("run", str(src), "-o", str(out), *FAST, "--set", "fetch.per_host_concurrency=2")
    first = subprocess.Popen(
        fetchshard_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not (out / "progress" / "rank-00000.json").exists():
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.05)
        run_json = (out / "run.json").read_bytes()
        second = run_subprocess(*args, "--set", "run.lock_wait=1")
        assert second.returncode == EXIT_USAGE, second.stderr
        refusal = second.stderr.strip().splitlines()[-1]
        assert refusal.startswith(f"fetchshard: error: rank 0 of {out} is held by pid {first.pid}")
        assert "since" in refusal and "run.lock_wait" in refusal
        assert first.poll() is None, "the first run ended before the second refused"
        server_process.set_pace(0)
        _, err = first.communicate(timeout=120)
    finally:
        server_process.set_pace(1)
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert (out / "run.json").read_bytes() == run_json
    assert assert_exactly_once(out) == 200
    log = (out / "logs" / "rank-00000.log").read_text()
    assert log.count("as rank 0 of 1") == 1  # the second never reached the rank's files
