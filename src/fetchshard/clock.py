"""The one clock everything that schedules reads; tests pass a :class:`ManualClock`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# Seconds between checks of the deadlines of the transfers in flight (one shared tick instead
# of timers per request, http/deadlines.py): a deadline fires up to this late. The tail bound
# (engine/retry.py) counts it once per attempt.
DEADLINE_TICK = 0.25


@dataclass(frozen=True, slots=True)
class Clock:
    """``monotonic`` for intervals and timers (in a rank: its event loop's own clock, which
    ``call_later`` uses); ``wall`` for what is stored (the ledger's due times, timestamps)."""

    monotonic: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time


SYSTEM = Clock()


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`); its ``clock`` is the Clock."""

    def __init__(self, start: float = 1000.0, wall_offset: float = 1.7e9) -> None:
        self.now = start
        self._offset = wall_offset
        self.clock = Clock(monotonic=lambda: self.now, wall=lambda: self.now + self._offset)

    def advance(self, seconds: float) -> None:
        self.now += seconds
