"""A job as ``collect`` would have found it: seven ranks in every state, with failures, HTTP
statuses, sizes, content types, hosts and a few minutes of history (no folder, no clock)."""

from __future__ import annotations

from collections import Counter

import pytest

from fetchshard.reporting.collect import Collected, RankRow
from fetchshard.runfolder.documents import ProgressHistory
from fetchshard.stats import HostCounts, Stats

NOW = 1_800_000_000.0
STEP = 5.0
SAMPLES = 37  # three minutes


def rank_row(rank: int, state: str, **values: object) -> RankRow:
    """A rank 40% through a plan of 1,000, changed by ``values``."""
    fields: dict[str, object] = {
        "rank": rank,
        "state": state,
        "detail": "",
        "planned": 1000,
        "committed": 400,
        "fetched": 400,
        "failed": 7,
        "pending": 600,
        "urls_per_s": 0.0,
        "seconds_left": None,
        "age_s": 2.5,
    }
    fields.update(values)
    return RankRow(**fields)  # type: ignore[arg-type]


def history(
    start: float, samples: int, rate: float, *, bytes_per_row: float = 10_000.0
) -> ProgressHistory:
    """``rate`` rows per second, committed in parts of 100 rows."""
    h = ProgressHistory()
    for i in range(samples):
        fetched = rate * STEP * i
        h.append(start + STEP * i, fetched // 100 * 100, fetched, fetched * bytes_per_row)
    return h


@pytest.fixture
def found() -> Collected:
    rows = [
        rank_row(0, "running", fetched=450, urls_per_s=2.0, seconds_left=275.0),
        rank_row(1, "waiting", detail="2 hosts parked (Retry-After)"),
        rank_row(2, "dead", detail="its lock is free but it is not done: rerun it"),
        rank_row(3, "done", committed=1000, fetched=1000, pending=0, age_s=300.0),
        rank_row(4, "stopped", detail="stopped by a signal or its time limit: rerun it"),
        rank_row(5, "running", fetched=410, urls_per_s=0.5, seconds_left=1180.0),
        rank_row(
            6,
            "not started",
            planned=None,
            committed=0,
            fetched=0,
            failed=0,
            pending=None,
            age_s=None,
        ),
    ]
    hosts = {
        "a.example": HostCounts(
            failures=12,
            errors=Counter({"http_404": 10, "timeout": 2}),
            throttled=3,
            parked_s=61.25,
            samples=[("http://a.example/1", "HTTP 404 Not Found")],
        ),
        "b.example": HostCounts(throttled=40, parked_s=3725.0),
    }
    stats = Stats(
        items=2660,
        ok=2618,
        failed=42,
        bytes=26_180_000,
        http_status=Counter({"200": 2600, "404": 30, "503": 7, "301": 1}),
        content_types=Counter({f"image/type{i:02d}": 40 - i for i in range(18)}),
        sizes=Counter({"0": 3, "10": 5, "14": 2600}),
        hosts=hosts,
    )
    return Collected(
        folder="/data/job-1/out",
        world_size=len(rows),
        now=NOW,
        ranks=rows,
        stats=stats,
        errors=Counter({"http_404": 30, "timeout": 5, "http_5xx": 7}),
        history=history(NOW - STEP * (SAMPLES - 1), SAMPLES, 2.5),
        interval=STEP,
        hosts=hosts,
    )
