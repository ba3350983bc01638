"""One active host on this rank: its bucket, health, buffers and robots.txt."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from fetchshard.errors import ErrorKind
from fetchshard.hosts.bucket import LeakyBucket
from fetchshard.hosts.health import HostHealth
from fetchshard.http.robots import RobotsCache
from fetchshard.ledger import WorkItem

# Where a slot is: ready to dispatch, asleep until a time, blocked until a fetch ends, done.
RUNNABLE, SLEEPING, BLOCKED, FINISHED = "runnable", "sleeping", "blocked", "finished"
# Cursor that sorts before every (next_attempt_at, item_id) of the ledger.
START: tuple[float, int] = (-1.0, -1)


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
    health: HostHealth
    limiter: LeakyBucket  # at health.rate
    concurrency: int
    in_flight: int = 0
    cursor: tuple[float, int] = START
    buffer: deque[WorkItem] = field(default_factory=deque)
    # (due on the monotonic clock, tie-breaker, item) of transient failures waiting to retry
    retries: list[tuple[float, int, WorkItem]] = field(default_factory=list)
    where: str = RUNNABLE
    robots: RobotsCache = field(default_factory=RobotsCache)  # read when fetch.robots_txt

    @property
    def rate(self) -> float:
        """This rank's current rate for the host (requests per second)."""
        return self.health.rate
