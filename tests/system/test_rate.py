"""The request rate a host sees never exceeds its configured rate plus one burst."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from server import ServerProcess
from util import arrivals, assert_exactly_once, cli, max_excess


@pytest.mark.parametrize(
    ("ranks", "rate", "burst", "n"),
    [(1, 10.0, 2, 40), (3, 15.0, 3, 45)],
    ids=["one-rank", "three-ranks"],
)
def test_per_host_rate_holds_at_the_server(
    ranks: int,
    rate: float,
    burst: int,
    n: int,
    server_process: ServerProcess,
    url_file: Callable[..., Path],
    tmp_path: Path,
) -> None:
    tag = f"rate{ranks}"
    urls = [server_process.url(f"/ok/x?t={tag}-{i}", host=1) for i in range(n)]
    out = tmp_path / "out"
    result = cli(
        "run",
        str(url_file(urls)),
        "-o",
        str(out),
        "--ranks",
        str(ranks),
        "--set",
        f"fetch.per_host_rate={rate}",
        "--set",
        f"fetch.per_host_burst={burst}",
        # spread = ranks gives each rank exactly one bucket of the host: shares of 1/ranks
        "--set",
        f"partition.spread={ranks}",
    )
    assert result.exit_code == 0, result.output
    assert assert_exactly_once(out, world_size=ranks) == n
    times = arrivals(server_process, f"t={tag}-")
    assert len(times) == n
    assert max_excess(times, rate, burst) <= 0
    # ... and the limit is not trivially met by a slow run: it runs close to the rate.
    assert times[-1] - times[0] >= (n - burst) / rate * 0.9


def test_max_excess_tolerates_jitter_but_not_an_overrun() -> None:
    even = [i / 40 for i in range(80)]  # 40/s exactly
    bunched = even[:1] + [even[3]] * 3 + even[4:]  # three late arrivals land together
    assert max_excess(even, 40.0, 1) <= 0
    assert max_excess(bunched, 40.0, 1) <= 0
    # 50/s instead of 40/s for 2 s: 20 requests too many, far beyond the slack
    assert max_excess([i / 50 for i in range(100)], 40.0, 1) > 5
