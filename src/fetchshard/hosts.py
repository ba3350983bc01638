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
import fnmatch
import heapq
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.robotparser import RobotFileParser

from aiolimiter import AsyncLimiter

from fetchshard.config import FetchConfig, HostOverride
from fetchshard.errors import ErrorKind
from fetchshard.ledger import Ledger, WorkItem
from fetchshard.partition import Partitioner

log = logging.getLogger(__name__)

# Cursor that sorts before every (next_attempt_at, item_id) of the ledger.
_START: tuple[float, int] = (-1.0, -1)
_RUNNABLE, _SLEEPING, _BLOCKED, _FINISHED = "runnable", "sleeping", "blocked", "finished"
# A success gives back this fraction of the configured rate (additive increase).
RECOVERY_STEP = 1 / 16


class AdaptiveLimiter(AsyncLimiter):
    """aiolimiter's leaky bucket whose rate can change while it runs."""

    def set_rate(self, rate: float) -> None:
        self._leak()  # settle the level at the old rate first
        self.time_period = self.max_rate / rate
        self._rate_per_sec = rate

    def take(self) -> None:
        """Acquire without awaiting, right after :meth:`has_capacity` said yes."""
        self._level += 1

    def fill(self) -> None:
        """Start with the bucket full: no burst (for a host that was just being fetched)."""
        self._leak()
        self._level = self.max_rate


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One item to fetch now, or (``fail`` set) to record as failed without a request."""

    slot: HostSlot
    item: WorkItem
    fail: ErrorKind | None = None
    message: str | None = None


@dataclass(eq=False)
class HostSlot:
    """The state of one active host on this rank."""

    host_id: int
    host: str
    base_rate: float  # requests per second: this rank's share of the host's rate
    min_rate: float
    limiter: AdaptiveLimiter
    concurrency: int
    headers: dict[str, str] = field(default_factory=dict)
    rate: float = 0.0
    in_flight: int = 0
    cursor: tuple[float, int] = _START
    buffer: deque[WorkItem] = field(default_factory=deque)
    # (due on the loop clock, tie-breaker, item) of transient failures waiting to retry
    retries: list[tuple[float, int, WorkItem]] = field(default_factory=list)
    where: str = _RUNNABLE
    parked_until: float = 0.0
    failures: int = 0  # connect/DNS failures in a row
    cooldowns: int = 0
    last_decrease: float = float("-inf")
    dead: ErrorKind | None = None  # BLOCKED or HOST_UNREACHABLE: no more requests
    dead_reason: str = ""
    robots: RobotFileParser | None = None  # parsed robots.txt, when checked
    robots_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.rate = self.base_rate


def host_limiter(rate: float, burst: float) -> AdaptiveLimiter:
    """A leaky bucket of ``rate`` per second holding at most ``burst`` requests."""
    burst = max(1.0, burst)
    return AdaptiveLimiter(burst, burst / rate)


def host_matches(host: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """``example.org`` matches itself (any port); ``*.example.org`` its subdomains."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return any(fnmatch.fnmatchcase(host, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


def find_override(host: str, overrides: dict[str, HostOverride]) -> HostOverride | None:
    for pattern, override in overrides.items():
        if host_matches(host, (pattern.lower(),)):
            return override
    return None


@dataclass
class HostEvents:
    """What a result did to its host, for stats and logs."""

    rate_decreased: bool = False
    rate_increased: bool = False
    parked: bool = False
    died: bool = False


class Scheduler:
    """Hands out :class:`Dispatch` es that may run now, round-robin over hosts."""

    def __init__(
        self,
        ledger: Ledger,
        config: FetchConfig,
        partitioner: Partitioner,
        rank: int,
        *,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], float] = time.time,
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
        for seq, host_id, host in rows:
            self._host_seq = seq
            slot = self._new_slot(host_id, host)
            self._slots[host_id] = slot
            self._runnable.append(slot)

    def _new_slot(self, host_id: int, host: str) -> HostSlot:
        cfg = self._config
        override = find_override(host, cfg.hosts) or HostOverride()
        owned = self._partitioner.owned_buckets(host, self._rank)
        share = max(owned, 1) / self._partitioner.spread
        rate = (override.rate or cfg.per_host_rate) * share
        burst = (override.burst or cfg.per_host_burst) * share
        slot = HostSlot(
            host_id=host_id,
            host=host,
            base_rate=rate,
            min_rate=min(rate, cfg.per_host_min_rate * share),
            limiter=host_limiter(rate, burst),
            concurrency=override.concurrency or cfg.per_host_concurrency,
            headers=dict(override.headers),
        )
        if host_matches(host, cfg.block_hosts):
            slot.dead, slot.dead_reason = ErrorKind.BLOCKED, f"{host} is in fetch.block_hosts"
        elif host_id in self.dead_hosts:
            slot.dead, slot.dead_reason = self.dead_hosts[host_id]
        if host_id in self.slowed:
            slot.rate = self.slowed.pop(host_id)
            slot.limiter.set_rate(slot.rate)
        if self._no_burst:
            slot.limiter.fill()
        return slot

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
        slot.where = _FINISHED
        if slot.rate < slot.base_rate:
            self.slowed[slot.host_id] = slot.rate

    # -- items ------------------------------------------------------------------------------

    def _fill(self, slot: HostSlot, until: float, limit: int) -> None:
        batch = self._ledger.ready_items(slot.host_id, slot.cursor, until, limit)
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
        due = self._ledger.next_due(slot.host_id, slot.cursor)
        if due is not None:
            at = now + max(0.0, due - self._wall())
            wake = at if wake is None else min(wake, at)
        return wake

    def _abandon(self, slot: HostSlot) -> Dispatch | None:
        """The next item of a dead host, failed without a request."""
        assert slot.dead is not None
        if slot.retries:
            item = heapq.heappop(slot.retries)[2]
        else:
            if not slot.buffer:
                self._fill(slot, float("inf"), 1000)
            if not slot.buffer:
                if slot.in_flight:
                    slot.where = _BLOCKED  # its fetches come back here when they end
                else:
                    self._finish(slot)
                return None
            item = slot.buffer.popleft()
        self._runnable.appendleft(slot)
        return Dispatch(slot, item, slot.dead, slot.dead_reason)

    def _try(self, slot: HostSlot, now: float) -> Dispatch | None:
        """Dispatch one item of ``slot`` if it may go now; otherwise park the slot."""
        if slot.dead is not None:
            return self._abandon(slot)
        if slot.parked_until > now:
            self._sleep(slot, slot.parked_until)
            return None
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
            return Dispatch(slot, got)
        if got is not None:
            self._sleep(slot, got)
        elif slot.in_flight:
            slot.where = _BLOCKED  # its fetches may still come back as retries
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
                if not room and slot.dead is None:
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
            if slot.dead is not None:
                slot.buffer.append(retry)
            else:
                heapq.heappush(slot.retries, (self._clock() + delay, next(self._tie), retry))
        if slot.where in (_BLOCKED, _SLEEPING) and (
            slot.where == _BLOCKED or retry is not None or slot.dead is not None
        ):
            slot.where = _RUNNABLE
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
        """Host health and adaptive rate (AIMD) from one result."""
        events = HostEvents()
        now = self._clock()
        cfg = self._config
        if kind is ErrorKind.HTTP_429 or status == 503:
            # At most one halving per interval of the current rate: a burst of 429s for
            # requests already in flight is one signal, not many.
            if slot.rate > slot.min_rate and now - slot.last_decrease >= 1.0 / slot.rate:
                slot.rate = max(slot.min_rate, slot.rate / 2)
                slot.limiter.set_rate(slot.rate)
                slot.last_decrease = now
                events.rate_decreased = True
                log.debug("%s: %s, rate now %.3g/s", slot.host, status or kind, slot.rate)
        elif kind is None and slot.rate < slot.base_rate:
            slot.rate = min(slot.base_rate, slot.rate + slot.base_rate * RECOVERY_STEP)
            slot.limiter.set_rate(slot.rate)
            events.rate_increased = True
            log.debug("%s: success, rate back to %.3g/s", slot.host, slot.rate)
        if retry_after is not None:
            retry_after = min(retry_after, cfg.retry_after_max)
            slot.parked_until = max(slot.parked_until, now + retry_after)
        if kind is not None and kind.host_failure:
            if slot.parked_until > now:
                return events  # requests already in flight when the host was parked
            slot.failures += 1
            if slot.failures >= cfg.host_max_failures and slot.dead is None:
                slot.failures = 0
                slot.cooldowns += 1
                if slot.cooldowns > cfg.host_max_cooldowns:
                    slot.dead = ErrorKind.HOST_UNREACHABLE
                    slot.dead_reason = (
                        f"{slot.host} unreachable after {cfg.host_max_cooldowns} cool-downs "
                        f"(last: {kind.value})"
                    )
                    events.died = True
                    self.dead_hosts[slot.host_id] = (slot.dead, slot.dead_reason)
                    log.warning("%s", slot.dead_reason)
                else:
                    slot.parked_until = max(slot.parked_until, now + cfg.host_cooldown)
                    events.parked = True
                    log.info(
                        "%s: %d %s failures in a row, cool-down %d of %d (%gs)",
                        slot.host,
                        cfg.host_max_failures,
                        kind.value,
                        slot.cooldowns,
                        cfg.host_max_cooldowns,
                        cfg.host_cooldown,
                    )
        else:
            slot.failures = 0  # any answer at all shows the host is reachable
        return events
