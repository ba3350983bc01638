"""The rank's progress line: bytes received as the bodies stream, not only rows written."""

from __future__ import annotations

from pathlib import Path

from fetchshard.clock import ManualClock
from fetchshard.engine.progress import Progress
from fetchshard.ranks import RankInfo
from fetchshard.stats import Stats


def test_the_summary_shows_bytes_received_and_their_recent_rate(tmp_path: Path) -> None:
    manual = ManualClock()
    progress = Progress(
        tmp_path / "p.json", RankInfo(0, 1, "test"), interactive=False, clock=manual.clock
    )
    progress.set_total(4, 0)
    assert "received" not in progress.summary()  # nothing heard yet
    for second in range(31):  # 50 MB/s for 20 s, then nothing for 10 s
        progress.update("fetching", stats=Stats(), received=min(second, 20) * 50_000_000)
        manual.advance(1.0)
    assert progress.summary().endswith(", 1.00 GB received at 0.0 MB/s")
    progress.update("fetching", stats=Stats(), received=1_250_000_000)
    assert "1.25 GB received at 25.0 MB/s" in progress.summary()  # 250 MB over the last 10 s
    progress.close()
