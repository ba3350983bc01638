"""``fetchshard merge RUN -o s3://bucket/prefix`` on a real run, into moto's S3 server on
loopback: the objects are the local merge's files, pyarrow, pandas and ``datasets`` read them
from the custom endpoint, a rerun leaves exactly its own objects, what the user must fix is
one line and exit 2 before any work, and the fake secret is nowhere."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.environment import FAULT
from fetchshard.runfolder.layout import MERGE_STAGING_PREFIX
from fetchshard.runfolder.objectstore import MISSING_BOTO3
from server import ServerProcess
from server.s3 import FAKE_SECRET, REGION, MotoS3
from util import FAST, cli, run_subprocess

IMAGES = 24
SIDE = 16
FILE_SIZE = "6000"  # bytes: a few data files from the small images
BUCKET = "bkt"


@pytest.fixture(scope="module")
def fetched(
    server_process: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Path]]:
    """A run of images over two hosts and three 404s, and its merge into a local folder (the
    reference). Yields the run folder and the merged folder."""
    base = tmp_path_factory.mktemp("merge-s3")
    lines = [
        server_process.url(f"/image/{n}?w={SIDE}&h={SIDE}&t=s3-{n}", host=n % 2)
        for n in range(IMAGES)
    ]
    lines += [server_process.url(f"/status/404?t=s3-404-{i}", host=2) for i in range(3)]
    src = base / "urls.txt"
    src.write_text("\n".join(lines) + "\n")
    out = base / "out"
    done = run_subprocess("run", str(src), "-o", str(out), *FAST, "--set", "fetch.max_attempts=1")
    assert done.returncode == 0, done.stderr
    local = base / "local"
    merged = cli("merge", str(out), "-o", str(local), "--file-size", FILE_SIZE)
    assert merged.exit_code == 0, merged.output
    yield out, local


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by("item_id")


def _local_files(local: Path, prefix: str) -> dict[str, bytes]:
    return {
        f"{prefix}/{p.relative_to(local).as_posix()}": p.read_bytes()
        for p in local.rglob("*")
        if p.is_file()
    }


def test_the_merged_bucket_holds_the_local_merge_and_its_readers_read_it(
    s3: MotoS3, fetched: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, local = fetched
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="ds/notes.txt", Body=b"the user's")  # left alone
    done = cli(
        "merge", str(out), "-o", f"s3://{BUCKET}/ds", "--s3-endpoint", s3.endpoint,
        "--file-size", FILE_SIZE,
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"s3://{BUCKET}/ds: complete, {IMAGES} ok and 3 failed rows")
    objects = s3.objects(BUCKET)
    # Every file of the local merge, byte for byte (a merge writes the same bytes anywhere).
    assert objects == {**_local_files(local, "ds"), "ds/notes.txt": b"the user's"}
    assert len([k for k in objects if k.startswith("ds/data/train-")]) >= 2
    assert not list(out.glob(f"{MERGE_STAGING_PREFIX}*"))  # the staging folder is gone

    # pyarrow, through its own S3 client on the custom endpoint.
    from pyarrow import fs as pafs

    s3fs_arrow = pafs.S3FileSystem(
        endpoint_override=s3.endpoint.removeprefix("http://"), scheme="http", region=REGION
    )
    for folder in ("data", "errors"):
        read = pq.read_table(f"{BUCKET}/ds/{folder}", filesystem=s3fs_arrow)
        assert _sorted(read).equals(_sorted(pq.read_table(local / folder)))

    # pandas and datasets through s3fs, with the endpoint in storage_options (keys: the env).
    import pandas as pd

    options = {"client_kwargs": {"endpoint_url": s3.endpoint, "region_name": REGION}}
    frame = pd.read_parquet(f"s3://{BUCKET}/ds/data/", storage_options=options)
    expected = pq.read_table(local / "data").to_pandas()
    assert sorted(zip(frame["item_id"], frame["sha256"], strict=True)) == sorted(
        zip(expected["item_id"], expected["sha256"], strict=True)
    )
    monkeypatch.setenv("HF_ENDPOINT", s3.endpoint + "/no-hub")  # nothing may reach a real Hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # it would refuse s3:// too
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    import datasets

    train = datasets.load_dataset(
        "parquet",
        data_files={"train": f"s3://{BUCKET}/ds/data/train-*.parquet"},
        storage_options=options,
        split="train",
        cache_dir=str(tmp_path / "hf-cache"),
    )
    assert sorted(train["item_id"]) == sorted(expected["item_id"])
    assert train[0]["image"].size == (SIDE, SIDE)  # the body, decoded as an image

    # The fake secret was in the merge's environment: it is in no object, file or line.
    needle = FAKE_SECRET.encode()
    assert not [key for key, data in objects.items() if needle in data]
    assert not [p for p in out.rglob("*") if p.is_file() and needle in p.read_bytes()]
    assert FAKE_SECRET not in done.stdout + done.stderr
    assert "uploaded" in done.stderr  # its log lines were there to look at


def test_a_rerun_to_the_same_prefix_leaves_exactly_its_own_objects(
    s3: MotoS3, fetched: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    out, local = fetched
    s3.client().create_bucket(Bucket=BUCKET)
    monkeypatch.setenv("FETCHSHARD_S3_ENDPOINT", s3.endpoint)  # the flag's variable

    def merge(file_size: str) -> dict[str, bytes]:
        result = cli("merge", str(out), "-o", f"s3://{BUCKET}/ds/", "--file-size", file_size)
        assert result.exit_code == 0, result.output
        return s3.objects(BUCKET)

    smaller = merge("2500")  # more, smaller files than the reference's
    data = sorted(k for k in smaller if k.startswith("ds/data/"))
    count = len(data)
    assert data == [f"ds/data/train-{i:05d}-of-{count:05d}.parquet" for i in range(count)]
    reference = _local_files(local, "ds")
    assert count > len([k for k in reference if k.startswith("ds/data/")])
    # Killed after its second upload: the earlier manifest went first, the new one comes
    # last, so no manifest.json describes the mixed files.
    killed = run_subprocess(
        "merge", str(out), "-o", f"s3://{BUCKET}/ds", "--file-size", FILE_SIZE,
        "--staging", str(tmp_path), env={FAULT: "merge_upload:2"},
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert "ds/manifest.json" not in s3.objects(BUCKET)
    # Another file count, another plan: its files and records replaced, the others deleted;
    # what is left is the reference merge's, byte for byte, and a rerun leaves it so.
    assert merge(FILE_SIZE) == reference
    assert merge(FILE_SIZE) == reference


def _one_line_exit_2(*args: str) -> str:
    result = cli("merge", *args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("fetchshard: error: ") and result.output.count("\n") == 1
    return result.output


def test_what_stops_a_merge_into_a_bucket_is_one_line_before_any_work(
    s3: MotoS3, fetched: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(fetched[0])
    s3.client().create_bucket(Bucket=BUCKET)
    endpoint = ["--s3-endpoint", s3.endpoint]
    assert "no bucket" in _one_line_exit_2(out, "-o", "s3://", *endpoint)
    refused = _one_line_exit_2(out, "-o", f"s3://AKIAX:{FAKE_SECRET}@{BUCKET}/ds", *endpoint)
    assert "credentials in it" in refused and FAKE_SECRET not in refused
    assert "only with s3://" in _one_line_exit_2(out, "-o", "elsewhere", *endpoint)
    assert "no such bucket" in _one_line_exit_2(out, "-o", "s3://nobucket/ds", *endpoint)
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the SDK's retries, for a fast test
    unreachable = ["--s3-endpoint", f"http://127.0.0.1:{port}"]
    assert "does not answer" in _one_line_exit_2(out, "-o", f"s3://{BUCKET}/ds", *unreachable)
    with monkeypatch.context() as without:
        without.delenv("AWS_ACCESS_KEY_ID")
        without.delenv("AWS_SECRET_ACCESS_KEY")
        said = _one_line_exit_2(out, "-o", f"s3://{BUCKET}/ds", *endpoint)
        assert "no usable credentials" in said
    with monkeypatch.context() as without:
        without.setitem(sys.modules, "boto3", None)  # not installed
        said = _one_line_exit_2(out, "-o", f"s3://{BUCKET}/ds", *endpoint)
        assert said == f"fetchshard: error: {MISSING_BOTO3}\n"
    assert s3.objects(BUCKET) == {}
    assert not list(Path(out).glob(f"{MERGE_STAGING_PREFIX}*"))
