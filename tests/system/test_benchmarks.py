"""Smoke test of the benchmark harness (benchmarks/run.py): it runs end to end and counts right.

No timing assertions: only that every URL is counted once as ok and the CPU and RSS figures
exist. Works with nginx (used when installed) and with the aiohttp fallback server, which is
also exercised explicitly so that machines with nginx still cover it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
URLS = 200  # the counts, not the speed, are checked: a few hundred URLs show them
CORPUS = 200  # JPEGs generated once for the module (the default 2,000 takes seconds)
PEERS = ("fetchshard", "bare", "bare-2", "fetchshard-resize")  # two processes; the images stage


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One work folder for both cases: the corpus is generated once and reused (its cache).
    return tmp_path_factory.mktemp("bench-work")


@pytest.mark.timeout(320)
@pytest.mark.parametrize("server", ["auto", "aiohttp"])
def test_harness_counts_every_url(work: Path, server: str) -> None:
    out = work / f"out-{server}.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        "--urls",
        str(URLS),
        "--repeat",
        "1",
        "--peers",
        ",".join(PEERS),
        "--json",
        str(out),
        "--work",
        str(work),
        "--corpus-files",
        str(CORPUS),
    ]
    if server != "auto":
        cmd += ["--server", server]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["server"]["kind"] in (("nginx", "aiohttp") if server == "auto" else (server,))
    assert result["server"]["hosts"] == 64
    for peer in PEERS:
        runs = [r for r in result["runs"] if r["peer"] == peer]
        assert len(runs) == 1, runs
        run = runs[0]
        assert run["status"] == "ok" and run["exit_code"] == 0, run
        assert run["ok"] == URLS and run["errors"] == 0, run
        assert run["cpu_s"] > 0 and run["cpu_s_per_1000"] > 0
        assert 0 < run["sys_s_per_1000"] < run["cpu_s_per_1000"]
        assert run["peak_rss_tree_mb"] > 0 and run["peak_rss_largest_mb"] > 0
        assert run["bytes"] > 0
        med = result["medians"][peer]
        assert med["urls_per_s"] > 0 and med["errors"] == 0
    assert result["medians"]["fetchshard"]["urls_per_s_vs_fetchshard"] == 1.0


@pytest.mark.timeout(320)
@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="--baseline needs a git checkout")
def test_baseline_runs_a_committed_fetchshard_in_the_same_rounds(work: Path) -> None:
    out = work / "out-baseline.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "run.py"),
        *("--urls", str(URLS), "--repeat", "1", "--peers", "fetchshard"),
        *("--baseline", "HEAD", "--server", "aiohttp", "--json", str(out), "--work", str(work)),
        *("--corpus-files", str(CORPUS)),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert result["fetchshard_baseline"] == head
    twin = f"fetchshard@{head[:7]}"
    assert [r["peer"] for r in result["runs"]] == ["fetchshard", twin]
    for run in result["runs"]:
        assert run["status"] == "ok" and run["ok"] == URLS and run["errors"] == 0, run
    # The twin ran from its snapshot of HEAD, not from the installed source.
    assert result["runs"][1]["fetchshard_source"]["commit"] == head
    assert result["medians"][twin]["urls_per_s_vs_fetchshard"] > 0


@pytest.mark.timeout(60)
def test_merge_speed_counts_the_same_rows_as_duckdb(tmp_path: Path) -> None:
    # benchmarks/merge_speed.py at a tiny size (~10 MB of parts, a 200-JPEG corpus): both
    # sides run and hold every part row. No timing or memory assertion.
    out = tmp_path / "merge.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "merge_speed.py"),
        *("--gb", "0.01", "--repeat", "1", "--corpus-files", "200", "--server", "aiohttp"),
        *("--json", str(out), "--work", str(tmp_path / "work")),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=55, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    parts = result["parts"]
    assert parts["bytes"] >= 0.01e9 and parts["ranks"] == 4 and parts["tmp_files"] == 0
    runs = {r["tool"]: r for r in result["runs"]}
    assert set(runs) == {"merge", "duckdb"}
    for run in runs.values():
        assert run["status"] == "ok" and run["rows"] == parts["rows"], run
        assert run["wall_s"] > 0 and run["cpu_s"] > 0 and run["peak_rss_tree_mb"] > 0
        assert run["output_bytes"] > 0
    assert runs["merge"]["rows_data"] == parts["rows"] and runs["merge"]["rows_errors"] == 0
    assert runs["merge"]["manifest"]["complete"] is True
    assert result["rows_match"] and result["merge_manifest_complete"]
    assert result["merge_time_over_duckdb"] > 0 and result["merge_rss_over_duckdb"] > 0


@pytest.mark.timeout(20)
def test_report_speed_shows_every_rank_as_written(tmp_path: Path) -> None:
    # benchmarks/report_speed.py on a 20-rank synthetic folder, one round: the report shows
    # each rank in the state it was written in (live ranks' locks held by its helper). No
    # timing assertion.
    out = tmp_path / "report.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "report_speed.py"),
        *("--ranks", "20", "--repeat", "1", "--items-per-rank", "200"),
        *("--json", str(out), "--work", str(tmp_path / "work")),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=18, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    size = result["sizes"]["20"]
    expected = {"running": 3, "waiting": 1, "planning": 1, "done": 11, "stopped": 1}
    expected |= {"dead": 2, "not started": 1}  # one dead, one hung (lock held, stale)
    assert size["ranks"] == 20 and size["states_expected"] == expected
    assert size["states_reported"] == expected and size["states_match"]
    assert size["locks_held"] == 6 and size["ledgers"] == 2  # the stopped and the dead rank
    run = size["runs"][0]
    assert run["command"]["exit_code"] == 0 and run["command"]["wall_s"] > 0
    assert run["command"]["peak_rss_mb"] > 0 and run["in_process"]["total_s"] > 0
    assert size["target_s"] is None and size["pass"] is None and result["ok"] is True


@pytest.mark.timeout(60)
def test_generations_plans_every_leftover_item_once(tmp_path: Path) -> None:
    # benchmarks/generations.py at a tiny size: 20,000 URLs, generation 0 of 8 ranks with 60 %
    # of its items committed, generation 1 of 3 ranks, every new rank sampled (phase 1 and 2
    # each its own process), against the same leftover planned from scratch. No timing
    # assertion: the counts must add up, and every figure must have been measured.
    out, md = tmp_path / "generations.json", tmp_path / "generations.md"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "generations.py"),
        *("--rows", "20000", "--world", "8", "--new-world", "3"),
        *("--json", str(out), "--md", str(md), "--work", str(tmp_path / "work")),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=55, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    g0 = result["generation0"]
    assert g0["items"] == 20000  # unique URLs: one item each
    assert 0.55 < g0["committed"] / g0["items"] < 0.65 and 0 < g0["failed"] < g0["committed"]
    uncommitted = g0["items"] - g0["committed"]
    assert g0["uncommitted"] == uncommitted
    assert result["sample"] == [0, 1, 2] and result["modes"] == ["warm"]

    # Phase 1: every old rank's leftover written by new rank i % 3, all of it.
    phase1 = result["phase1_all_ranks"]
    assert sorted(phase1) == ["0", "1", "2"]
    assert [phase1[r]["sources"] for r in ("0", "1", "2")] == [3, 3, 2]
    assert sum(r["items"] for r in phase1.values()) == uncommitted
    for rank in phase1.values():
        assert rank["work_seconds"] > 0 and rank["cpu_seconds"] > 0 and rank["wall_seconds"] > 0
        assert rank["bytes_of_sources"] > 0 and rank["rchar"] > 0
    assert result["leftover_slices"]["slices"] == 8
    assert result["leftover_slices"]["item_rows"] == uncommitted

    # Phase 2: each new rank planned a share, together the whole leftover, no item twice.
    phase2 = result["measured"]["warm"]["phase2"]
    assert all(r["items"] > 0 for r in phase2.values()), phase2
    assert sum(r["items"] for r in phase2.values()) == uncommitted
    assert all(r["items"] < uncommitted for r in phase2.values())
    checks = result["checks"]
    assert checks["sampled_items"] == uncommitted and checks["sampled_duplicates"] == 0
    assert checks["sampled_not_uncommitted"] == 0 and checks["uncommitted_not_planned"] == 0
    assert checks["leftover_equals_uncommitted"] and checks["planned_equals_uncommitted"]

    # The baseline plans the same leftover from its own input.
    assert result["baseline"]["input"]["rows"] == uncommitted
    assert result["baseline"]["input"]["bytes"] > 0 and result["input_bytes"] > 0
    assert sum(r["items"] for r in result["measured"]["warm"]["run"].values()) == uncommitted
    assert checks["baseline_equals_uncommitted"]
    for part in ("phase1", "phase2", "generation", "step", "run", "baseline"):
        summary = result["summary"]["warm"][part]
        assert summary["work_seconds"]["median"] > 0 and summary["rchar"]["median"] > 0
    bound = result["bound"]
    assert bound["phase1_median"] > 0 and bound["phase2_hosts_index"] > 0
    assert "Generations at scale" in md.read_text()


@pytest.mark.timeout(60)
def test_object_store_counts_every_url_in_both_variants(tmp_path: Path) -> None:
    # benchmarks/object_store.py at a tiny size: 200 URLs, one round, 2 MiB parts (several
    # of them), moto as its own process. Both variants count every URL ok (the s3 one from the
    # bucket's parts) and the staging sampler saw the parts. No timing assertion.
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    out = tmp_path / "object-store.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "object_store.py"),
        *("--urls", str(URLS), "--repeat", "1", "--part-bytes", str(2 << 20)),
        *("--corpus-files", str(CORPUS), "--json", str(out), "--work", str(tmp_path / "work")),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=55, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.read_text())
    runs = {r["variant"]: r for r in result["runs"]}
    assert set(runs) == {"local", "s3"}
    for run in runs.values():
        assert run["exit_code"] == 0 and run["ok"] == URLS and run["errors"] == 0, run
        assert run["detail"]["parts"] > 1 and run["detail"]["duplicate_rows"] == 0
        assert run["cpu_ms_per_url"] > 0 and run["staging_samples"] > 0
        assert run["staging_peak_bytes"] > 0 and run["staging_tmp_left_bytes"] == 0
    assert runs["s3"]["output"]["objects"]["shards"]["objects"] == runs["s3"]["detail"]["parts"]
    assert runs["s3"]["moto_cpu_s"] > 0
    summary = result["summary"]
    assert summary["all_ok"] and summary["cpu_per_url_s3_over_local"] > 0
    assert set(summary["medians"]) == {"local", "s3"}
