"""Host-aware dispatch: rate share, concurrency cap, no head-of-line blocking.

The scheduler's clock (and the loop's, for its timers) is patched to jump forward instead of
sleeping.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from pathlib import Path

import pytest

from fetchshard.config import FetchConfig
from fetchshard.hosts.scheduler import Scheduler
from fetchshard.ledger import Ledger, PlannedItem
from fetchshard.planning.placement import FixedSpread, RankShares
from fetchshard.runfolder.layout import ledger_paths
from fetchshard.urls import item_id


class Clock:
    """Real monotonic time plus an offset the test advances: timers still fire."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    # The scheduler's clock (fetchshard.clock.Clock): this as its monotonic time.
    def monotonic(self) -> float:
        return self()

    wall = staticmethod(time.time)


def _ledger(tmp_path: Path, per_host: dict[str, int]) -> Ledger:
    ledger = Ledger(ledger_paths(tmp_path / "l.sqlite"))
    items = []
    for host, n in per_host.items():
        for i in range(n):
            items.append(
                PlannedItem(item_id(f"{host}/{i}"), item_id(host), host, f"http://{host}/{i}", None)
            )
    ledger.insert_items(items)
    return ledger


async def _drain_ready(scheduler: Scheduler) -> list[str]:
    """Everything the scheduler hands out without time passing."""
    hosts = []
    while True:
        try:
            got = await asyncio.wait_for(scheduler.next(), 0.05)
        except asyncio.TimeoutError:
            return hosts
        if got is None:
            return hosts
        hosts.append(got.slot.host)


async def test_rate_limited_host_does_not_block_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "time", clock)
    ledger = _ledger(tmp_path, {"slow.test": 500, "a.test": 20, "b.test": 20})
    config = FetchConfig(per_host_rate=2.0, per_host_burst=2, per_host_concurrency=100)
    scheduler = Scheduler(ledger, config, RankShares(0, FixedSpread(1, 1)), 0, clock=clock)
    first = await _drain_ready(scheduler)
    # each host gets exactly its burst at t=0, the 500-item host included
    assert sorted(first) == ["a.test", "a.test", "b.test", "b.test", "slow.test", "slow.test"]
    clock.offset += 1.0
    second = await _drain_ready(scheduler)
    assert sorted(second) == ["a.test", "a.test", "b.test", "b.test", "slow.test", "slow.test"]


async def test_concurrency_cap_and_release(tmp_path: Path) -> None:
    ledger = _ledger(tmp_path, {"one.test": 10})
    config = FetchConfig(per_host_rate=1000.0, per_host_burst=1000, per_host_concurrency=3)
    scheduler = Scheduler(ledger, config, RankShares(0, FixedSpread(1, 1)), 0)
    got = [await scheduler.next() for _ in range(3)]
    assert all(g is not None for g in got)
    assert await _drain_ready(scheduler) == []  # capped at 3 in flight
    slot = got[0].slot  # type: ignore[union-attr]
    scheduler.done(slot)
    assert await _drain_ready(scheduler) == ["one.test"]


async def test_share_of_a_host_rate_is_exact(tmp_path: Path) -> None:
    part = FixedSpread(world_size=3, spread=16)
    shares = [part.rate_share("h.test", r, 10.0) for r in range(3)]
    assert sum(shares) == pytest.approx(10.0, rel=1e-12)
    ledger = _ledger(tmp_path, {"h.test": 1})
    rank = max(range(3), key=lambda r: part.owned_buckets("h.test", r))
    scheduler = Scheduler(ledger, FetchConfig(per_host_rate=10.0), RankShares(rank, part), rank)
    got = await scheduler.next()
    assert got is not None
    assert got.slot.rate == pytest.approx(shares[rank])


async def test_a_counted_split_host_gets_its_recorded_share_and_others_the_whole_rate(
    tmp_path: Path,
) -> None:
    ledger = _ledger(tmp_path, {"split.test": 1, "whole.test": 1})
    shares = RankShares(2, split={item_id("split.test"): Fraction(3, 8)})
    scheduler = Scheduler(ledger, FetchConfig(per_host_rate=8.0), shares, 2)
    rates = {}
    for _ in range(2):
        got = await scheduler.next()
        assert got is not None
        rates[got.slot.host] = got.slot.rate
    assert rates == {"split.test": pytest.approx(3.0), "whole.test": pytest.approx(8.0)}


async def test_retry_waits_then_slice_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    ledger = _ledger(tmp_path, {"r.test": 1})
    scheduler = Scheduler(
        ledger, FetchConfig(per_host_rate=100.0), RankShares(0, FixedSpread(1, 1)), 0, clock=clock
    )
    got = await scheduler.next()
    assert got is not None
    slot, item = got.slot, got.item
    scheduler.done(slot, item, delay=5.0)
    assert await _drain_ready(scheduler) == []  # backoff not over
    clock.offset += 5.0
    again = await scheduler.next()
    assert again is not None and again.item.item_id == item.item_id
    scheduler.done(again.slot)
    assert await scheduler.next() is None


async def test_429_halves_the_rate_to_a_floor_and_success_restores_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetchshard.errors import ErrorKind

    clock = Clock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    ledger = _ledger(tmp_path, {"h.test": 200})
    config = FetchConfig(per_host_rate=8.0, per_host_burst=200, per_host_min_rate=1.0)
    scheduler = Scheduler(ledger, config, RankShares(0, FixedSpread(1, 1)), 0, clock=clock)
    got = [await scheduler.next() for _ in range(10)]
    slot = got[0].slot  # type: ignore[union-attr]
    events = scheduler.done(slot, kind=ErrorKind.HTTP_429, status=429)
    assert events.rate_decreased and slot.rate == 4.0
    # More 429s from requests already in flight within one interval count once.
    assert not scheduler.done(slot, kind=ErrorKind.HTTP_429, status=429).rate_decreased
    for _ in range(5):
        clock.offset += 1.0
        scheduler.done(slot, kind=ErrorKind.HTTP_5XX, status=503)
    assert slot.rate == 1.0  # the floor
    assert slot.limiter.rate == 1.0
    for _ in range(3):
        assert scheduler.done(slot).rate_increased
    assert slot.rate == pytest.approx(1.0 + 3 * 8.0 / 16)
    while slot.rate < 8.0:
        slot.in_flight += 1  # done() expects an outstanding fetch
        scheduler._in_flight += 1
        scheduler.done(slot)
    assert slot.rate == 8.0


async def test_connect_failures_park_then_give_up_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fetchshard.errors import ErrorKind

    clock = Clock()
    monkeypatch.setattr(asyncio.get_running_loop(), "time", clock)
    ledger = _ledger(tmp_path, {"down.test": 50})
    config = FetchConfig(
        per_host_rate=1000.0,
        per_host_burst=1000,
        per_host_concurrency=2,
        host_max_failures=2,
        host_cooldown=10.0,
        host_max_cooldowns=1,
    )
    scheduler = Scheduler(ledger, config, RankShares(0, FixedSpread(1, 1)), 0, clock=clock)

    async def fail_two() -> None:
        first, second = await scheduler.next(), await scheduler.next()
        assert first is not None and second is not None and first.fail is None
        scheduler.done(first.slot, first.item, kind=ErrorKind.CONNECT)
        scheduler.done(second.slot, second.item, kind=ErrorKind.CONNECT)

    await fail_two()
    assert await _drain_ready(scheduler) == []  # parked for the cool-down
    clock.offset += 10.0
    await fail_two()  # the second cool-down is one more than allowed: given up
    abandoned = []
    while (got := await scheduler.next()) is not None:
        assert got.fail is ErrorKind.HOST_UNREACHABLE
        abandoned.append(got.item.item_id)
    assert len(abandoned) == len(set(abandoned)) == 50
