"""timeline.py: the ranks' histories summed, rates over a window, the throughput chart."""

from __future__ import annotations

import pytest

from fetchshard.reporting import timeline
from fetchshard.runfolder.documents import ProgressHistory


def straight(
    start: float, samples: int, step: float, rate: float, *, base: float = 0.0
) -> ProgressHistory:
    """``rate`` rows (and MB) per second from ``base`` rows, every row committed at once."""
    h = ProgressHistory()
    for i in range(samples):
        rows = base + rate * step * i
        h.append(start + step * i, rows, rows, rows * 1e6)
    return h


def test_the_rate_now_is_over_the_last_minute_or_all_of_a_shorter_history() -> None:
    h = straight(0.0, 10, 5.0, 1.0)  # 45 s at 1/s...
    for i in range(10, 40):  # ...then 150 s at 3/s
        h.append(5.0 * i, 0, h.fetched[-1] + 15, 0)
    assert timeline.recent_rate(h.time, h.fetched) == pytest.approx(3.0)
    short = straight(0.0, 4, 5.0, 2.0)
    assert timeline.recent_rate(short.time, short.fetched) == pytest.approx(2.0)
    assert timeline.recent_rate([0.0], [5.0]) == 0.0
    assert timeline.recent_rate([0.0, 60.0], [10.0, 4.0]) == 0.0  # never below 0


def test_histories_sum_on_one_grid_with_each_rank_before_and_after_its_own() -> None:
    a = straight(1000.0, 11, 10.0, 1.0, base=50.0)  # 1000..1100 s, 50..150 rows
    b = straight(1050.0, 11, 10.0, 2.0)  # 1050..1150 s, 0..200 rows
    total = timeline.summed([(a, 10.0), (b, 10.0)])
    assert total.time[0] == 1000.0 and total.time[-1] == 1150.0
    assert len(total) == 16  # no finer than the ranks' own 10 s
    at = {t: i for i, t in enumerate(total.time)}
    # before b started: b's first values (0 rows), no bytes of b
    assert total.fetched[at[1020.0]] == 70.0 and total.bytes[at[1020.0]] == 70e6
    assert total.fetched[at[1100.0]] == 150.0 + 100.0
    assert total.fetched[at[1150.0]] == 150.0 + 200.0  # after a ended: a's last values


def test_a_long_history_sums_to_at_most_256_samples() -> None:
    long = straight(0.0, 20_000, 1.0, 1.0)
    total = timeline.summed([(long, 1.0)])
    assert len(total) <= timeline.POINTS and total.time[-1] == 19_999.0
    assert timeline.summed([]) == ProgressHistory()
    assert timeline.summed([(ProgressHistory(), 5.0)]) == ProgressHistory()


def test_sample_rates_are_per_second_since_the_sample_before() -> None:
    h = ProgressHistory(
        time=[0.0, 2.0, 4.0, 4.0], committed=[0, 0, 0, 0], fetched=[0, 10, 30, 31], bytes=[0] * 4
    )
    assert timeline.sample_rates(h) == [0.0, 5.0, 10.0, 0.0]  # no time: no rate


@pytest.mark.parametrize(
    ("seconds", "step", "window"),
    [
        (400.0, 5.0, 10.0),  # a fortieth of the run, two steps: 10 s
        (3600.0, 5.0, 120.0),  # 90 s, rounded up
        (4.0, 0.2, 0.4),  # a short run keeps its own window below half a second
        (1_000_000.0, 5.0, 25_000.0),  # past the longest nice window
    ],
)
def test_the_throughput_window_is_a_length_a_reader_takes_in(
    seconds: float, step: float, window: float
) -> None:
    h = straight(0.0, int(seconds / step) + 1, step, 1.0)
    assert timeline.throughput_window(h) == pytest.approx(window)
    assert timeline.throughput_window(straight(0.0, 1, 1.0, 1.0)) == 0.0


def test_windowed_rates_of_a_steady_job_are_its_rate() -> None:
    h = straight(0.0, 30, 5.0, 3.0)
    urls, mbs = timeline.windowed_rates(h, 10.0)
    assert urls[0] == mbs[0] == 0.0
    assert urls[1:] == [3.0] * 29 and mbs[1:] == [3.0] * 29
