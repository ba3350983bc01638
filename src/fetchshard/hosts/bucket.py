"""A leaky bucket whose rate can change while it runs, on the rank's clock.

The same algorithm as aiolimiter's ``AsyncLimiter`` (a level that leaks at ``rate`` per
second; a request fits while level + 1 <= capacity), with what the scheduler needs and that
one lacks: a rate changed in place (AIMD), a synchronous take right after a capacity check,
a full start, and the injected clock instead of the loop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LeakyBucket:
    """``rate`` requests per second, at most ``burst`` (at least one) at once."""

    __slots__ = ("_last", "_level", "_now", "capacity", "rate")

    def __init__(self, rate: float, burst: float, now: Callable[[], float]) -> None:
        if rate <= 0:
            raise ValueError(f"a bucket needs a positive rate, got {rate}")
        self.capacity = max(1.0, burst)
        self.rate = rate
        self._level = 0.0
        self._last = 0.0
        self._now = now

    def _leak(self) -> None:
        now = self._now()
        if self._level:
            self._level = max(self._level - (now - self._last) * self.rate, 0.0)
        self._last = now

    def has_capacity(self) -> bool:
        self._leak()
        return self._level + 1 <= self.capacity

    def take(self) -> None:
        """Use one request's capacity, right after :meth:`has_capacity` said yes."""
        self._level += 1

    def set_rate(self, rate: float) -> None:
        self._leak()  # settle the level at the old rate first
        self.rate = rate

    def fill(self) -> None:
        """Start with the bucket full: no burst (for a host that was just being fetched)."""
        self._leak()
        self._level = self.capacity

    def wait(self) -> float:
        """Seconds until one more request fits (0 when it fits now)."""
        self._leak()
        return max(0.0, (self._level + 1 - self.capacity) / self.rate)

    async def acquire(self) -> None:
        """Wait for capacity, then take it (for the odd request outside the scheduler)."""
        while not self.has_capacity():
            await asyncio.sleep(self.wait())
        self.take()
