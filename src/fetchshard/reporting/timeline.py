"""The report's arithmetic over time, on :class:`ProgressHistory` columns: the ranks' histories
summed on one time grid, a rate over the last minute, and the throughput chart's rates.

Pure functions of the histories: ``summary.py`` calls them, the views only draw the result.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from fetchshard.runfolder.documents import ProgressHistory

RATE_WINDOW = 60.0  # seconds of a history that give its rate "now"
POINTS = 256  # samples of the summed history at most
# The throughput chart's window is about this fraction of the run...
WINDOW_OF_RUN = 1 / 40
# ...rounded up to one of these lengths (seconds), which a reader takes in at a glance.
NICE_WINDOWS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600)


def recent_rate(
    time: Sequence[float], values: Sequence[float], window: float = RATE_WINDOW
) -> float:
    """How fast ``values`` grew over the last ``window`` seconds of ``time`` (all of it, if
    shorter), per second; never below 0."""
    if len(time) < 2:
        return 0.0
    end = len(time) - 1
    start = next((i for i in range(end - 1, -1, -1) if time[end] - time[i] >= window), 0)
    span = time[end] - time[start]
    return max(values[end] - values[start], 0.0) / span if span > 0 else 0.0


def summed(histories: Sequence[tuple[ProgressHistory, float]]) -> ProgressHistory:
    """The histories (each with its sample step) summed on one time grid of at most POINTS
    samples; a rank counts its first sample's committed and fetched before it starts (and no
    bytes), its last sample's values after it ends."""
    series = [h for h, _ in histories if len(h)]
    if not series:
        return ProgressHistory()
    first = min(h.time[0] for h in series)
    last = max(max(h.time[-1] for h in series), first)
    # no finer than the ranks' own samples, or the rate between them would read as 0
    finest = max(step for _, step in histories)
    step = max((last - first) / (POINTS - 1), finest)
    grid = first + step * np.arange(int((last - first) // step) + 1)
    if grid[-1] < last:
        grid = np.append(grid, last)
    committed = np.zeros(len(grid))
    fetched = np.zeros(len(grid))
    sent = np.zeros(len(grid))
    for h in series:
        at = np.searchsorted(np.asarray(h.time), grid, side="right") - 1  # last sample <= t
        before = at < 0
        at = np.maximum(at, 0)
        c = np.asarray(h.committed, dtype=np.float64)
        committed += c[at]
        fetched += np.where(before, c[0], np.asarray(h.fetched, dtype=np.float64)[at])
        sent += np.where(before, 0.0, np.asarray(h.bytes, dtype=np.float64)[at])
    return ProgressHistory(
        time=[round(float(t), 3) for t in grid],
        committed=committed.tolist(),
        fetched=fetched.tolist(),
        bytes=sent.tolist(),
    )


def sample_rates(history: ProgressHistory) -> list[float]:
    """Fetched rows per second since the sample before, per sample (0 for the first)."""
    rates = [0.0] * len(history)
    t, f = history.time, history.fetched
    for i in range(1, len(history)):
        dt = t[i] - t[i - 1]
        rates[i] = round((f[i] - f[i - 1]) / dt, 3) if dt > 0 else 0.0
    return rates


def throughput_window(history: ProgressHistory) -> float:
    """The throughput chart's window: about a fortieth of the run, at least two of the usual
    gaps between changes of the history, rounded up to a length of NICE_WINDOWS."""
    if len(history) < 2:
        return 0.0
    seconds = max((history.time[-1] - history.time[0]) * WINDOW_OF_RUN, 2 * _change_gap(history))
    for nice in NICE_WINDOWS:
        if seconds <= nice:
            return float(nice) if seconds > 0.5 else round(max(seconds, 1e-3), 3)
    return round(seconds, 3)


def _change_gap(history: ProgressHistory) -> float:
    """The median time between two changes of fetched: about the ranks' snapshot step over
    the number of ranks that write (a summed history steps up at each rank's snapshot)."""
    t, f = history.time, history.fetched
    changes = [t[i] for i in range(1, len(t)) if f[i] != f[i - 1]]
    gaps = sorted(b - a for a, b in itertools.pairwise(changes))
    return gaps[len(gaps) // 2] if gaps else 0.0


def windowed_rates(history: ProgressHistory, window: float) -> tuple[list[float], list[float]]:
    """Fetched rows per second and MB per second over the ``window`` seconds before each
    sample (a summed history's own steps jump: each rank's snapshot adds its rows at once)."""
    t, f, b = history.time, history.fetched, history.bytes
    urls: list[float] = []
    mbs: list[float] = []
    start = 0
    for i in range(len(t)):
        while t[i] - t[start] > window and start < i:
            start += 1
        j = start - 1 if start > 0 else 0  # the sample just outside the window: a full span
        span = t[i] - t[j]
        if i == 0 or span <= 0:
            urls.append(0.0)
            mbs.append(0.0)
            continue
        urls.append(round((f[i] - f[j]) / span, 3))
        mbs.append(round((b[i] - b[j]) / span / 1e6, 4))
    return urls, mbs
