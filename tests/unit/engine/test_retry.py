"""The retry decision and the tail bound, without a network."""

from __future__ import annotations

import itertools

import pytest

from fetchshard.clock import DEADLINE_TICK
from fetchshard.config import FetchConfig
from fetchshard.engine.retry import Action, backoff, decide, throttled_host_bound, url_time_bound
from fetchshard.errors import ErrorKind

# Written out here, not read from ErrorKind: the README's table of what is retried.
RETRIED = {
    "dns",
    "connect",
    "timeout",
    "read_timeout",
    "too_slow",
    "http_429",
    "http_5xx",
    "expired_redirect",
    "bad_content",
    "checksum_mismatch",
    "too_small",
    "interrupted",
    "rate_limited",
}
CONFIG = FetchConfig(
    max_attempts=3,
    final_pass_attempts=2,
    retry_base_delay=1.0,
    retry_max_delay=60.0,
    retry_after_max=300.0,
)


def upper(low: float, high: float) -> float:
    return high  # the longest wait full jitter can give


def expected(kind: ErrorKind, attempt: int, final: bool, config: FetchConfig) -> Action:
    if kind.value not in RETRIED:
        return Action.WRITE
    limit = config.max_attempts + (config.final_pass_attempts if final else 0)
    if attempt < limit:
        return Action.RETRY
    if not final and config.final_pass_attempts > 0:
        return Action.DEFER
    return Action.GIVE_UP


CASES = [
    (kind, final, attempt)
    for kind, final in itertools.product(ErrorKind, (False, True))
    for attempt in range(1, CONFIG.max_attempts + (CONFIG.final_pass_attempts if final else 0) + 1)
]


@pytest.mark.parametrize(("kind", "final", "attempt"), CASES)
def test_every_kind_in_both_passes_at_every_attempt(
    kind: ErrorKind, final: bool, attempt: int
) -> None:
    got = decide(kind, attempt, None, final=final, config=CONFIG, jitter=upper)
    assert got.action is expected(kind, attempt, final, CONFIG)
    assert got.final_row == (got.action in (Action.WRITE, Action.GIVE_UP))
    if got.action is Action.RETRY:
        assert got.delay == min(60.0, 2.0 ** (attempt - 1))
    else:
        assert got.delay == 0.0


@pytest.mark.parametrize("final", [False, True])
def test_a_success_is_written_whatever_the_attempt(final: bool) -> None:
    for attempt in range(1, 8):
        assert decide(None, attempt, None, final=final, config=CONFIG).action is Action.WRITE


def test_without_a_final_pass_the_last_main_attempt_gives_up() -> None:
    config = FetchConfig(max_attempts=2, final_pass_attempts=0)
    assert decide(ErrorKind.CONNECT, 1, None, final=False, config=config).action is Action.RETRY
    assert decide(ErrorKind.CONNECT, 2, None, final=False, config=config).action is Action.GIVE_UP


def test_retry_after_lengthens_the_wait_up_to_its_cap() -> None:
    low = decide(ErrorKind.HTTP_429, 1, 7.5, final=False, config=CONFIG, jitter=upper)
    assert low.delay == 7.5  # longer than the backoff's 1 s
    short = decide(ErrorKind.HTTP_429, 3 - 1, 0.5, final=False, config=CONFIG, jitter=upper)
    assert short.delay == 2.0  # the backoff wins over a shorter Retry-After
    huge = decide(ErrorKind.HTTP_5XX, 1, 10_000.0, final=False, config=CONFIG, jitter=upper)
    assert huge.delay == CONFIG.retry_after_max


def test_backoff_is_full_jitter_under_the_cap() -> None:
    seen: list[tuple[float, float]] = []

    def record(low: float, high: float) -> float:
        seen.append((low, high))
        return (low + high) / 2

    assert backoff(1, 0.5, 10.0, record) == 0.25
    assert backoff(4, 0.5, 10.0, record) == 2.0
    assert backoff(10, 0.5, 10.0, record) == 5.0
    assert seen == [(0.0, 0.5), (0.0, 4.0), (0.0, 10.0)]


def test_the_defaults_bound_one_url_at_1296_seconds() -> None:
    assert url_time_bound(FetchConfig()) == pytest.approx(1296.0)


@pytest.mark.parametrize(
    "config",
    [
        FetchConfig(),
        CONFIG,
        FetchConfig(max_attempts=1, final_pass_attempts=0, host_max_cooldowns=0),
        FetchConfig(max_attempts=5, final_pass_attempts=3, retry_after_max=30.0),
    ],
)
def test_the_bound_covers_the_longest_path_the_decision_allows(config: FetchConfig) -> None:
    """Walk an item through decide() with every attempt timing out at its deadline and every
    wait as long as allowed: never more than url_time_bound, and exactly it when a Retry-After
    may be the longest wait (then the bound is tight)."""
    spent, attempt, final = 0.0, 0, False
    while True:
        attempt += 1
        factor = config.final_pass_timeout_factor if final else 1.0
        spent += config.total_timeout * factor + DEADLINE_TICK
        got = decide(ErrorKind.TIMEOUT, attempt, 1e9, final=final, config=config, jitter=upper)
        if got.action is Action.RETRY:
            spent += got.delay
        elif got.action is Action.DEFER:
            spent += config.final_pass_delay
            final = True
        else:
            assert got.action is Action.GIVE_UP
            break
    spent += config.host_max_cooldowns * config.host_cooldown
    assert attempt == config.max_attempts + config.final_pass_attempts
    bound = url_time_bound(config)
    assert spent <= bound + 1e-9
    if config.retry_after_max >= config.retry_max_delay:
        assert spent == pytest.approx(bound)


def test_the_throttled_host_bound_with_the_defaults_and_a_short_config() -> None:
    # 4 windows of 120 s, each answer at most max(16 / 0.1, 300) + 120.25 s after the last,
    # and 3 cool-downs of 30 s
    assert throttled_host_bound(FetchConfig(), 16) == pytest.approx(4 * (120 + 420.25) + 90)
    short = FetchConfig(
        host_throttle_window=2.0,
        host_cooldown=0.5,
        host_max_cooldowns=1,
        per_host_rate=20.0,
        per_host_min_rate=5.0,
        retry_after_max=1.0,
        retry_max_delay=0.5,
        total_timeout=5.0,
        connect_timeout=1.0,
    )
    assert throttled_host_bound(short, 1) == pytest.approx(2 * (2.0 + 1.0 + 5.25) + 0.5)
