"""``run --retry-failed``: failures fetched again, nothing else; one current row per item."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from fetchshard.environment import FAULT
from fetchshard.ledger import read_superseded
from fetchshard.runfolder.layout import RunPaths
from server import ServerProcess
from util import FAST, assert_exactly_once, rows_by_url, run_subprocess

# Two attempts per item and no final pass: the first run's requests are exactly 2 per item.
ATTEMPTS = ["--set", "fetch.max_attempts=2", "--set", "fetch.final_pass_attempts=0"]
N = 10


def _urls(server: ServerProcess, key: str) -> tuple[list[str], list[str], list[str]]:
    # One counter for the host's flaky URLs: it answers 503 to the first 2 N requests.
    flaky = [server.url(f"/flaky/{key}/{2 * N}?t=rf-{i}", host=0) for i in range(N)]
    good = [server.url(f"/ok/rfok-{i}", host=1) for i in range(20)]
    gone = [server.url(f"/status/404?t=rf404-{i}", host=2) for i in range(3)]
    return flaky, good, gone


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _requests(server: ServerProcess, tag: str) -> Counter[str]:
    return Counter(r["path"] for r in server.requests() if tag in r["path"])


def test_retry_failed_sends_exactly_the_failed_requests_and_supersedes_their_rows(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    flaky, good, gone = _urls(server_process, tmp_path.name)
    src, out = url_file([*flaky, *good, *gone]), tmp_path / "out"
    first = run_subprocess("run", str(src), "-o", str(out), *FAST, *ATTEMPTS)
    assert first.returncode == 0, first.stderr
    rows = rows_by_url(out)
    assert {rows[u]["error_kind"] for u in flaky} == {"http_5xx"}
    assert {rows[u]["error_kind"] for u in gone} == {"http_404"}
    assert sum(_requests(server_process, "rf-").values()) == 2 * N
    items = (out / "ledger" / "rank-00000.items.arrow").read_bytes()

    server_process.clear_requests()
    again = run_subprocess("run", str(src), "-o", str(out), *FAST, *ATTEMPTS, "--retry-failed")
    assert again.returncode == 0, again.stderr
    # Exactly one request per failed transient item; none for the ok or the 404 ones.
    assert _requests(server_process, "rf-") == Counter(_path(u) for u in flaky)
    assert not _requests(server_process, "rfok-")
    assert not _requests(server_process, "rf404-")
    assert f"fetching {N} failed items (transient) again" in again.stderr
    rows = rows_by_url(out)  # the current rows: one per URL
    assert {rows[u]["status"] for u in flaky} == {"ok"}
    assert {rows[u]["attempts"] for u in flaky} == {1}
    assert {rows[u]["status"] for u in good} == {"ok"}
    assert {rows[u]["error_kind"] for u in gone} == {"http_404"}
    assert assert_exactly_once(out) == N + 20 + 3
    # The old rows are still in part 1, named superseded; the plan was not touched.
    superseded = read_superseded(out / "ledger" / "rank-00000.sqlite")
    assert {part: len(ids) for part, ids in superseded.items()} == {1: N}
    assert (out / "ledger" / "rank-00000.items.arrow").read_bytes() == items
    assert RunPaths(out).done(0).exists()

    # Named kinds: only those; 'all' takes the permanent failures too.
    server_process.clear_requests()
    named = run_subprocess("run", str(src), "-o", str(out), *FAST, "--retry-failed", "timeout")
    assert named.returncode == 0, named.stderr
    assert "no failed items (timeout) to fetch again" in named.stderr
    assert not server_process.requests()
    every = run_subprocess("run", str(src), "-o", str(out), *FAST, "--retry-failed", "all")
    assert every.returncode == 0, every.stderr
    assert sum(_requests(server_process, "rf404-").values()) == 3
    assert not _requests(server_process, "rf-") and not _requests(server_process, "rfok-")
    assert assert_exactly_once(out) == N + 20 + 3
    assert {rows_by_url(out)[u]["error_kind"] for u in gone} == {"http_404"}


def test_a_retry_killed_between_rename_and_commit_completes_exactly_once_on_rerun(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    """SIGKILL right after the retry's first part is renamed, before the ledger records it;
    the rerun (two ranks, without --retry-failed) adopts that part and fetches the rest."""
    flaky, good, gone = _urls(server_process, tmp_path.name)
    src, out = url_file([*flaky, *good, *gone]), tmp_path / "out"
    ranks = ["--ranks", "2", *FAST, *ATTEMPTS]
    first = run_subprocess("run", str(src), "-o", str(out), *ranks)
    assert first.returncode == 0, first.stderr
    assert {rows_by_url(out)[u]["error_kind"] for u in flaky} == {"http_5xx"}
    parts = {p.name for p in (out / "shards").glob("rank-*/part-*.parquet")}
    small = [*ranks, "--set", "output.part_max_rows=2", "--retry-failed"]
    killed = run_subprocess(
        "run", str(src), "-o", str(out), *small, env={FAULT: f"after_rename:{len(parts) + 1}"}
    )
    assert killed.returncode != 0
    rerun = run_subprocess("run", str(src), "-o", str(out), *ranks)
    assert rerun.returncode == 0, rerun.stderr
    assert "published before its ledger commit" in rerun.stderr
    assert assert_exactly_once(out, world_size=2) == N + 20 + 3
    rows = rows_by_url(out)
    assert {rows[u]["status"] for u in [*flaky, *good]} == {"ok"}
    assert {rows[u]["error_kind"] for u in gone} == {"http_404"}
