"""runfolder/remote.py: a run folder whose data is mirrored to a bucket (moto's server on
loopback, the ``s3`` fixture), and a bucket's run read back as a RunFolder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.errors import RunFolderError, WriterConflictError
from fetchshard.runfolder.layout import GenerationPaths, RunPaths, ledger_paths
from fetchshard.runfolder.objectstore import BucketURL, ObjectStore, S3Settings
from fetchshard.runfolder.remote import BucketStorage, bucket_run
from fetchshard.runfolder.storage import LOCAL
from server.s3 import MotoS3

BUCKET = "bkt"
URL = BucketURL(BUCKET, "runs/one")


def _storage(s3: MotoS3, root: Path, writer: str = "w-1") -> BucketStorage:
    store = ObjectStore(BUCKET, S3Settings(endpoint=s3.endpoint), writer=writer)
    return BucketStorage(root, URL, store)


@pytest.fixture
def bucket(s3: MotoS3) -> MotoS3:
    s3.client().create_bucket(Bucket=BUCKET)
    return s3


def test_the_runs_data_is_mirrored_and_its_state_is_not(bucket: MotoS3, tmp_path: Path) -> None:
    storage = _storage(bucket, tmp_path)
    paths = RunPaths(tmp_path)
    mirrored = [paths.run_json, paths.part(0, 1), paths.progress(3), paths.stats(0),
                paths.done(0), paths.files_dir / "h" / "a.bin",
                RunPaths(tmp_path, 2).part(1, 4)]  # fmt: skip
    local = [paths.ledger(0), paths.log(0), paths.lock(0), paths.partial_dir(0) / "1.part",
             tmp_path / "plan" / "plan.json", tmp_path.parent / "elsewhere.json"]  # fmt: skip
    later = GenerationPaths(tmp_path, 1)
    source = later.leftover(0, 3)
    mirrored += [later.manifest, source.done, later.carried(0, 3)]
    local += [source.items, source.hosts, source.index, source.spill_run(0), source.lock]
    assert all(storage.relative(p) is not None for p in mirrored)
    assert all(storage.relative(p) is None for p in local)
    assert storage.key(paths.part(0, 1)) == "runs/one/shards/rank-00000/part-000001.parquet"
    assert storage.key(RunPaths(tmp_path, 2).part(1, 4)).startswith("runs/one/gen-0002/shards/")


def test_documents_are_written_here_and_put_there(bucket: MotoS3, tmp_path: Path) -> None:
    storage = _storage(bucket, tmp_path)
    paths = RunPaths(tmp_path)
    storage.write_atomic(paths.stats(0), b"stats", durable=True)  # put before returning
    assert bucket.objects(BUCKET) == {"runs/one/stats/rank-00000.json": b"stats"}
    for n in range(20):  # put in the background, the latest bytes of a key only
        storage.write_atomic(paths.progress(0), f"progress {n}".encode())
    storage.write_atomic(paths.ledger(0), b"not mirrored")
    storage.flush()
    objects = bucket.objects(BUCKET)
    assert objects["runs/one/progress/rank-00000.json"] == b"progress 19"
    assert paths.progress(0).read_bytes() == b"progress 19"
    assert len(objects) == 2
    storage.close()


def test_a_part_is_created_once_and_a_file_replaced(bucket: MotoS3, tmp_path: Path) -> None:
    ours, theirs = _storage(bucket, tmp_path, "w-1"), _storage(bucket, tmp_path / "b", "w-2")
    paths = RunPaths(tmp_path)
    tmp = tmp_path / "staged"
    tmp.write_bytes(b"part one")
    ours.publish(tmp, paths.part(0, 1))
    assert tmp.exists(), "the tmp stays until the ledger has the part"
    assert not paths.part(0, 1).exists(), "no local copy"
    ours.publish(tmp, paths.part(0, 1))  # our own PUT again (its answer lost): done
    other = tmp_path / "b" / "staged"
    other.parent.mkdir()
    other.write_bytes(b"another writer's part one")
    with pytest.raises(WriterConflictError):
        theirs.publish(other, RunPaths(tmp_path / "b").part(0, 1))
    body = paths.files_dir / "host" / "x.bin"
    ours.publish(tmp, body)
    theirs.publish(other, RunPaths(tmp_path / "b").files_dir / "host" / "x.bin")  # replaced
    objects = bucket.objects(BUCKET)
    assert objects["runs/one/shards/rank-00000/part-000001.parquet"] == b"part one"
    assert objects["runs/one/files/host/x.bin"] == b"another writer's part one"
    assert ours.published(paths.shard_dir(0)) == {"part-000001.parquet": 8}
    with ours.open_published(paths.part(0, 1)) as read:
        read.seek(5)
        assert read.read() == b"one"


def test_removing_a_ranks_shards_deletes_its_parts_and_nothing_else(
    bucket: MotoS3, tmp_path: Path
) -> None:
    storage = _storage(bucket, tmp_path)
    paths = RunPaths(tmp_path)
    tmp = tmp_path / "staged"
    tmp.write_bytes(b"x")
    for rank, part in [(0, 1), (0, 2), (1, 1)]:
        storage.publish(tmp, paths.part(rank, part))
    storage.publish(tmp, paths.files_dir / "shards" / "a")  # a file under a folder "shards"
    storage.remove(paths.shard_dir(0))
    storage.remove(paths.files_dir / "shards")  # a file's folder: only that key, none here
    assert sorted(bucket.objects(BUCKET)) == [
        "runs/one/files/shards/a",
        "runs/one/shards/rank-00001/part-000001.parquet",
    ]


def test_a_missing_document_is_restored_from_the_bucket(bucket: MotoS3, tmp_path: Path) -> None:
    storage = _storage(bucket, tmp_path / "first")
    storage.write_atomic(RunPaths(tmp_path / "first").run_json, b"{}", durable=True)
    fresh = _storage(bucket, tmp_path / "second")  # a state folder lost with its machine
    run_json = RunPaths(tmp_path / "second").run_json
    assert fresh.restore(run_json)
    assert run_json.read_bytes() == b"{}"
    assert not fresh.restore(run_json)  # here already
    assert not fresh.restore(RunPaths(tmp_path / "second").done(0))  # not in the bucket
    assert not LOCAL.restore(run_json)


def test_a_ledger_snapshot_is_consistent_and_goes_with_its_items(
    bucket: MotoS3, tmp_path: Path
) -> None:
    storage = _storage(bucket, tmp_path)
    files = ledger_paths(RunPaths(tmp_path).ledger(0))
    files.db.parent.mkdir(parents=True)
    with sqlite3.connect(files.db) as db:
        db.execute("CREATE TABLE t (x)")
        db.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
    pq.write_table(pa.table({"item_id": [1, 2]}), files.items)
    storage.snapshot_ledger(files)
    objects = bucket.objects(BUCKET)
    copy = tmp_path / "copy.sqlite"
    copy.write_bytes(objects["runs/one/ledger/rank-00000.sqlite"])
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT count(*) FROM t").fetchone() == (100,)
    assert objects["runs/one/ledger/rank-00000.items.arrow"] == files.items.read_bytes()
    assert not list(files.db.parent.glob("*.tmp")), "the snapshot's local copy is left"
    for path in (files.db, files.items):  # --restart: the rank's ledger goes, its snapshot too
        storage.remove(path)
    assert not bucket.objects(BUCKET)


def test_a_bucket_without_a_run_is_refused_and_a_run_is_read(
    bucket: MotoS3, tmp_path: Path
) -> None:
    settings = S3Settings(endpoint=bucket.endpoint)
    missing = f"s3://{BUCKET}/runs/one is not a fetchshard run"
    with pytest.raises(RunFolderError, match=missing), bucket_run(URL, settings, parent=tmp_path):
        pass
    client = bucket.client()
    from fetchshard import __version__
    from fetchshard.runfolder.documents import RunManifest

    manifest = RunManifest(fingerprint={"world_size": 2}, fetchshard_version=__version__)
    client.put_object(Bucket=BUCKET, Key="runs/one/run.json", Body=manifest.to_bytes())
    client.put_object(
        Bucket=BUCKET, Key="runs/one/shards/rank-00000/part-000001.parquet", Body=b"p"
    )
    client.put_object(Bucket=BUCKET, Key="runs/one/merged/data/x.parquet", Body=b"m")
    with bucket_run(URL, settings, parent=tmp_path) as folder:
        copy = folder.paths.root
        assert folder.location == f"s3://{BUCKET}/runs/one"
        assert folder.world_size == 2
        assert sorted(p.relative_to(copy).as_posix() for p in copy.rglob("*") if p.is_file()) == [
            "run.json"
        ]  # documents only: parts are read where they are
        assert folder.part_exists(folder.paths.part(0, 1))
        assert not folder.part_exists(folder.paths.part(0, 2))
        assert not folder.rank(0).running
    assert not copy.exists(), "the copy is removed"
