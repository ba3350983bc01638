"""Host-aware dispatch: per-host rate and concurrency limits over the ledger's queue.

The scheduler keeps a bounded set of *active* hosts. Each has an aiolimiter bucket whose
rate is this rank's exact share of the host's global rate, a concurrency cap, a small buffer
of due items read from the ledger, and a heap of in-memory retries. A host that cannot send
now (rate, concurrency, backoff) is parked and never blocks the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

from fetchshard.config import FetchConfig
from fetchshard.ledger import Ledger, WorkItem
from fetchshard.partition import Partitioner

# Cursor that sorts before every (next_attempt_at, item_id) of the ledger.
_START: tuple[float, int] = (-1.0, -1)
_RUNNABLE, _SLEEPING, _BLOCKED = "runnable", "sleeping", "blocked"


@dataclass(eq=False)
class HostSlot:
    """The state of one active host on this rank."""

    host_id: int
    host: str
    rate: float  # requests per second, this rank's share
    limiter: AsyncLimiter
    concurrency: int
    in_flight: int = 0
    cursor: tuple[float, int] = _START
    buffer: deque[WorkItem] = field(default_factory=deque)
    # (due on the loop clock, tie-breaker, item) of transient failures waiting to retry
    retries: list[tuple[float, int, WorkItem]] = field(default_factory=list)
    where: str = _RUNNABLE


def host_limiter(rate: float, burst: float) -> AsyncLimiter:
    """A leaky bucket of ``rate`` per second holding at most ``burst`` requests."""
    burst = max(1.0, burst)
    return AsyncLimiter(burst, burst / rate)


class Scheduler:
    """Hands out (host, item) pairs that may be fetched now, round-robin over hosts."""

    def __init__(
        self,
        ledger: Ledger,
        config: FetchConfig,
        partitioner: Partitioner,
        rank: int,
        *,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._config = config
        self._partitioner = partitioner
        self._rank = rank
        self._clock = clock or asyncio.get_running_loop().time
        self._wall = wall
        self._runnable: deque[HostSlot] = deque()
        self._sleeping: list[tuple[float, int, HostSlot]] = []
        self._slots: dict[int, HostSlot] = {}
        self._host_seq = 0
        self._more_hosts = True
        self._max_active = max(64, 2 * config.max_in_flight)
        self._in_flight = 0
        self._changed = asyncio.Event()
        self._stopping = False
        self._tie = itertools.count()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def active_hosts(self) -> int:
        return len(self._slots)

    def stop(self) -> None:
        self._stopping = True
        self._changed.set()

    def pending_retries(self) -> list[WorkItem]:
        """Items waiting in memory for a retry (to persist them when the rank stops)."""
        return [item for slot in self._slots.values() for _, _, item in slot.retries]

    # -- hosts ------------------------------------------------------------------------------

    def _activate(self) -> None:
        if not self._more_hosts or len(self._slots) >= self._max_active:
            return
        rows = self._ledger.hosts_after(self._host_seq, self._max_active - len(self._slots))
        if not rows:
            self._more_hosts = False
            return
        cfg = self._config
        for seq, host_id, host in rows:
            self._host_seq = seq
            owned = self._partitioner.owned_buckets(host, self._rank)
            share = max(owned, 1) / self._partitioner.spread
            slot = HostSlot(
                host_id=host_id,
                host=host,
                rate=cfg.per_host_rate * share,
                limiter=host_limiter(cfg.per_host_rate * share, cfg.per_host_burst * share),
                concurrency=cfg.per_host_concurrency,
            )
            self._slots[host_id] = slot
            self._runnable.append(slot)

    def _sleep(self, slot: HostSlot, until: float) -> None:
        slot.where = _SLEEPING
        heapq.heappush(self._sleeping, (until, next(self._tie), slot))

    def _wake(self, now: float) -> None:
        while self._sleeping and self._sleeping[0][0] <= now:
            _, _, slot = heapq.heappop(self._sleeping)
            if slot.where == _SLEEPING:
                slot.where = _RUNNABLE
                self._runnable.append(slot)

    def _finish(self, slot: HostSlot) -> None:
        del self._slots[slot.host_id]
        slot.where = "finished"

    # -- items ------------------------------------------------------------------------------

    def _next_item(self, slot: HostSlot, now: float) -> WorkItem | float | None:
        """A due item, else when the host next has one (loop clock), else None."""
        if slot.retries and slot.retries[0][0] <= now:
            return heapq.heappop(slot.retries)[2]
        if not slot.buffer:
            wall = self._wall()
            batch = self._ledger.ready_items(slot.host_id, slot.cursor, wall, 2 * slot.concurrency)
            if batch:
                last = batch[-1]
                slot.cursor = (last.next_attempt_at, last.item_id)
                slot.buffer.extend(batch)
        if slot.buffer:
            return slot.buffer.popleft()
        wake: float | None = slot.retries[0][0] if slot.retries else None
        due = self._ledger.next_due(slot.host_id, slot.cursor)
        if due is not None:
            at = now + max(0.0, due - self._wall())
            wake = at if wake is None else min(wake, at)
        return wake

    def _try(self, slot: HostSlot, now: float) -> WorkItem | None:
        """Dispatch one item of ``slot`` if it may send now; otherwise park the slot."""
        if slot.in_flight >= slot.concurrency:
            slot.where = _BLOCKED
            return None
        if not slot.limiter.has_capacity():
            self._sleep(slot, now + 1.0 / slot.rate)
            return None
        got = self._next_item(slot, now)
        if isinstance(got, WorkItem):
            slot.in_flight += 1
            self._in_flight += 1
            self._runnable.append(slot)
            return got
        if got is not None:
            self._sleep(slot, got)
        elif slot.in_flight:
            slot.where = _BLOCKED  # its fetches may still come back as retries
        else:
            self._finish(slot)
        return None

    async def next(self) -> tuple[HostSlot, WorkItem] | None:
        """The next item to fetch, waiting as long as needed; None when the slice is done."""
        while not self._stopping:
            now = self._clock()
            self._wake(now)
            self._activate()
            if self._in_flight < self._config.max_in_flight:
                for _ in range(len(self._runnable)):
                    slot = self._runnable.popleft()
                    item = self._try(slot, now)
                    if item is not None:
                        # has_capacity() just said yes, so this returns without waiting.
                        await slot.limiter.acquire()
                        return slot, item
            if not self._slots and not self._more_hosts and self._in_flight == 0:
                return None
            self._changed.clear()
            timeout = None
            if self._sleeping and self._in_flight < self._config.max_in_flight:
                timeout = max(0.0, self._sleeping[0][0] - self._clock())
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return None

    def done(self, slot: HostSlot, retry: WorkItem | None = None, delay: float = 0.0) -> None:
        """A fetch of ``slot`` ended; ``retry`` goes back in after ``delay`` seconds."""
        slot.in_flight -= 1
        self._in_flight -= 1
        if retry is not None:
            heapq.heappush(slot.retries, (self._clock() + delay, next(self._tie), retry))
            if slot.where == _SLEEPING:
                # the slot may now be due earlier than it was parked for
                slot.where = _RUNNABLE
                self._runnable.append(slot)
        if slot.where == _BLOCKED:
            slot.where = _RUNNABLE
            self._runnable.append(slot)
        self._changed.set()
