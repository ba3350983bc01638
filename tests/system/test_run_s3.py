"""``fetchshard run -o s3://bucket/prefix`` into moto's S3 server on loopback: the run's data in
the bucket, its state folder local; ``report`` and ``merge`` read it from the bucket; kill -9
at every step of a part's publication, a second writer, and a lost state folder each end
exactly once; the fake secret is nowhere."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path
from subprocess import DEVNULL

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.environment import FAULT
from fetchshard.output.filenames import file_path
from server import ServerProcess
from server.routes_files import file_sha256
from server.s3 import FAKE_SECRET, REGION, MotoS3
from util import FAST, fetchshard_cmd, run_subprocess, run_subprocesses, wait_for

BUCKET = "bkt"
MiB = 1024 * 1024
SMALL_PARTS = [*FAST, "--set", "output.part_max_rows=20", "--set", "fetch.max_attempts=1"]


@pytest.fixture
def env(s3: MotoS3) -> dict[str, str]:
    """The bucket made, and what a command needs to reach it."""
    s3.client().create_bucket(Bucket=BUCKET)
    return {"FETCHSHARD_S3_ENDPOINT": s3.endpoint}


def _urls(server: ServerProcess, tag: str, n: int, missing: int = 0) -> list[str]:
    urls = [server.url(f"/ok/{tag}-{i}?t={tag}-{i}", host=i % 3) for i in range(n)]
    return urls + [server.url(f"/status/404?t={tag}-404-{i}", host=i % 3) for i in range(missing)]


def _write(path: Path, urls: list[str]) -> Path:
    path.write_text("\n".join(urls) + "\n")
    return path


def _run(
    src: Path, url: str, state: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_subprocess(
        "run", str(src), "-o", url, "--state-dir", str(state), *SMALL_PARTS, *extra, env=env,
        timeout=90,
    )  # fmt: skip


def _objects(s3: MotoS3, prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in s3.objects(BUCKET).items() if k.startswith(prefix)}


def _parts(s3: MotoS3, prefix: str, rank: int = 0) -> dict[int, bytes]:
    folder = f"{prefix}/shards/rank-{rank:05d}/"
    return {
        int(k[len(folder) + 5 : -8]): v
        for k, v in _objects(s3, folder).items()
        if k.endswith(".parquet")
    }


def _part_rows(s3: MotoS3, prefix: str, rank: int = 0) -> pa.Table:
    parts = sorted(_parts(s3, prefix, rank).items())
    return pa.concat_tables([pq.read_table(pa.BufferReader(v)) for _, v in parts])


def _hits(server: ServerProcess, tag: str) -> Counter[str]:
    return Counter(r["path"] for r in server.requests() if f"t={tag}-" in r["path"])


def _merged(s3: MotoS3, prefix: str) -> pa.Table:
    files = sorted(k for k in _objects(s3, f"{prefix}/data/"))
    return pa.concat_tables([pq.read_table(pa.BufferReader(s3.objects(BUCKET)[k])) for k in files])


def _committed_parts(state: Path, rank: int = 0) -> list[int]:
    with sqlite3.connect(state / "ledger" / f"rank-{rank:05d}.sqlite") as db:
        return sorted(r[0] for r in db.execute("SELECT part FROM parts"))


def test_a_run_into_a_bucket_merges_as_a_local_run_and_readers_read_it(
    s3: MotoS3,
    server_process: ServerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    src = _write(tmp_path / "urls.txt", [*_urls(server_process, "acc1", 90, missing=4), "nope"])
    state, local = tmp_path / "state", tmp_path / "local"
    monkeypatch.setenv("FETCHSHARD_S3_ENDPOINT", s3.endpoint)
    into_bucket, into_folder = run_subprocesses(
        ["run", str(src), "-o", f"s3://{BUCKET}/run", "--state-dir", str(state), "--ranks", "2",
         *SMALL_PARTS],
        ["run", str(src), "-o", str(local), "--ranks", "2", *SMALL_PARTS],
    )  # fmt: skip
    assert into_bucket.returncode == 0, into_bucket.stderr
    assert into_folder.returncode == 0, into_folder.stderr
    objects = _objects(s3, "run/")
    assert "run/run.json" in objects
    for rank in (0, 1):
        assert f"run/done/rank-{rank:05d}" in objects
        assert f"run/ledger/rank-{rank:05d}.sqlite" in objects
        assert f"run/stats/rank-{rank:05d}.json" in objects
        assert _parts(s3, "run", rank), "no part in the bucket"
        # The state folder keeps no part: each went up whole, then its tmp file went.
        assert not list((state / "shards" / f"rank-{rank:05d}").iterdir())
    html = tmp_path / "report.html"
    report = run_subprocess("report", f"s3://{BUCKET}/run", "--json", "--html", str(html))
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    assert document["state"] == "done"
    assert document["folder"] == f"s3://{BUCKET}/run"
    assert document["totals"]["committed"] == 95
    assert f"s3://{BUCKET}/run" in html.read_text()
    merged, reference = run_subprocesses(
        ["merge", f"s3://{BUCKET}/run", "-o", f"s3://{BUCKET}/run-ds"],
        ["merge", str(local)],
    )
    assert merged.returncode == 0, merged.stderr
    assert merged.stdout.startswith(f"s3://{BUCKET}/run-ds: complete, 90 ok and 5 failed rows")
    assert reference.returncode == 0, reference.stderr
    keys = ["url", "status", "body", "sha256"]
    ours = _merged(s3, "run-ds").select(keys).sort_by("url")
    theirs = pq.read_table(local / "merged" / "data", columns=keys).sort_by("url")
    assert ours.equals(theirs)
    # Users' readers, at the custom endpoint: pyarrow.fs, pandas (s3fs), datasets.
    import pandas as pd
    from datasets import load_dataset
    from pyarrow import fs

    s3fs = fs.S3FileSystem(endpoint_override=s3.endpoint, region=REGION, scheme="http")
    assert pq.read_table(f"{BUCKET}/run-ds/data", filesystem=s3fs).num_rows == 90
    # s3fs caches instances and listings per process: another test's bucket of the same name
    # (moto is reset between tests) must not be listed here.
    options = {
        "client_kwargs": {"endpoint_url": s3.endpoint, "region_name": REGION},
        "skip_instance_cache": True,
        "use_listings_cache": False,
    }
    frame = pd.read_parquet(f"s3://{BUCKET}/run-ds/data/", storage_options=options)
    assert sorted(frame["url"]) == sorted(theirs.column("url").to_pylist())
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    loaded = load_dataset(
        "parquet",
        data_files={"train": f"s3://{BUCKET}/run-ds/data/train-*.parquet"},
        storage_options=options,
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert loaded.num_rows == 90
    # A rerun has nothing to do and changes no part.
    before = _objects(s3, "run/shards/")
    again = _run(src, f"s3://{BUCKET}/run", state, "--ranks", "2")
    assert again.returncode == 0, again.stderr
    assert _objects(s3, "run/shards/") == before
    _no_secret(s3, tmp_path, [into_bucket, report, merged, again])


def _no_secret(s3: MotoS3, folder: Path, done: list[subprocess.CompletedProcess[str]]) -> None:
    secret = FAKE_SECRET.encode()
    assert not [k for k, v in s3.objects(BUCKET).items() if secret in v]
    assert not [p for p in folder.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert not [d for d in done if FAKE_SECRET in d.stdout + d.stderr]


@pytest.mark.parametrize("point", ["before_publish", "during_put", "after_rename"])
def test_kill_9_at_each_step_of_a_part_ends_exactly_once(
    point: str, s3: MotoS3, env: dict[str, str], server_process: ServerProcess, tmp_path: Path
) -> None:
    tag = f"kill-{point}"
    src = _write(tmp_path / "urls.txt", _urls(server_process, tag, 100))
    state, url = tmp_path / "state", f"s3://{BUCKET}/run"
    crashed = _run(src, url, state, env={**env, FAULT: f"{point}:2"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    published = set(_parts(s3, "run"))
    if point == "after_rename":  # part 2 is in the bucket, the ledger never heard of it
        assert published == {1, 2}
        assert _committed_parts(state) == [1]
        second = set(_part_rows(s3, "run").column("url").to_pylist()[20:])
    else:  # before or during its PUT: no object
        assert published == {1}
    done = _run(src, url, state, env=env)
    assert done.returncode == 0, done.stderr
    if point == "after_rename":
        assert "adopted part part-000002.parquet" in (state / "logs" / "rank-00000.log").read_text()
    parts = _parts(s3, "run")
    assert sorted(parts) == list(range(1, len(parts) + 1)), "part numbers with a gap"
    assert _committed_parts(state) == sorted(parts)
    rows = _part_rows(s3, "run")
    ids = rows.column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == 100
    hits = _hits(server_process, tag)
    assert len(hits) == 100
    if point == "after_rename":  # adopted, not fetched again
        twice = {path for path, n in hits.items() if n > 1}
        assert not any(any(path in u for u in second) for path in twice)
    assert not list((state / "shards" / "rank-00000").iterdir())


def test_a_second_writer_of_the_same_rank_is_stopped_with_one_line(
    s3: MotoS3, env: dict[str, str], server_process: ServerProcess, tmp_path: Path
) -> None:
    src = _write(tmp_path / "urls.txt", _urls(server_process, "two", 60))
    url = f"s3://{BUCKET}/run"
    # Two pods on one index, each with its own state folder: both fetch, both publish part 1.
    slow = ["--set", "fetch.per_host_rate=20", "--set", "fetch.per_host_burst=1"]
    args = [*SMALL_PARTS, *slow]
    first, second = run_subprocesses(
        ["run", str(src), "-o", url, "--state-dir", str(tmp_path / "a"), *args],
        ["run", str(src), "-o", url, "--state-dir", str(tmp_path / "b"), *args],
        envs=[env, env],
    )
    codes = sorted([first.returncode, second.returncode])
    assert codes == [0, 2], first.stderr + "\n-----\n" + second.stderr
    loser = first if first.returncode else second
    last = loser.stderr.strip().splitlines()[-1]
    assert "another writer" in last, loser.stderr
    assert f"s3://{BUCKET}/run/shards/rank-00000/part-" in last
    assert "Traceback" not in loser.stderr
    # The winner's parts hold every item once; nothing of them was replaced.
    ids = _part_rows(s3, "run").column("item_id").to_pylist()
    assert len(ids) == len(set(ids)) == 60


def test_a_lost_state_folder_is_rebuilt_from_the_bucket(
    s3: MotoS3, env: dict[str, str], server_process: ServerProcess, tmp_path: Path
) -> None:
    tag = "lost"
    src = _write(tmp_path / "urls.txt", _urls(server_process, tag, 80, missing=10))
    state, url = tmp_path / "state", f"s3://{BUCKET}/run"
    first = _run(src, url, state, env=env)
    assert first.returncode == 0, first.stderr
    # --retry-failed history: the 404s fetched again, then killed once the retry's part is
    # in the bucket and before the ledger has it.
    retried = _run(src, url, state, "--retry-failed", "all", env={**env, FAULT: "after_rename:6"})
    assert retried.returncode == -signal.SIGKILL, retried.stderr
    assert sorted(_parts(s3, "run")) == [1, 2, 3, 4, 5, 6]
    shutil.rmtree(state)  # the pod was rescheduled without its disk
    rebuilt = _run(src, url, state, env=env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "adopted part part-000006.parquet" in (state / "logs" / "rank-00000.log").read_text()
    assert _committed_parts(state) == [1, 2, 3, 4, 5, 6]
    hits = _hits(server_process, tag)
    assert all(n == 1 for path, n in hits.items() if "/ok/" in path), "a committed URL again"
    merged = run_subprocess("merge", url, "-o", str(tmp_path / "merged"), env=env)
    assert merged.returncode == 0, merged.stderr
    errors = pq.read_table(tmp_path / "merged" / "errors")
    data = pq.read_table(tmp_path / "merged" / "data")
    assert data.num_rows == 80
    assert errors.num_rows == 10  # each 404 once: its retry's row, the first one superseded
    ids = data.column("item_id").to_pylist() + errors.column("item_id").to_pylist()
    assert len(set(ids)) == 90
    assert set(errors.column("attempts").to_pylist()) == {1}
    _no_secret(s3, tmp_path, [first, retried, rebuilt, merged])


def test_what_the_user_must_fix_is_one_line_and_exit_2_before_any_work(
    s3: MotoS3, server_process: ServerProcess, tmp_path: Path
) -> None:
    src = _write(tmp_path / "urls.txt", _urls(server_process, "bad", 3))
    state = tmp_path / "state"
    env = {"FETCHSHARD_S3_ENDPOINT": s3.endpoint}
    cases = {
        f"s3://AKIA:{FAKE_SECRET}@{BUCKET}/run": "credentials in it",
        f"s3://{BUCKET}/run?secret_key={FAKE_SECRET}": "query",
        "s3://no-such-bucket/run": "no such bucket",
        "gs://bkt/run": "only s3://",
    }
    results = run_subprocesses(
        *(["run", str(src), "-o", url, "--state-dir", str(state), "--ranks", "2"] for url in cases),
        envs=[env] * len(cases),
    )
    for (url, words), done in zip(cases.items(), results, strict=True):
        assert done.returncode == 2, (url, done.stderr)
        assert words in done.stderr, (url, done.stderr)
        assert FAKE_SECRET not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    s3.client().create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/run"
    mirror, merged = run_subprocesses(
        ["run", "hf://datasets/org/name", "-o", url, "--state-dir", str(state)],
        ["merge", url, "--ranks", "2"],
        envs=[env, env],
    )
    assert mirror.returncode == 2 and "hf:// input is mirrored into a folder" in mirror.stderr
    assert merged.returncode == 2 and "one merge process" in merged.stderr
    assert not state.exists()
    assert not s3.objects(BUCKET)


def test_files_into_a_bucket_go_up_whole_and_a_killed_transfer_resumes_with_range(
    s3: MotoS3, server_process: ServerProcess, tmp_path: Path
) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    big = 4 * MiB
    sizes = {f"small-{i}.bin": 10_000 + 997 * i for i in range(12)}
    urls = [server_process.url(f"/file/{n}/{name}", host=i % 2) for i, (name, n) in
            enumerate(sizes.items())]  # fmt: skip
    slow = server_process.url(f"/file/{big}/big.bin?pace=0.05")  # 64 KiB each 50 ms: 3.2 s
    src = _write(tmp_path / "urls.txt", [*urls, slow])
    state, url = tmp_path / "state", f"s3://{BUCKET}/run"
    env = {**os.environ, "FETCHSHARD_S3_ENDPOINT": s3.endpoint}
    args = ["run", str(src), "-o", url, "--state-dir", str(state), "--files", *SMALL_PARTS]
    proc = subprocess.Popen(fetchshard_cmd(*args), env=env, stdout=DEVNULL, stderr=DEVNULL)
    partial = state / "partial" / "rank-00000"

    def kept() -> int:  # the big file's .part (a small one's may vanish while we look)
        sizes = []
        for part in partial.glob("*.part"):
            with contextlib.suppress(FileNotFoundError):
                sizes.append(part.stat().st_size)
        return max(sizes, default=0)

    wait_for(lambda: kept() >= MiB, proc, timeout=60)
    proc.kill()
    proc.wait(timeout=30)
    kept_bytes = kept()
    assert MiB <= kept_bytes < big
    assert not [k for k in _objects(s3, "run/files/") if "big.bin" in k], "a short file went up"
    server_process.clear_requests()
    done = run_subprocess(*args, env={"FETCHSHARD_S3_ENDPOINT": s3.endpoint})
    assert done.returncode == 0, done.stderr
    # Resumed: the rerun asked for the bytes the .part lacked, and only those.
    assert server_process.file_bytes()[f"/file/{big}/big.bin"] == big - kept_bytes
    rows = _part_rows(s3, "run")
    assert rows.num_rows == 13 and rows.column("body").null_count == 13
    files = _objects(s3, "run/files/")
    expected = {name: n for name, n in sizes.items()} | {"big.bin": big}
    assert len(files) == 13
    for row in rows.to_pylist():
        assert row["status"] == "ok", row
        name = row["url"].split("/")[-1].split("?")[0]
        data = files[f"run/{row['path']}"]  # the row's path is the key under the run
        assert row["path"] == f"files/{file_path(row['url'])}"
        assert len(data) == row["size"] == expected[name]
        assert hashlib.sha256(data).hexdigest() == row["sha256"] == file_sha256(expected[name])
    # Nothing of them stays in the state folder: each went up from its .part, then went.
    assert not [p for p in (state / "files").rglob("*") if p.is_file()]
    assert not list(partial.glob("*"))


def test_killed_ranks_taken_over_by_another_world_size_fetch_each_url_once(
    s3: MotoS3, env: dict[str, str], server_process: ServerProcess, tmp_path: Path
) -> None:
    tag = "gens"
    src = _write(tmp_path / "urls.txt", _urls(server_process, tag, 150, missing=6))
    state, url = tmp_path / "state", f"s3://{BUCKET}/run"
    # Each of the 2 ranks killed once its part 2 is in the bucket, before its ledger has it.
    killed = _run(src, url, state, "--ranks", "2", env={**env, FAULT: "after_rename:2"})
    assert killed.returncode != 0, killed.stderr
    published = [_part_rows(s3, "run", rank) for rank in (0, 1)]
    assert [t.num_rows for t in published] == [40, 40], "each rank's parts 1 and 2"
    taken = _run(src, url, state, "--ranks", "3", env=env)
    assert taken.returncode == 0, taken.stderr
    objects = _objects(s3, "run/")
    assert "run/gen-0001/generation.json" in objects
    assert [k for k in objects if k.startswith("run/gen-0001/leftover/done/")]
    assert not [k for k in objects if k.endswith(".items.arrow") and "/leftover/" in k]
    # The parts each rank put before it was killed were adopted, never fetched again.
    hits = _hits(server_process, tag)
    assert len(hits) == 156
    adopted = {u.split("/", 3)[3] for t in published for u in t.column("url").to_pylist()}
    assert all(hits["/" + path] == 1 for path in adopted), "an adopted row fetched again"
    report = run_subprocess("report", url, "--json", env=env)
    assert report.returncode == 0, report.stderr
    document = json.loads(report.stdout)
    assert document["state"] == "done"
    assert document["totals"]["committed"] == 156
    assert document["generations"][0]["planned"] == 156  # generation 0 read from its snapshots
    merged = run_subprocess("merge", url, "-o", str(tmp_path / "merged"), env=env)
    assert merged.returncode == 0, merged.stderr
    data = pq.read_table(tmp_path / "merged" / "data")
    errors = pq.read_table(tmp_path / "merged" / "errors")
    ids = data.column("item_id").to_pylist() + errors.column("item_id").to_pylist()
    assert (data.num_rows, errors.num_rows) == (150, 6)
    assert len(set(ids)) == 156
    # A state folder lost after generations cannot be rebuilt from the bucket: one line.
    shutil.rmtree(state)
    lost = _run(src, url, state, "--ranks", "3", env=env)
    assert lost.returncode == 2, lost.stderr
    assert "resumes only with its state folder" in lost.stderr
