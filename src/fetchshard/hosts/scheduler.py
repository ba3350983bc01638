"""Host-aware dispatch: per-host rate, concurrency and health over the ledger's queue.

The scheduler keeps a bounded set of *active* hosts. Each has a leaky bucket whose rate is
this rank's exact share of the host's global rate (halved on 429/503, restored additively on
success), a concurrency cap, a small buffer of due items read from the ledger, and a heap of
in-memory retries. A host that cannot send now (rate, concurrency, backoff, cool-down) is
parked and never blocks the others; a host that keeps failing to connect is given up and its
remaining items are handed out as failures without a request.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections import deque
from fractions import Fraction
from typing import Protocol

from fetchshard.clock import Clock
from fetchshard.config import FetchConfig, HostOverride
from fetchshard.errors import ErrorKind
from fetchshard.hosts.bucket import LeakyBucket
from fetchshard.hosts.health import HostEvents, HostHealth
from fetchshard.hosts.slot import (
    BLOCKED,
    FINISHED,
    RUNNABLE,
    SLEEPING,
    Dispatch,
    HostSlot,
)
from fetchshard.ledger import Ledger, WorkItem
from fetchshard.urls import find_override, host_matches

log = logging.getLogger(__name__)


class RateShares(Protocol):
    """This rank's share of each host's rate: planning's ``RankShares`` (the scheduler is
    handed it, and depends on nothing of planning)."""

    def of(self, host_id: int, host: str) -> Fraction: ...


class Scheduler:
    """Hands out :class:`Dispatch` es that may run now, round-robin over hosts.

    Longer than our usual class, on purpose: it is one state machine (runnable, sleeping,
    blocked, finished) whose sections — hosts, items, dispatch, results — all move slots
    between the same deque and heap; host health and the buckets are decided elsewhere.
    """

    def __init__(
        self,
        ledger: Ledger,
        config: FetchConfig,
        shares: RateShares,
        rank: int,
        *,
        clock: Clock | None = None,
        after: Scheduler | None = None,
    ) -> None:
        # A scheduler that follows another (the final pass) keeps what it learnt about
        # hosts: given-up hosts stay given up, slowed hosts stay slow, and no host gets a
        # fresh burst right after the previous pass sent to it.
        self.dead_hosts: dict[int, tuple[ErrorKind, str]] = dict(after.dead_hosts) if after else {}
        self.slowed: dict[int, float] = dict(after.slowed) if after else {}
        self._no_burst = after is not None
        # The queue is read from its start, where items committed earlier must not be seen.
        ledger.fold_commits()
        self._queue = ledger.queue
        self._config = config
        self._shares = shares
        self._rank = rank
        # By default the loop's own clock, which the timers of next() run on.
        clock = clock or Clock(monotonic=asyncio.get_running_loop().time, wall=time.time)
        self._clock = clock.monotonic
        self._wall = clock.wall
        self._runnable: deque[HostSlot] = deque()
        self._sleeping: list[tuple[float, int, HostSlot]] = []
        self._slots: dict[int, HostSlot] = {}
        self._host_seq = 0
        self._more_hosts = True
        self._max_active = max(64, 2 * config.max_in_flight)
        self._in_flight = 0
        self._waiter: asyncio.Future[None] | None = None
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
        self._notify()

    def _notify(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def waiting(self, limit: int = 5) -> str | None:
        """What the rank waits for when nothing is in flight: hosts parked (and why) or in
        backoff, with their items in memory and the next try; None when something runs."""
        if self._in_flight:
            return None
        now = self._clock()
        waits: list[tuple[float, str]] = []
        for slot in self._slots.values():
            health = slot.health
            if health.dead is not None:
                continue
            items = len(slot.retries) + len(slot.buffer)
            if health.parked_until > now:
                at, why = health.parked_until, f"parked ({health.parked_why})"
            elif slot.retries:
                at, why = slot.retries[0][0], "in backoff"
            else:
                continue
            held = f", {items} items waiting" if items else ""
            waits.append((at, f"{slot.host} {why}{held}, next try in {max(0.0, at - now):.0f}s"))
        if not waits:
            later = [at for at, _, slot in self._sleeping if slot.where == SLEEPING]
            if not later:
                return None
            return f"items due later (the next in {max(0.0, min(later) - now):.0f}s)"
        waits.sort()
        shown = "; ".join(text for _, text in waits[:limit])
        more = f"; and {len(waits) - limit} more hosts" if len(waits) > limit else ""
        return shown + more

    def pending_retries(self) -> list[WorkItem]:
        """Items waiting in memory for a retry (to persist them when the rank stops)."""
        return [item for slot in self._slots.values() for _, _, item in slot.retries]

    # -- hosts ------------------------------------------------------------------------------

    def _activate(self) -> None:
        if not self._more_hosts or len(self._slots) >= self._max_active:
            return
        rows = self._queue.hosts_after(self._host_seq, self._max_active - len(self._slots))
        if not rows:
            self._more_hosts = False
            return
        for seq, host_id, host in rows:
            self._host_seq = seq
            slot = self._new_slot(host_id, host)
            self._slots[host_id] = slot
            self._runnable.append(slot)

    def _new_slot(self, host_id: int, host: str) -> HostSlot:
        cfg = self._config
        override = find_override(host, cfg.hosts) or HostOverride()
        share = float(self._shares.of(host_id, host))
        if not share:
            raise RuntimeError(
                f"{host} has no share on rank {self._rank}: a ledger of another plan"
            )
        rate = share * (override.rate or cfg.per_host_rate)
        burst = share * (override.burst or cfg.per_host_burst)
        health = HostHealth(
            host=host, base_rate=rate, min_rate=min(rate, share * cfg.per_host_min_rate)
        )
        slot = HostSlot(
            host_id=host_id,
            host=host,
            health=health,
            limiter=LeakyBucket(rate, burst, self._clock),
            concurrency=override.concurrency or cfg.per_host_concurrency,
        )
        if host_matches(host, cfg.block_hosts):
            health.dead, health.dead_reason = ErrorKind.BLOCKED, f"{host} is in fetch.block_hosts"
        elif host_id in self.dead_hosts:
            health.dead, health.dead_reason = self.dead_hosts[host_id]
        if host_id in self.slowed:
            health.rate = self.slowed.pop(host_id)
            slot.limiter.set_rate(health.rate)
        if self._no_burst:
            slot.limiter.fill()
        return slot

    def _sleep(self, slot: HostSlot, until: float) -> None:
        slot.where = SLEEPING
        heapq.heappush(self._sleeping, (until, next(self._tie), slot))

    def _wake(self, now: float) -> None:
        while self._sleeping and self._sleeping[0][0] <= now:
            _, _, slot = heapq.heappop(self._sleeping)
            if slot.where == SLEEPING:
                slot.where = RUNNABLE
                self._runnable.append(slot)

    def _finish(self, slot: HostSlot) -> None:
        del self._slots[slot.host_id]
        slot.where = FINISHED
        if slot.health.rate < slot.health.base_rate:
            self.slowed[slot.host_id] = slot.health.rate

    # -- items ------------------------------------------------------------------------------

    def _fill(self, slot: HostSlot, until: float, limit: int) -> None:
        batch = self._queue.ready_items(slot.host_id, slot.cursor, until, limit)
        if batch:
            last = batch[-1]
            slot.cursor = (last.next_attempt_at, last.item_id)
            slot.buffer.extend(batch)

    def _next_item(self, slot: HostSlot, now: float) -> WorkItem | float | None:
        """A due item, else when the host next has one (loop clock), else None."""
        if slot.retries and slot.retries[0][0] <= now:
            return heapq.heappop(slot.retries)[2]
        if not slot.buffer:
            self._fill(slot, self._wall(), 2 * slot.concurrency)
        if slot.buffer:
            return slot.buffer.popleft()
        wake: float | None = slot.retries[0][0] if slot.retries else None
        due = self._queue.next_due(slot.host_id, slot.cursor)
        if due is not None:
            at = now + max(0.0, due - self._wall())
            wake = at if wake is None else min(wake, at)
        return wake

    def _abandon(self, slot: HostSlot) -> Dispatch | None:
        """The next item of a dead host, failed without a request."""
        assert slot.health.dead is not None
        if slot.retries:
            item = heapq.heappop(slot.retries)[2]
        else:
            if not slot.buffer:
                self._fill(slot, float("inf"), 1000)
            if not slot.buffer:
                if slot.in_flight:
                    slot.where = BLOCKED  # its fetches come back here when they end
                else:
                    self._finish(slot)
                return None
            item = slot.buffer.popleft()
        self._runnable.appendleft(slot)
        return Dispatch(slot, item, slot.health.dead, slot.health.dead_reason)

    def _try(self, slot: HostSlot, now: float) -> Dispatch | None:
        """Dispatch one item of ``slot`` if it may go now; otherwise park the slot."""
        if slot.health.dead is not None:
            return self._abandon(slot)
        if slot.health.parked_until > now:
            self._sleep(slot, slot.health.parked_until)
            return None
        if slot.in_flight >= slot.concurrency:
            slot.where = BLOCKED
            return None
        if not slot.limiter.has_capacity():
            self._sleep(slot, now + 1.0 / slot.rate)
            return None
        got = self._next_item(slot, now)
        if isinstance(got, WorkItem):
            slot.in_flight += 1
            self._in_flight += 1
            self._runnable.append(slot)
            return Dispatch(slot, got)
        if got is not None:
            self._sleep(slot, got)
        elif slot.in_flight:
            slot.where = BLOCKED  # its fetches may still come back as retries
        else:
            self._finish(slot)
        return None

    async def next(self) -> Dispatch | None:
        """The next dispatch, waiting as long as needed; None when the slice is done."""
        while not self._stopping:
            now = self._clock()
            self._wake(now)
            self._activate()
            room = self._in_flight < self._config.max_in_flight
            for _ in range(len(self._runnable)):
                slot = self._runnable.popleft()
                if not room and slot.health.dead is None:
                    self._runnable.append(slot)
                    continue
                got = self._try(slot, now)
                if got is not None:
                    if got.fail is None:
                        slot.limiter.take()  # has_capacity() just said yes
                    return got
            if not self._slots and not self._more_hosts and self._in_flight == 0:
                return None
            # A bare future, not wait_for(Event.wait()): this runs once per fetch when the
            # in-flight window is full, and wait_for costs a task each time.
            loop = asyncio.get_running_loop()
            self._waiter = loop.create_future()
            timer = None
            if self._sleeping and room:
                delay = max(0.0, self._sleeping[0][0] - self._clock())
                timer = loop.call_later(delay, self._notify)
            try:
                await self._waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
        return None

    def done(
        self,
        slot: HostSlot,
        retry: WorkItem | None = None,
        delay: float = 0.0,
        *,
        kind: ErrorKind | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> HostEvents:
        """A fetch of ``slot`` ended with ``kind``; ``retry`` goes back in after ``delay``."""
        slot.in_flight -= 1
        self._in_flight -= 1
        events = self._account(slot, kind, status, retry_after)
        if retry is not None:
            if slot.health.dead is not None:
                slot.buffer.append(retry)
            else:
                heapq.heappush(slot.retries, (self._clock() + delay, next(self._tie), retry))
        if slot.where in (BLOCKED, SLEEPING) and (
            slot.where == BLOCKED or retry is not None or slot.health.dead is not None
        ):
            slot.where = RUNNABLE
            self._runnable.append(slot)
        self._notify()
        return events

    def _account(
        self,
        slot: HostSlot,
        kind: ErrorKind | None,
        status: int | None,
        retry_after: float | None,
    ) -> HostEvents:
        """Apply host health's decision on one result: the bucket's rate, the logs."""
        health, cfg = slot.health, self._config
        events = health.observe(kind, status, retry_after, self._clock(), cfg)
        if events.rate_decreased or events.rate_increased:
            slot.limiter.set_rate(health.rate)
            log.debug("%s: %s, rate now %.3g/s", slot.host, status or kind or "ok", health.rate)
        if events.died:
            assert health.dead is not None
            self.dead_hosts[slot.host_id] = (health.dead, health.dead_reason)
            log.warning("%s", health.dead_reason)
        elif events.parked and (kind is None or kind.host_failure):
            log.info(
                "%s: %d %s failures in a row, cool-down %d of %d (%gs)",
                slot.host,
                cfg.host_max_failures,
                kind.value if kind is not None else "",
                health.cooldowns,
                cfg.host_max_cooldowns,
                cfg.host_cooldown,
            )
        elif events.parked:
            log.warning(
                "%s: only 429/503 for %gs, no success: cool-down %d of %d (%gs)",
                slot.host,
                cfg.host_throttle_window,
                health.cooldowns,
                cfg.host_max_cooldowns,
                cfg.host_cooldown,
            )
        return events
