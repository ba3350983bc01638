"""Host health and the leaky bucket, on a clock the test moves."""

from __future__ import annotations

import pytest

from fetchshard.clock import ManualClock
from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind
from fetchshard.hosts.bucket import LeakyBucket
from fetchshard.hosts.health import RECOVERY_STEP, HostHealth

CONFIG = FetchConfig(host_max_failures=2, host_cooldown=10.0, host_max_cooldowns=1)


def test_429_and_503_halve_once_per_interval_down_to_the_floor() -> None:
    health = HostHealth(host="h", base_rate=8.0, min_rate=1.0)
    assert health.observe(ErrorKind.HTTP_429, 429, None, 0.0, CONFIG).rate_decreased
    assert health.rate == 4.0
    assert not health.observe(ErrorKind.HTTP_429, 429, None, 0.1, CONFIG).rate_decreased
    assert health.observe(ErrorKind.HTTP_5XX, 503, None, 0.3, CONFIG).rate_decreased
    assert health.rate == 2.0
    assert not health.observe(ErrorKind.HTTP_5XX, 500, None, 9.0, CONFIG).rate_decreased
    for t in (10.0, 20.0, 30.0):
        health.observe(ErrorKind.HTTP_429, 429, None, t, CONFIG)
    assert health.rate == 1.0


def test_successes_give_the_rate_back_step_by_step() -> None:
    health = HostHealth(host="h", base_rate=8.0, min_rate=1.0, rate=1.0)
    steps = 0
    while health.rate < 8.0:
        assert health.observe(None, 200, None, float(steps), CONFIG).rate_increased
        steps += 1
    assert steps == int((8.0 - 1.0) / (8.0 * RECOVERY_STEP))
    assert not health.observe(None, 200, None, 99.0, CONFIG).rate_increased


def test_retry_after_parks_the_host_up_to_its_cap() -> None:
    health = HostHealth(host="h", base_rate=1.0, min_rate=0.1)
    health.observe(ErrorKind.HTTP_429, 429, 30.0, 100.0, CONFIG)
    assert health.parked_until == 130.0
    assert health.parked_why == "Retry-After"
    health.observe(ErrorKind.HTTP_429, 429, 1e6, 100.0, CONFIG)
    assert health.parked_until == 100.0 + CONFIG.retry_after_max


def test_connect_failures_park_then_give_up() -> None:
    health = HostHealth(host="h", base_rate=1.0, min_rate=0.1)
    assert not health.observe(ErrorKind.CONNECT, None, None, 0.0, CONFIG).parked
    assert health.observe(ErrorKind.DNS, None, None, 0.0, CONFIG).parked
    assert health.parked_until == 10.0 and health.parked_why == "cool-down after dns failures"
    # failures of requests in flight when it was parked do not count
    assert not health.observe(ErrorKind.CONNECT, None, None, 5.0, CONFIG).parked
    assert health.failures == 0
    health.observe(ErrorKind.CONNECT, None, None, 11.0, CONFIG)
    events = health.observe(ErrorKind.CONNECT, None, None, 11.0, CONFIG)
    assert events.died and health.dead is ErrorKind.HOST_UNREACHABLE
    assert "unreachable after 1 cool-downs (last: connect)" in health.dead_reason


def test_any_answer_resets_the_failure_count() -> None:
    health = HostHealth(host="h", base_rate=1.0, min_rate=0.1)
    health.observe(ErrorKind.CONNECT, None, None, 0.0, CONFIG)
    health.observe(ErrorKind.HTTP_404, 404, None, 0.0, CONFIG)
    assert health.failures == 0
    assert not health.observe(ErrorKind.CONNECT, None, None, 0.0, CONFIG).parked


def test_the_bucket_gives_its_burst_then_its_rate() -> None:
    manual = ManualClock()
    bucket = LeakyBucket(2.0, 3, manual.clock.monotonic)
    taken = 0
    while bucket.has_capacity():
        bucket.take()
        taken += 1
    assert taken == 3
    assert bucket.wait() == pytest.approx(0.5)
    manual.advance(0.5)
    assert bucket.has_capacity()
    bucket.take()
    assert not bucket.has_capacity()
    bucket.set_rate(4.0)
    manual.advance(0.25)
    assert bucket.has_capacity()


def test_a_full_bucket_has_no_burst_and_a_tiny_burst_is_one() -> None:
    manual = ManualClock()
    bucket = LeakyBucket(1.0, 0.01, manual.clock.monotonic)
    assert bucket.capacity == 1.0
    bucket.fill()
    assert not bucket.has_capacity()
    manual.advance(1.0)
    assert bucket.has_capacity()
    with pytest.raises(ValueError):
        LeakyBucket(0.0, 1, manual.clock.monotonic)


async def test_acquire_waits_for_capacity() -> None:
    import time

    bucket = LeakyBucket(20.0, 1, time.monotonic)
    await bucket.acquire()
    started = time.monotonic()
    await bucket.acquire()
    assert 0.03 <= time.monotonic() - started < 1.0


def test_only_429_and_503_for_a_window_cool_the_host_then_give_it_up() -> None:
    config = FetchConfig(host_throttle_window=10.0, host_cooldown=5.0, host_max_cooldowns=2)
    health = HostHealth(host="h", base_rate=8.0, min_rate=1.0)
    seen = [health.observe(ErrorKind.HTTP_429, 429, None, t, config) for t in (0.0, 4.0, 9.0)]
    assert not any(e.parked or e.died for e in seen)
    assert health.observe(ErrorKind.HTTP_5XX, 503, None, 10.0, config).parked
    assert health.parked_until == 15.0 and health.cooldowns == 1
    assert not health.observe(ErrorKind.HTTP_429, 429, None, 16.0, config).parked
    assert health.observe(ErrorKind.HTTP_429, 429, None, 20.0, config).parked  # cool-down 2
    events = health.observe(ErrorKind.HTTP_429, 429, None, 30.0, config)
    assert events.died and health.dead is ErrorKind.RATE_LIMITED
    assert "h answered only 429/503 through 2 cool-downs of 10s" in health.dead_reason
    assert ErrorKind.RATE_LIMITED.transient


def test_a_success_restarts_the_throttle_window() -> None:
    config = FetchConfig(host_throttle_window=10.0, host_cooldown=5.0, host_max_cooldowns=0)
    health = HostHealth(host="h", base_rate=8.0, min_rate=1.0)
    health.observe(ErrorKind.HTTP_429, 429, None, 0.0, config)
    health.observe(None, 200, None, 9.0, config)
    assert not health.observe(ErrorKind.HTTP_429, 429, None, 12.0, config).died
    assert not health.observe(ErrorKind.HTTP_429, 429, None, 21.0, config).died
    assert health.observe(ErrorKind.HTTP_429, 429, None, 22.0, config).died
    # a 500 or a 404 is an answer, not throttling: it neither counts nor restarts the window
    other = HostHealth(host="h", base_rate=8.0, min_rate=1.0)
    other.observe(ErrorKind.HTTP_5XX, 500, None, 0.0, config)
    assert other.throttled_since is None


def test_an_answer_says_how_much_longer_it_holds_the_host_back() -> None:
    health = HostHealth(host="h", base_rate=1.0, min_rate=0.1)
    assert health.observe(ErrorKind.HTTP_429, 429, 30.0, 100.0, CONFIG).parked_s == 30.0
    # a shorter Retry-After inside the first adds nothing; a longer one adds the difference
    assert health.observe(ErrorKind.HTTP_429, 429, 10.0, 105.0, CONFIG).parked_s == 0.0
    assert health.observe(ErrorKind.HTTP_429, 429, 40.0, 110.0, CONFIG).parked_s == 20.0
    # after the park ran out, a new one counts whole
    assert health.observe(ErrorKind.HTTP_429, 429, 5.0, 200.0, CONFIG).parked_s == 5.0
    assert health.observe(None, 200, None, 300.0, CONFIG).parked_s == 0.0
