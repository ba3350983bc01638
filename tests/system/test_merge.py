"""``fetchshard merge`` on a real 4-rank run: sizes, current rows, bodies, the consumers."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.environment import FAULT
from fetchshard.merging.documents import MergeManifest
from server import ServerProcess
from server.bodies import jpeg_bytes
from util import FAST, run_subprocess, run_subprocesses

IMAGES = 600
SIDE = 48
FILE_SIZE = 120_000  # bytes: several files from ~1.2 MB of images


@pytest.fixture(scope="module")
def fetched(
    server_process: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, dict[str, int]]]:
    """A 4-rank run: images over 4 hosts (uneven parts), 404s, and a host whose first 40
    answers are 503 fetched again by --retry-failed. Yields the folder and url -> image n."""
    base = tmp_path_factory.mktemp("merge")
    key = base.name
    urls: dict[str, int] = {}
    lines = []
    for n in range(IMAGES):
        url = server_process.url(f"/image/{n}?w={SIDE}&h={SIDE}&t=m{n}", host=n % 3)
        urls[url] = n
        lines.append(url)
    flaky = [server_process.url(f"/flaky/{key}/40?image={i}&t=mf-{i}", host=3) for i in range(20)]
    lines += flaky
    lines += [server_process.url(f"/status/404?t=m404-{i}", host=3) for i in range(7)]
    src = base / "urls.txt"
    src.write_text("\n".join(lines) + "\n")
    out = base / "out"
    common = [*FAST, "--set", "fetch.max_attempts=2", "--set", "fetch.final_pass_attempts=0"]
    common += ["--set", "output.part_max_rows=70", "--ranks", "4"]
    first = run_subprocess("run", str(src), "-o", str(out), *common)
    assert first.returncode == 0, first.stderr
    again = run_subprocess("run", str(src), "-o", str(out), *common, "--retry-failed")
    assert again.returncode == 0, again.stderr
    yield out, urls


def _merge(out: Path, dest: Path, *args: str, env: dict[str, str] | None = None) -> object:
    return run_subprocess(
        "merge", str(out), "-o", str(dest), "--file-size", str(FILE_SIZE), *args, env=env
    )


def _manifest(dest: Path) -> MergeManifest:
    found = MergeManifest.read(dest / "manifest.json")
    assert found is not None
    return found


def test_merge_gives_current_rows_in_files_of_the_target_size(
    fetched: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    out, urls = fetched
    dest = tmp_path / "merged"
    done = _merge(out, dest)
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    manifest = _manifest(dest)
    assert manifest.complete and manifest.body_as == "image"
    assert manifest.counts == {"planned": IMAGES + 27, "ok": IMAGES + 20, "failed": 7, "missing": 0}
    assert manifest.errors == {"http_404": 7}
    data = sorted((dest / "data").glob("train-*.parquet"))
    assert len(data) >= 5
    count = len(data)
    assert [p.name for p in data] == [f"train-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
    sizes = [p.stat().st_size for p in data]
    assert all(0.9 * FILE_SIZE <= s <= 1.1 * FILE_SIZE for s in sizes[:-1]), sizes
    for path in data:
        meta = pq.ParquetFile(path).metadata
        assert meta.row_group(0).column(0).has_column_index  # the page index
    table = pa.concat_tables(pq.read_table(p) for p in data)
    assert table.num_rows == len(set(table.column("item_id").to_pylist())) == IMAGES + 20
    for row in table.select(["url", "image"]).to_pylist():
        n = urls.get(row["url"])
        if n is not None:
            assert row["image"]["bytes"] == jpeg_bytes(n, SIDE, SIDE)
        else:  # a flaky URL, fetched again
            i = int(row["url"].rsplit("-", 1)[1])
            assert row["image"]["bytes"] == jpeg_bytes(i, 32, 32)
    # The records in the manifest are the files on disk.
    by_path = {f.path: f for f in manifest.files}
    for path in data:
        record = by_path[str(path.relative_to(dest))]
        assert (
            record.bytes == path.stat().st_size and record.rows == pq.read_metadata(path).num_rows
        )


def test_the_merged_folder_loads_in_pandas_duckdb_and_datasets(
    fetched: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    duckdb = pytest.importorskip("duckdb")
    datasets = pytest.importorskip("datasets")
    out, _ = fetched
    dest = tmp_path / "merged"
    done = _merge(out, dest)
    assert done.returncode == 0, done.stderr  # type: ignore[attr-defined]
    frame = pq.read_table(dest / "data").to_pandas()
    assert len(frame) == IMAGES + 20 and set(frame["status"]) == {"ok"}
    counts = duckdb.sql(
        f"SELECT status, count(*) FROM read_parquet('{dest}/*/*.parquet', union_by_name=true) "
        "GROUP BY status ORDER BY status"
    ).fetchall()
    assert counts == [("failed", 7), ("ok", IMAGES + 20)]
    cache = tmp_path / "hf-cache"
    train = datasets.load_dataset(str(dest), split="train", cache_dir=str(cache))
    assert len(train) == IMAGES + 20
    first = next(r for r in train if r["content_type"] == "image/jpeg")
    assert first["image"].size == (SIDE, SIDE)  # a PIL image
    errors = datasets.load_dataset(str(dest), "errors", split="train", cache_dir=str(cache))
    assert len(errors) == 7 and set(errors["error_kind"]) == {"http_404"}
    card = (dest / "README.md").read_text()
    assert "| failed | `http_404` | 7 |" in card


def test_a_missing_part_or_an_unfinished_rank_is_named_unless_partial(
    fetched: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(fetched[0], out)
    part = sorted((out / "shards" / "rank-00002").glob("part-*.parquet"))[0]
    rows = pq.read_metadata(part).num_rows
    part.unlink()
    (out / "done" / "rank-00001").unlink()
    refused = _merge(out, tmp_path / "m1")
    assert refused.returncode == 1  # type: ignore[attr-defined]
    err = refused.stderr  # type: ignore[attr-defined]
    assert f"shards/rank-00002/{part.name} is missing" in err
    assert "rank 1 is not finished" in err
    assert not (tmp_path / "m1").exists()
    partial = _merge(out, tmp_path / "m2", "--allow-partial")
    assert partial.returncode == 0, partial.stderr  # type: ignore[attr-defined]
    manifest = _manifest(tmp_path / "m2")
    assert not manifest.complete
    assert {(g["rank"], g["reason"]) for g in manifest.missing} == {
        (2, "missing_part"),
        (1, "unfinished"),
    }
    missing = pq.read_table(tmp_path / "m2" / "missing.parquet").to_pylist()
    assert len(missing) == manifest.counts["missing"] >= 1
    assert {(m["rank"], m["reason"]) for m in missing} == {(2, "missing_part")}
    assert manifest.counts["ok"] + manifest.counts["failed"] + len(missing) == IMAGES + 27
    assert len(missing) <= rows


def test_a_killed_merge_reruns_to_the_same_files_and_ranks_give_the_same_bytes(
    fetched: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    out, _ = fetched
    whole, killed, ranked = tmp_path / "whole", tmp_path / "killed", tmp_path / "ranked"
    # Three merges of the same folder into their own destinations, independent: at once.
    merge = ["merge", str(out), "--file-size", str(FILE_SIZE), "-o"]
    first, crashed, parallel = run_subprocesses(
        [*merge, str(whole)],
        [*merge, str(killed)],
        [*merge, str(ranked), "--ranks", "4"],
        envs=[{}, {FAULT: "merge_data:3"}],
    )
    assert first.returncode == 0, first.stderr
    reference = _manifest(whole).to_dict()
    assert crashed.returncode != 0
    assert not (killed / "manifest.json").exists()
    rerun = _merge(out, killed)
    assert rerun.returncode == 0, rerun.stderr  # type: ignore[attr-defined]
    assert "found finished data-00000" in rerun.stderr  # type: ignore[attr-defined]
    assert _manifest(killed).to_dict() == reference
    assert parallel.returncode == 0, parallel.stderr
    assert _manifest(ranked).to_dict() == reference
    assert json.loads((ranked / "manifest.json").read_text())["files"] == reference["files"]
