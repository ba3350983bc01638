"""What one result says about its host: adaptive rate (AIMD), cool-downs, giving up.

:meth:`HostHealth.observe` is a pure decision on the host's state (no I/O, the time passed
in), so every rule is unit-tested without a network; the scheduler applies what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind

# A success gives back this fraction of the configured rate (additive increase).
RECOVERY_STEP = 1 / 16


@dataclass
class HostEvents:
    """What a result did to its host, for stats and logs."""

    rate_decreased: bool = False
    rate_increased: bool = False
    parked: bool = False
    died: bool = False
    parked_s: float = 0.0  # how much longer the host is now held back


@dataclass(eq=False, slots=True)
class HostHealth:
    """One host's standing on this rank. Rates are this rank's share, requests per second."""

    host: str
    base_rate: float
    min_rate: float
    rate: float = 0.0
    parked_until: float = 0.0  # no request before this (monotonic clock)
    failures: int = 0  # connect/DNS failures in a row
    cooldowns: int = 0
    last_decrease: float = float("-inf")
    throttled_since: float | None = None  # first 429/503 since the last success
    parked_why: str = ""  # what set parked_until last, for a rank that says why it waits
    dead: ErrorKind | None = None  # BLOCKED or HOST_UNREACHABLE: no more requests
    dead_reason: str = ""

    def __post_init__(self) -> None:
        if not self.rate:
            self.rate = self.base_rate

    def observe(
        self,
        kind: ErrorKind | None,
        status: int | None,
        retry_after: float | None,
        now: float,
        config: FetchConfig,
    ) -> HostEvents:
        """Update the host from one result (``kind`` None: success) seen at ``now``."""
        events = HostEvents()
        held = max(self.parked_until, now)
        self._observe(kind, status, retry_after, now, config, events)
        events.parked_s = max(0.0, self.parked_until - held)
        return events

    def _observe(
        self,
        kind: ErrorKind | None,
        status: int | None,
        retry_after: float | None,
        now: float,
        config: FetchConfig,
        events: HostEvents,
    ) -> None:
        throttled = kind is ErrorKind.HTTP_429 or status == 503
        if throttled:
            # At most one halving per interval of the current rate: a burst of 429s for
            # requests already in flight is one signal, not many.
            if self.rate > self.min_rate and now - self.last_decrease >= 1.0 / self.rate:
                self.rate = max(self.min_rate, self.rate / 2)
                self.last_decrease = now
                events.rate_decreased = True
        elif kind is None:
            self.throttled_since = None
            if self.rate < self.base_rate:
                self.rate = min(self.base_rate, self.rate + self.base_rate * RECOVERY_STEP)
                events.rate_increased = True
        if retry_after is not None:
            retry_after = min(retry_after, config.retry_after_max)
            if now + retry_after > self.parked_until:
                self.parked_until, self.parked_why = now + retry_after, "Retry-After"
        if throttled:
            self._throttled(kind, status, now, config, events)
            return
        if kind is None or not kind.host_failure:
            self.failures = 0  # any answer at all shows the host is reachable
            return
        if self.parked_until > now:
            return  # requests already in flight when the host was parked
        self.failures += 1
        if self.failures >= config.host_max_failures and self.dead is None:
            self.failures = 0
            self._cool_down(
                now,
                config,
                events,
                ErrorKind.HOST_UNREACHABLE,
                f"{self.host} unreachable after {config.host_max_cooldowns} cool-downs "
                f"(last: {kind.value})",
                f"cool-down after {kind.value} failures",
            )

    def _cool_down(
        self,
        now: float,
        config: FetchConfig,
        events: HostEvents,
        dead: ErrorKind,
        dead_reason: str,
        why: str,
    ) -> None:
        """One more cool-down; past ``host_max_cooldowns`` the host is given up as ``dead``."""
        self.cooldowns += 1
        if self.cooldowns > config.host_max_cooldowns:
            self.dead, self.dead_reason = dead, dead_reason
            events.died = True
        else:
            self._park(now + config.host_cooldown, why)
            events.parked = True

    def _park(self, until: float, why: str) -> None:
        if until > self.parked_until:
            self.parked_until, self.parked_why = until, why

    def _throttled(
        self,
        kind: ErrorKind | None,
        status: int | None,
        now: float,
        config: FetchConfig,
        events: HostEvents,
    ) -> None:
        """Only 429/503 for ``host_throttle_window``: a cool-down, and in the end give up."""
        self.failures = 0  # the host answers: not a connect failure
        if self.throttled_since is None:
            self.throttled_since = now
            return
        if self.dead is not None or now - self.throttled_since < config.host_throttle_window:
            return
        self.throttled_since = now  # the next window starts here
        self._cool_down(
            now,
            config,
            events,
            ErrorKind.RATE_LIMITED,
            f"{self.host} answered only 429/503 through {config.host_max_cooldowns} "
            f"cool-downs of {config.host_throttle_window:g}s without a success "
            f"(last: {status or (kind.value if kind else '')})",
            "cool-down: only 429/503",
        )
