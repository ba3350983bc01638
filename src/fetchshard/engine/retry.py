"""What to do after an attempt, and how long one URL can take: the retry policy, pure.

:func:`decide` maps (error kind, attempt number, Retry-After, pass) to write / retry after a
delay / defer to the final pass / give up. :func:`url_time_bound` is the longest those rules
let one URL hold a rank; both read the same settings, so they change together.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from fetchshard.clock import DEADLINE_TICK
from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind


class Action(enum.Enum):
    WRITE = "write"  # a success or a permanent failure: its row is final
    RETRY = "retry"  # a transient failure with attempts left: again after ``delay``
    DEFER = "defer"  # transient, main-pass attempts used up: again in the final pass
    GIVE_UP = "give_up"  # transient, every attempt used: its row is a final failure


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay: float = 0.0  # seconds, for RETRY

    @property
    def final_row(self) -> bool:
        """Whether the attempt's result is the item's terminal row."""
        return self.action in (Action.WRITE, Action.GIVE_UP)


WRITE = Decision(Action.WRITE)
DEFER = Decision(Action.DEFER)
GIVE_UP = Decision(Action.GIVE_UP)

Jitter = Callable[[float, float], float]  # uniform(low, high)


def backoff(attempt: int, base: float, cap: float, jitter: Jitter = random.uniform) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return jitter(0.0, min(cap, base * 2.0 ** (attempt - 1)))


def attempt_limit(config: FetchConfig, *, final: bool) -> int:
    """The attempts an item may have had when it is tried in the main or the final pass."""
    return config.max_attempts + (config.final_pass_attempts if final else 0)


def decide(
    kind: ErrorKind | None,
    attempt: int,
    retry_after: float | None,
    *,
    final: bool,
    config: FetchConfig,
    jitter: Jitter = random.uniform,
) -> Decision:
    """What follows attempt number ``attempt`` (1 for the first) that ended with ``kind``
    (None: success), in the main pass or the ``final`` one."""
    if kind is None or not kind.transient:
        return WRITE
    if attempt < attempt_limit(config, final=final):
        delay = backoff(attempt, config.retry_base_delay, config.retry_max_delay, jitter)
        if retry_after is not None:
            delay = max(delay, min(retry_after, config.retry_after_max))
        return Decision(Action.RETRY, delay)
    if not final and config.final_pass_attempts > 0:
        return DEFER
    return GIVE_UP


def url_time_bound(config: FetchConfig) -> float:
    """The longest one URL can keep a rank busy once its host is being fetched.

    Main pass: ``max_attempts`` requests of at most ``total_timeout`` each, separated by waits
    of at most max(retry_max_delay, retry_after_max) (:func:`decide`'s longest delay); final
    pass: its delay, then ``final_pass_attempts`` longer requests, separated likewise; plus
    the host's cool-downs before it is given up (hosts/health.py). Time queued behind other
    URLs of the same host under its rate limit is not included: that is the host's items /
    its rate. Each request's deadline is checked on a tick: it may end DEADLINE_TICK late.
    """
    wait = max(config.retry_max_delay, config.retry_after_max)
    request = config.total_timeout + DEADLINE_TICK
    bound = config.max_attempts * request + (config.max_attempts - 1) * wait
    if config.final_pass_attempts:
        longer = config.total_timeout * config.final_pass_timeout_factor + DEADLINE_TICK
        bound += config.final_pass_delay + config.final_pass_attempts * longer
        bound += (config.final_pass_attempts - 1) * wait
    return bound + config.host_max_cooldowns * config.host_cooldown


def throttled_host_bound(config: FetchConfig, spread: int) -> float:
    """The longest a host that answers only 429/503 keeps a rank busy before it is given up
    (hosts/health.py), whatever its number of items.

    Its health is judged at each answer: a cool-down once no success came for
    ``host_throttle_window``, given up after ``host_max_cooldowns`` of them. Two answers are
    at most ``gap`` apart: the slowest the rank may send to it (the rate floor, its share at
    least one bucket of ``spread``), a Retry-After or a backoff, plus the request itself.
    """
    slowest = spread / config.per_host_min_rate  # 1 / (per_host_min_rate * 1 / spread)
    wait = max(slowest, config.retry_after_max, config.retry_max_delay)
    gap = wait + config.total_timeout + DEADLINE_TICK
    windows = config.host_max_cooldowns + 1
    cooldowns = config.host_max_cooldowns * config.host_cooldown
    return windows * (config.host_throttle_window + gap) + cooldowns
