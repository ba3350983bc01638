"""``fetchshard merge --format webdataset`` and ``--dedup content`` on a real 2-rank run."""

from __future__ import annotations

import base64
import datetime as dt
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.environment import FAULT
from fetchshard.merging.documents import MergeManifest
from server import ServerProcess
from server.bodies import jpeg_bytes
from util import FAST, run_subprocess, run_subprocesses

IMAGES = 120
REPEATS = 15  # images 0..14 served again at a second URL: the same bytes
SIDE = 40


@pytest.fixture(scope="module")
def fetched(
    server_process: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A 2-rank run of a Parquet input (url, caption, n): images, repeats, 404s."""
    base = tmp_path_factory.mktemp("merge-wds")
    rows: list[dict[str, Any]] = []
    for n in range(IMAGES):
        url = server_process.url(f"/image/{n}?w={SIDE}&h={SIDE}&t=w{n}", host=n % 3)
        rows.append({"url": url, "caption": f"picture nº {n}", "n": n})
    for n in range(REPEATS):
        # Spread over the hosts: samples go by host, and `datasets` infers a webdataset's
        # features from its first 5 samples, so a host of caption-less rows sorted first
        # (its port decides) made caption a null column (README: "Webdataset").
        url = server_process.url(f"/image/{n}?w={SIDE}&h={SIDE}&t=again{n}", host=n % 3)
        rows.append({"url": url, "caption": None, "n": 1000 + n})
    for i in range(5):
        rows.append({"url": server_process.url(f"/status/404?t=w404-{i}"), "caption": "x", "n": -i})
    src = base / "in.parquet"
    pq.write_table(pa.Table.from_pylist(rows), src)
    out = base / "out"
    common = [*FAST, "--set", "fetch.max_attempts=1", "--set", "output.part_max_rows=40"]
    done = run_subprocess("run", str(src), "-o", str(out), *common, "--ranks", "2")
    assert done.returncode == 0, done.stderr
    yield out


def _merge(out: Path, dest: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return run_subprocess("merge", str(out), "-o", str(dest), *args, env=env)


def _manifest(dest: Path) -> MergeManifest:
    found = MergeManifest.read(dest / "manifest.json")
    assert found is not None
    return found


def _plain(value: Any) -> Any:
    """A Parquet value as the sample's json holds it."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


WDS = ["--format", "webdataset", "--caption", "caption", "--file-rows", "40"]


def test_webdataset_shards_read_back_as_the_parquet_rows(fetched: Path, tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    shards = tmp_path / "wds"
    done = _merge(fetched, shards, *WDS)
    assert done.returncode == 0, done.stderr
    reference = tmp_path / "parquet"
    assert _merge(fetched, reference).returncode == 0
    rows = {r["item_id"]: r for r in pq.read_table(reference / "data").to_pylist()}
    assert len(rows) == IMAGES + REPEATS
    manifest = _manifest(shards)
    assert manifest.format == "webdataset" and manifest.complete
    tars = sorted(shards.glob("*.tar"))
    assert [p.name for p in tars] == [f"{i:05d}.tar" for i in range(4)]  # 135 rows / 40
    sidecars = sorted(p.name for p in shards.glob("0*.parquet"))
    assert sidecars == [f"{i:05d}.parquet" for i in range(4)]
    # Members: KEY.jpg, KEY.json, KEY.txt, adjacent, keys without a dot.
    for path in tars:
        with tarfile.open(path) as tar:
            names = tar.getnames()
        keys = [n.split(".", 1)[0] for n in names]
        assert [n.split(".", 1)[1] for n in names] == ["jpg", "json", "txt"] * (len(names) // 3)
        assert keys == [k for k in keys[::3] for _ in range(3)]
    samples = list(wds.WebDataset([str(p) for p in tars], shardshuffle=False).decode())
    assert len(samples) == IMAGES + REPEATS
    sidecars = pa.concat_tables(pq.read_table(p) for p in sorted(shards.glob("0*.parquet")))
    by_key = {r["key"]: r for r in sidecars.to_pylist()}
    for sample in samples:
        meta = sample["json"]
        row = rows[meta["item_id"]]
        assert sample["jpg"] == row["image"]["bytes"] == jpeg_bytes(row["n"] % 1000, SIDE, SIDE)
        want = {k: _plain(v) for k, v in row.items() if k != "image"}
        assert meta == {"key": sample["__key__"], **want}
        assert sample["txt"] == (row["caption"] or "")
        assert {k: _plain(v) for k, v in by_key[sample["__key__"]].items()} == meta
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(len(samples))]
    assert {f.kind for f in manifest.files} == {"shard", "sidecar", "errors"}


def test_the_webdataset_folder_loads_in_datasets(fetched: Path, tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    shards = tmp_path / "wds"
    assert _merge(fetched, shards, *WDS).returncode == 0
    cache = str(tmp_path / "hf-cache")
    train = datasets.load_dataset(str(shards), split="train", cache_dir=cache)
    assert len(train) == IMAGES + REPEATS
    assert train[0]["jpg"].size == (SIDE, SIDE)
    assert train[0]["txt"] == (train[0]["json"]["caption"] or "")
    assert sum(r["txt"].startswith("picture nº") for r in train) == IMAGES
    # one loader per folder (datasets' issue #6447): the errors load as Parquet, on their own
    errors = datasets.load_dataset(
        "parquet", data_files=str(shards / "errors" / "*.parquet"), split="train", cache_dir=cache
    )
    assert len(errors) == 5 and set(errors["error_kind"]) == {"http_404"}
    assert 'data_files="errors/*.parquet"' in (shards / "README.md").read_text()


def test_a_killed_webdataset_merge_reruns_and_ranks_give_the_same_bytes(
    fetched: Path, tmp_path: Path
) -> None:
    whole, killed, ranked = tmp_path / "whole", tmp_path / "killed", tmp_path / "ranked"
    # Three merges of the same folder into their own destinations, independent: at once.
    merge = ["merge", str(fetched), *WDS, "-o"]
    first, crashed, parallel = run_subprocesses(
        [*merge, str(whole)],
        [*merge, str(killed)],
        [*merge, str(ranked), "--ranks", "3"],
        envs=[{}, {FAULT: "merge_data:2"}],
    )
    assert first.returncode == 0, first.stderr
    reference = _manifest(whole).to_dict()
    assert crashed.returncode != 0
    assert not (killed / "manifest.json").exists()
    assert parallel.returncode == 0, parallel.stderr
    assert _manifest(ranked).to_dict() == reference
    # The killed one rerun, and the ranked folder merged again as Parquet, at once.
    rerun, as_parquet = run_subprocesses(
        ["merge", str(fetched), "-o", str(killed), *WDS], ["merge", str(fetched), "-o", str(ranked)]
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _manifest(killed).to_dict() == reference
    # The same folder merged again as Parquet: the shards go, the Parquet files come.
    assert as_parquet.returncode == 0, as_parquet.stderr
    assert not list(ranked.glob("*.tar")) and not list(ranked.glob("0*.parquet"))
    assert _manifest(ranked).format == "parquet"


def test_dedup_content_keeps_a_body_once_and_names_the_duplicates(
    fetched: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "dedup"
    done = _merge(fetched, dest, "--dedup", "content")
    assert done.returncode == 0, done.stderr
    manifest = _manifest(dest)
    assert manifest.counts["ok"] == IMAGES and manifest.counts["duplicates"] == REPEATS
    data = pq.read_table(dest / "data")
    shas = data.column("sha256").to_pylist()
    assert len(set(shas)) == len(shas) == IMAGES
    dups = pq.read_table(dest / "duplicates.parquet").to_pylist()
    assert len(dups) == REPEATS
    kept = {r["item_id"]: r for r in data.to_pylist()}
    for dup in dups:
        assert dup["item_id"] not in kept
        assert kept[dup["kept_item_id"]]["sha256"] == dup["sha256"]
        assert kept[dup["kept_item_id"]]["url"] == dup["kept_url"]
        assert ("again" in dup["url"]) != ("again" in dup["kept_url"])
    assert f"{REPEATS} successes repeated the body" in (dest / "README.md").read_text()
    # Without --dedup, the same folder holds every row again and no duplicates list.
    assert _merge(fetched, dest).returncode == 0
    assert pq.read_table(dest / "data").num_rows == IMAGES + REPEATS
    assert not (dest / "duplicates.parquet").exists()


def test_bad_merge_options_are_one_line_and_exit_2(fetched: Path, tmp_path: Path) -> None:
    cases = {
        ("--format", "zip"): "--format: must be one of parquet, webdataset",
        ("--caption", "caption"): "--caption: only with --format webdataset",
        ("--format", "webdataset", "--caption", "title"): "--caption: no column 'title'",
        ("--dedup", "url"): "--dedup: must be one of content",
    }
    # Refused before anything is written: the four run at once.
    results = run_subprocesses(
        *(["merge", str(fetched), "-o", str(tmp_path / "m"), *args] for args in cases)
    )
    for (args, message), refused in zip(cases.items(), results, strict=True):
        assert refused.returncode == 2, (args, refused.stderr)
        assert message in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not (tmp_path / "m").exists()


def test_tar_members_carry_no_owner_and_the_fetch_time(fetched: Path, tmp_path: Path) -> None:
    shards = tmp_path / "wds"
    assert _merge(fetched, shards, *WDS).returncode == 0
    sidecar = pq.read_table(shards / "00000.parquet").to_pylist()
    with tarfile.open(shards / "00000.tar") as tar:
        first = tar.getmembers()[:3]
        data = tar.extractfile(first[1])
        assert data is not None
        assert io.BytesIO(data.read()).getvalue().startswith(b'{"key":"000000000"')
    assert {(m.uid, m.gid, m.uname, m.gname, m.mode) for m in first} == {(0, 0, "", "", 0o644)}
    assert first[0].mtime == int(sidecar[0]["fetched_at"].timestamp())
