"""End to end: `fetchshard run` against a real loopback server, real Parquet and SQLite."""

from __future__ import annotations

import gc
import hashlib
import json
import os
import signal
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from fetchshard import signals
from fetchshard.engine import eventloop
from server import ServerProcess
from util import FAST, assert_exactly_once, cli, ledger_items, rows_by_url


def requests_for(server: ServerProcess, tag: str) -> Counter[str]:
    """How often each path carrying ``tag`` was requested."""
    return Counter(r["path"] for r in server.requests() if tag in r["path"])


def test_single_rank_run_writes_every_item_once(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    tag = "single"
    urls = [server_process.url(f"/ok/{tag}-{i}", host=i % 4) for i in range(120)]
    lines = [*urls, "", urls[5], urls[7], "   ", "not a url", "mailto:x@example.org"]
    out = tmp_path / "out"
    src = url_file(lines)
    result = cli("run", str(src), "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    rows = rows_by_url(out, body=True)
    assert len(rows) == 122  # 120 unique URLs + 2 bad lines; blanks skipped, duplicates once
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == 120
    assert all(r["http_status"] == 200 and r["attempts"] == 1 for r in ok)
    assert all(r["sha256"] == hashlib.sha256(r["body"]).hexdigest() for r in ok)
    assert all(r["size"] == len(r["body"]) for r in ok)
    assert rows["not a url"]["error_kind"] == "bad_url"
    assert rows["mailto:x@example.org"]["error_kind"] == "bad_url"
    assert rows["not a url"]["attempts"] == 0
    counts = requests_for(server_process, f"/ok/{tag}-")
    assert len(counts) == 120 and set(counts.values()) == {1}
    assert all(r["ua"].startswith("fetchshard/") for r in server_process.requests())
    assert assert_exactly_once(out) == 122
    stats = json.loads((out / "stats" / "rank-00000.json").read_text())
    assert stats["complete"] and stats["ok"] == 120 and stats["failed"] == 2
    assert stats["errors"] == {"bad_url": 2}
    progress = json.loads((out / "progress" / "rank-00000.json").read_text())
    assert progress["state"] == "done"
    assert (out / "done" / "rank-00000").exists()
    assert "rank 0 of 1" in (out / "logs" / "rank-00000.log").read_text()

    # A rerun of a complete run does nothing and fetches nothing.
    before = len(server_process.requests())
    again = cli("run", str(src), "-o", str(out), *FAST)
    assert again.exit_code == 0, again.output
    assert len(server_process.requests()) == before


def test_fetch_outcomes(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    s = server_process
    cases = {
        s.url("/flaky/outcomes-a/2"): ("ok", None, 3),
        s.url("/status/404?t=outcomes"): ("failed", "http_404", 1),
        s.url("/status/500?t=outcomes"): ("failed", "http_5xx", 2),
        s.url("/endless?t=outcomes"): ("failed", "timeout", 2),  # timeouts are transient
        s.url("/big/300000?t=outcomes"): ("failed", "too_large", 1),
        s.url("/big-nolength/300000?t=outcomes"): ("failed", "too_large", 1),
        s.url("/big/1000?t=outcomes"): ("ok", None, 1),
        s.url("/redirect/3?t=outcomes"): ("ok", None, 1),
        s.url("/redirect-loop?t=outcomes"): ("failed", "redirect_loop", 1),
    }
    out = tmp_path / "out"
    result = cli(
        "run",
        str(url_file(list(cases))),
        "-o",
        str(out),
        *FAST,
        "--set",
        "fetch.max_attempts=2",
        "--set",
        "fetch.final_pass_attempts=0",
        "--set",
        "fetch.total_timeout=1.5",
        "--set",
        "fetch.connect_timeout=1",
        "--set",
        "fetch.max_body_bytes=100000",
    )
    assert result.exit_code == 0, result.output
    rows = rows_by_url(out)
    got = {url: (r["status"], r["error_kind"], r["attempts"]) for url, r in rows.items()}
    # The flaky route fails twice, so it needs 3 attempts: give it its own run below.
    flaky = s.url("/flaky/outcomes-a/2")
    assert got.pop(flaky)[:2] == ("failed", "http_5xx")
    del cases[flaky]
    assert got == cases
    assert rows[s.url("/endless?t=outcomes")]["elapsed_ms"] < 3000  # total_timeout=1.5
    assert rows[s.url("/redirect/3?t=outcomes")]["final_url"].endswith("/ok/final")
    assert rows[s.url("/status/404?t=outcomes")]["http_status"] == 404
    assert rows[s.url("/big/1000?t=outcomes")]["size"] == 1000


def test_transient_failure_then_success_counts_attempts(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    url = server_process.url("/flaky/attempts-b/2")
    out = tmp_path / "out"
    result = cli("run", str(url_file([url])), "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    row = rows_by_url(out)[url]
    assert (row["status"], row["attempts"], row["http_status"]) == ("ok", 3, 200)
    assert requests_for(server_process, "/flaky/attempts-b/")["/flaky/attempts-b/2"] == 3


def test_three_local_ranks_partition_like_three_explicit_ranks(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    tag = "part3"
    urls = [server_process.url(f"/ok/{tag}-{i}", host=i % 4) for i in range(300)]
    src = url_file([*urls, *urls[:40], "bad url line"])
    launched = tmp_path / "launched"
    result = cli("run", str(src), "-o", str(launched), "--ranks", "3", *FAST)
    assert result.exit_code == 0, result.output
    counts = requests_for(server_process, f"/ok/{tag}-")
    assert len(counts) == 300 and set(counts.values()) == {1}  # duplicates fetched once

    explicit = tmp_path / "explicit"
    for rank in range(3):
        r = cli(
            "run", str(src), "-o", str(explicit), "--rank", str(rank), "--world-size", "3", *FAST
        )
        assert r.exit_code == 0, r.output
    slices = []
    for rank in range(3):
        a, b = ledger_items(launched, rank), ledger_items(explicit, rank)
        assert a.keys() == b.keys()
        assert a, f"rank {rank} got nothing"
        slices.append(set(a))
    assert not (slices[0] & slices[1] or slices[0] & slices[2] or slices[1] & slices[2])
    assert sum(len(s) for s in slices) == 301
    assert assert_exactly_once(launched, world_size=3) == 301
    assert assert_exactly_once(explicit, world_size=3) == 301
    assert sorted(p.name for p in (launched / "done").iterdir()) == [
        "rank-00000",
        "rank-00001",
        "rank-00002",
    ]


def test_store_body_false_keeps_hash_and_size_only(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    urls = [server_process.url(f"/image/{i}?t=nobody") for i in range(12)]
    kept, dropped = tmp_path / "kept", tmp_path / "dropped"
    for out, store in ((kept, "true"), (dropped, "false")):
        result = cli(
            "run", str(url_file(urls)), "-o", str(out), *FAST, "--set", f"output.store_body={store}"
        )
        assert result.exit_code == 0, result.output
    with_body, without = rows_by_url(kept, body=True), rows_by_url(dropped, body=True)
    for url in urls:
        body = with_body[url]["body"]
        assert body and without[url]["body"] is None
        assert (
            without[url]["sha256"] == hashlib.sha256(body).hexdigest() == with_body[url]["sha256"]
        )
        assert without[url]["size"] == len(body)


def test_paths_in_a_config_file_are_relative_to_it_and_flags_to_the_cwd(
    server_process: ServerProcess,
    url_file: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    urls = [server_process.url(f"/ok/relative-{i}") for i in range(5)]
    (tmp_path / "sub").mkdir()
    url_file(urls, name="sub/urls.txt")
    (tmp_path / "sub" / "config.yaml").write_text(
        "input:\n  paths: [urls.txt]\noutput:\n  dir: out\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)

    result = cli("run", "sub/config.yaml", *FAST)
    assert result.exit_code == 0, result.output
    assert set(rows_by_url(tmp_path / "sub" / "out")) == set(urls)
    assert not (tmp_path / "out").exists()

    result = cli("run", "sub/config.yaml", "-o", "out2", *FAST)
    assert result.exit_code == 0, result.output
    assert set(rows_by_url(tmp_path / "out2")) == set(urls)
    assert not (tmp_path / "sub" / "out2").exists()


def test_the_loop_runs_with_fewer_gc_collections_and_restores_the_threshold() -> None:
    before = gc.get_threshold()
    with eventloop.fewer_collections():
        assert gc.get_threshold()[0] >= 100 * before[0]
    assert gc.get_threshold() == before


def test_stop_signals_during_start_up_are_held_then_replayed() -> None:
    before = {sig: signal.getsignal(sig) for sig in signals.HELD}
    try:
        signals.hold()
        os.kill(os.getpid(), signal.SIGUSR1)  # would end the process with its default action
        assert signals.take_pending() == [signal.SIGUSR1]
        assert signals.take_pending() == []
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
