"""One example of each JSON document kind, as tests/fixtures/documents/ holds its bytes.

The fixture files were written by the documents' hand-written writers (before the shared
default of ``Document``); each must still be written byte for byte and read back equal.
Regenerate only for a deliberate format change: ``python tests/document_examples.py``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from fetchshard.merging.documents import FileRecord, MergeManifest
from fetchshard.runfolder.documents import (
    DoneMarker,
    PartialTransfer,
    PlanManifest,
    PlanSliceDone,
    ProgressSnapshot,
    RangeCounts,
    RankStats,
    RunManifest,
)
from fetchshard.runfolder.lock import LockHolder
from fetchshard.stats import HostCounts, Stats

FIXTURES = Path(__file__).parent / "fixtures" / "documents"
_FINGERPRINT = {
    "world_size": 4,
    "partition": {"spread": "auto", "heavy": 0.5},
    "input": {"files": [{"path": "urls.txt", "size": 1234, "mtime_ns": 5}], "format": "txt"},
}


def _stats() -> Stats:
    stats = Stats(items=10, ok=7, failed=3, requests=14, retries=2, bytes=98_765, seconds=12.5)
    stats.deferred, stats.rate_decreases, stats.loop_lag_max_ms = 1, 2, 33.25
    stats.errors = Counter({"http_404": 2, "dns": 1})
    stats.http_status = Counter({"200": 7, "404": 2})
    stats.content_types = Counter({"image/jpeg": 6, "text/html": 1})
    stats.sizes = Counter({"14": 5, "17": 2})
    stats.hosts = {
        "a.example": HostCounts(
            failures=2,
            errors=Counter({"http_404": 2}),
            throttled=1,
            parked_s=3.5,
            samples=[("https://a.example/x", "404 Not Found")],
        )
    }
    return stats


def _snapshot() -> ProgressSnapshot:
    snap = ProgressSnapshot(rank=3, world_size=4, started_at=1_700_000_000.25, state="fetching")
    snap.updated_at, snap.input_rows, snap.total = 1_700_000_100.5, 1000, 250
    snap.committed, snap.written, snap.ok, snap.failed, snap.bytes = 40, 30, 25, 5, 123_456
    snap.requests, snap.retries, snap.in_flight, snap.active_hosts = 33, 3, 8, 4
    snap.urls_per_s, snap.waiting = 2.75, None
    snap.errors, snap.errors_before = {"dns": 2, "http_404": 3}, {"timeout": 1}
    snap.committed_before, snap.failed_before = 10, 1
    snap.http_status, snap.content_types = {"200": 25, "404": 3}, {"image/png": 25}
    snap.sizes = {"12": 20, "13": 5}
    snap.hosts = {"b.example": {"failures": 1, "errors": {"dns": 1}, "throttled": 0}}
    for second in range(0, 30, 3):
        snap.committed += 1
        snap.sample(1_700_000_000.0 + second)
    snap.sample(1_700_000_031.0, last=True)
    return snap


def _record(kind: str, index: int) -> FileRecord:
    return FileRecord(
        path=f"{kind}/train-{index:05d}-of-00002.parquet",
        kind=kind,
        rows=100 + index,
        bytes=123_456 + index,
        sha256=f"{index:064x}",
    )


def document_kinds() -> dict[str, Any]:
    """File name -> document."""
    return {
        "run.json": RunManifest(fingerprint=_FINGERPRINT, fetchshard_version="0.3.0"),
        "plan.json": PlanManifest(fingerprint=_FINGERPRINT, fetchshard_version="0.3.0"),
        "stats.json": RankStats(
            rank=3,
            world_size=4,
            complete=True,
            stats=_stats(),
            written_at=1_700_000_200.125,
            settings={"fetch": {"timeout": 30.0, "headers": {"Authorization": "***"}}},
            command=["fetchshard", "run", "urls.txt", "--output", "out"],
        ),
        "stats-defaults.json": RankStats(
            rank=1, world_size=2, complete=False, stats=Stats(ok=1), written_at=5.0
        ),
        "progress.json": _snapshot(),
        "progress-empty.json": ProgressSnapshot(rank=0, world_size=1, started_at=10.0),
        "done.json": DoneMarker(rank=3, world_size=4, items=250, completed_at=1_700_000_300.0),
        "done-unknown.json": DoneMarker(rank=2, world_size=None, items=None, completed_at=None),
        "plan-slice.json": PlanSliceDone(
            rank=1,
            world_size=2,
            plan="0123456789abcdef",
            rows=5000,
            items=4990,
            hosts=77,
            bytes_read=1_048_576,
            seconds=3.25,
            completed_at=1_700_000_400.5,
        ),
        "range-counts.json": RangeCounts(
            number=2,
            world_size=4,
            plan="0123456789abcdef",
            total=20_000,
            rows=5_020,
            hosts=90,
            heavy_hosts=[9_223_372_036_854_775_808, 13_835_058_055_282_163_711],
            heavy_rows=[3_000, 60],
            light_rows=1_960,
            bytes_read=5_760,
            seconds=0.125,
            completed_at=1_700_000_450.25,
        ),
        "lock.json": LockHolder(rank=3, host="node-7", pid=4242, since=1_700_000_000.5),
        "partial.json": PartialTransfer(
            url="https://a.example/big.bin", etag='"abc"', last_modified=None
        ),
        "merged-file.json": _record("errors", 1),
        "merge-manifest.json": MergeManifest(
            complete=False,
            format="parquet",
            body_as="image",
            counts={"planned": 300, "ok": 201, "failed": 9, "missing": 90},
            errors={"dns": 2, "http_404": 7},
            bytes=250_000,
            files=[_record("data", 0), _record("data", 1), _record("errors", 0)],
            missing=[{"rank": 2, "reason": "missing_part", "part": 3, "items": 90}],
            run={"world_size": 4, "command": ["fetchshard", "run"], "settings": {}},
            fetchshard_version="1.2.3",
        ),
        "merge-manifest-complete.json": MergeManifest(
            complete=True,
            format="webdataset",
            body_as="binary",
            counts={"planned": 1, "ok": 1, "failed": 0, "missing": 0},
            errors={},
            bytes=10,
            files=[_record("shard", 0)],
        ),
    }


if __name__ == "__main__":
    FIXTURES.mkdir(parents=True, exist_ok=True)
    for name, doc in document_kinds().items():
        (FIXTURES / name).write_bytes(doc.to_bytes())
        print(name)
