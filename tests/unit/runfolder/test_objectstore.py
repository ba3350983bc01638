"""runfolder/objectstore.py: s3:// URLs, and each request against a real S3 API (moto's server
on loopback, the ``s3`` fixture)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fetchshard.errors import (
    BucketError,
    ConfigError,
    ObjectStoreError,
    WriterConflictError,
)
from fetchshard.runfolder.objectstore import (
    MAX_PUT_BYTES,
    MISSING_BOTO3,
    WRITER_KEY,
    BucketURL,
    ListedObject,
    ObjectStore,
    S3Settings,
    output_location,
    writer_token,
)
from server.s3 import FAKE_SECRET, MotoS3

BUCKET = "bkt"


@pytest.mark.parametrize(
    ("text", "bucket", "prefix"),
    [
        ("s3://bkt/ds", "bkt", "ds"),
        ("S3://bkt//a//b/", "bkt", "a/b"),
        ("s3://my.bucket-1/", "my.bucket-1", ""),
        ("s3://bkt", "bkt", ""),
        ("s3://bkt/a@b/c", "bkt", "a@b/c"),  # an @ in a key is only a character
    ],
)
def test_an_s3_url_is_a_bucket_and_a_normal_prefix(text: str, bucket: str, prefix: str) -> None:
    location = BucketURL.parse(text)
    assert (location.bucket, location.prefix) == (bucket, prefix)
    assert location.key("data/x.parquet") == (f"{prefix}/" if prefix else "") + "data/x.parquet"
    assert location.relative(location.key("manifest.json")) == "manifest.json"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (f"s3://AKIAEXAMPLE:{FAKE_SECRET}@bkt/ds", "credentials in it (s3://***@bkt/...)"),
        (f"s3://{FAKE_SECRET}@bkt/ds", "credentials in it"),
        (f"s3://AKIAEXAMPLE:{FAKE_SECRET}/bkt/ds", "not a valid bucket name"),  # no @: no host
        (f"s3://bkt/ds?secret_key={FAKE_SECRET}", "query or fragment"),
        ("s3:///ds", "no bucket"),
        ("s3://", "no bucket"),
        ("s3://Bkt/ds", "not a valid bucket name"),
        ("s3://bkt/a/../b", "'..'"),
        ("s3://bkt/a\nb", "control character"),
    ],
)
def test_a_bad_s3_url_is_one_line_without_the_secret(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        BucketURL.parse(text)
    message = str(raised.value)
    assert says in message and message.startswith("-o: ")
    assert FAKE_SECRET not in message and "AKIAEXAMPLE" not in message
    assert "\n" not in message


def test_an_output_is_a_folder_a_bucket_or_refused() -> None:
    assert output_location("out/merged") is None
    assert output_location("/abs/s3:/x") is None
    assert output_location("s3://bkt/ds") == BucketURL("bkt", "ds")
    with pytest.raises(ConfigError, match="only s3:// is supported yet, not gs://"):
        output_location("gs://bkt/ds")


def test_an_endpoint_or_a_region_is_checked_and_never_holds_a_key() -> None:
    assert S3Settings(endpoint="http://127.0.0.1:9000", region="us-east-1").endpoint
    with pytest.raises(ConfigError) as raised:
        S3Settings(endpoint=f"http://KEY:{FAKE_SECRET}@127.0.0.1:9000")
    assert "credentials in the endpoint URL are refused" in str(raised.value)
    assert FAKE_SECRET not in str(raised.value)
    for bad in ("127.0.0.1:9000", "ftp://host", "http://host/path", "http://host:port"):
        with pytest.raises(ConfigError, match="--s3-endpoint"):
            S3Settings(endpoint=bad)
    with pytest.raises(ConfigError, match="--s3-region"):
        S3Settings(region="us east")
    flags_first = S3Settings.resolve(
        {"FETCHSHARD_S3_ENDPOINT": "http://127.0.0.1:1", "FETCHSHARD_S3_REGION": "eu-west-1"},
        endpoint="http://127.0.0.1:2",
        region=None,
    )
    assert flags_first == S3Settings(endpoint="http://127.0.0.1:2", region="eu-west-1")


def _store(s3: MotoS3, *, writer: str | None = None) -> ObjectStore:
    return ObjectStore(BUCKET, S3Settings(endpoint=s3.endpoint, region="us-east-1"), writer=writer)


def _file(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_created_key_is_fenced_against_another_writer(s3: MotoS3, tmp_path: Path) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    first, second = _store(s3, writer="writer-a"), _store(s3, writer="writer-b")
    key = "shards/rank-00000/part-000001.parquet"
    first.put_file(_file(tmp_path, "a", b"first writer"), key, create_only=True)
    # The same writer again (its PUT's answer lost, retried): the 412 is its own object.
    first.put_file(_file(tmp_path, "a2", b"first writer"), key, create_only=True)
    with pytest.raises(WriterConflictError) as raised:
        second.put_file(_file(tmp_path, "b", b"second writer"), key, create_only=True)
    assert f"s3://{BUCKET}/{key} was created by another writer" in str(raised.value)
    assert first.get_bytes(key) == b"first writer"  # nothing replaced
    head = s3.client().head_object(Bucket=BUCKET, Key=key)
    assert head["Metadata"] == {WRITER_KEY: "writer-a"}
    # Without create_only the object is replaced whole.
    second.put_file(_file(tmp_path, "c", b"replaced"), key, create_only=False)
    assert first.get_bytes(key) == b"replaced"


def test_each_process_has_its_own_writer_token() -> None:
    # Forked in a fresh interpreter: this one runs threads (moto's server) that fork dislikes.
    code = (
        "import os\n"
        "from fetchshard.runfolder.objectstore import writer_token\n"
        "read, write = os.pipe()\n"
        "if os.fork() == 0:\n"
        "    os.write(write, writer_token().encode())\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print(writer_token(), os.read(read, 64).decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    parent, child = done.stdout.split()
    assert len({parent, child, writer_token()}) == 3
    assert all(len(t) == 32 and int(t, 16) >= 0 for t in (parent, child))


def test_bytes_go_up_and_come_back_and_a_missing_key_is_none(s3: MotoS3) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    store = _store(s3)
    store.put_bytes(b'{"kind": "x"}', "ds/doc.json")
    assert store.get_bytes("ds/doc.json") == b'{"kind": "x"}'
    assert store.get_bytes("ds/none.json") is None
    store.delete("ds/doc.json")
    store.delete("ds/doc.json")  # a missing key: no error
    assert store.get_bytes("ds/doc.json") is None


def test_a_listing_skips_folder_markers(s3: MotoS3) -> None:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    store = _store(s3)
    store.put_bytes(b"aa", "p/a")
    client.put_object(Bucket=BUCKET, Key="p/dir/", Body=b"")  # a marker, as pyarrow leaves
    store.put_bytes(b"bbb", "p/dir/b")
    store.put_bytes(b"c", "q/c")
    assert store.list("p/") == [ListedObject("p/a", 2), ListedObject("p/dir/b", 3)]
    assert [o.key for o in store.list("")] == ["p/a", "p/dir/b", "q/c"]


def test_abort_uploads_ends_the_started_multipart_uploads_under_a_prefix(s3: MotoS3) -> None:
    client = s3.client()
    client.create_bucket(Bucket=BUCKET)
    client.create_multipart_upload(Bucket=BUCKET, Key="run/shards/part-1.parquet")
    client.create_multipart_upload(Bucket=BUCKET, Key="run/shards/part-2.parquet")
    client.create_multipart_upload(Bucket=BUCKET, Key="other/part-1.parquet")
    store = _store(s3)
    assert store.abort_uploads("run/") == 2
    left = client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert [u["Key"] for u in left] == ["other/part-1.parquet"]
    assert store.abort_uploads("run/") == 0


def test_a_file_above_one_put_is_refused_before_any_request(s3: MotoS3, tmp_path: Path) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    huge = tmp_path / "huge.parquet"
    with huge.open("wb") as fh:
        fh.truncate(MAX_PUT_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ObjectStoreError, match="at most 5 GiB"):
        _store(s3).put_file(huge, "ds/huge.parquet", create_only=False)
    assert _store(s3).list("") == []


def test_what_the_user_must_fix_is_a_bucket_error_without_a_secret(
    s3: MotoS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    s3.client().create_bucket(Bucket=BUCKET)
    store = _store(s3)
    store.check()
    assert FAKE_SECRET not in repr(store) and repr(store).startswith("ObjectStore(bucket='bkt'")
    with pytest.raises(BucketError, match=r"s3://nobucket: no such bucket at the S3 endpoint"):
        ObjectStore("nobucket", store.settings).check()
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # the SDK's own retries, for a fast test
    unreachable = S3Settings(endpoint=f"http://127.0.0.1:{port}")
    with pytest.raises(BucketError, match="does not answer"):
        ObjectStore(BUCKET, unreachable).check()
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(BucketError, match="no usable credentials") as raised:
        _store(s3).check()
    assert FAKE_SECRET not in str(raised.value)


def test_without_boto3_the_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 raises ImportError
    with pytest.raises(BucketError) as raised:
        ObjectStore(BUCKET)
    assert str(raised.value) == MISSING_BOTO3
    assert raised.value.exit_code == 2
