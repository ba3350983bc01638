"""One rank from start to finish: plan, fetch, write, commit, report, stop on a signal."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import os
import random
import signal
import sys
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fetchshard import __version__
from fetchshard.config import Config
from fetchshard.errors import EXIT_INTERRUPTED, EXIT_OK, ErrorKind, RunError
from fetchshard.fetch import FetchResult, fetch, make_client
from fetchshard.hosts import HostEvents, HostSlot, Scheduler
from fetchshard.inputs import validate_inputs
from fetchshard.ledger import Ledger, WorkItem
from fetchshard.partition import Partitioner
from fetchshard.paths import RunPaths, write_atomic
from fetchshard.plan import Interrupted, extras_schema, fingerprint, plan, prepare_output
from fetchshard.progress import Progress
from fetchshard.ranks import RankInfo, cpus_available
from fetchshard.robots import read_robots, robots_allow
from fetchshard.schema import STATUS_FAILED, STATUS_OK, ResultRow
from fetchshard.signals import take_pending
from fetchshard.stats import Stats
from fetchshard.writer import PartWriter, recover

log = logging.getLogger("fetchshard")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@dataclass(frozen=True, slots=True)
class RankOutcome:
    complete: bool
    stats: Stats

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.complete else EXIT_INTERRUPTED


def run_rank(config: Config, info: RankInfo, *, interactive: bool = False) -> RankOutcome:
    """Run one rank of a job; safe to call again after any crash (it resumes)."""
    files = validate_inputs(config.input)
    paths = RunPaths(Path(config.output.dir))
    fp = fingerprint(config, files, info.world_size)
    prepare_output(paths, fp, info, restart=config.run.restart)
    handler = _log_to_file(paths.log(info.rank), config.run.log_level)
    try:
        return _run(config, info, paths, fp, interactive)
    finally:
        logging.getLogger("fetchshard").removeHandler(handler)
        handler.close()


def _log_to_file(path: Path, level: str) -> logging.Handler:
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(level.upper())
    root = logging.getLogger("fetchshard")
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > handler.level:
        root.setLevel(handler.level)
    return handler


class _StopFlag:
    """Set by SIGINT/SIGTERM/SIGUSR1; the second signal skips the grace period."""

    def __init__(self) -> None:
        self.count = 0
        self.callback: Any = None

    def __call__(self, signum: int, _frame: object = None) -> None:
        self.count += 1
        log.warning(
            "received %s: stopping, committing what is done (rerun to resume)",
            signal.Signals(signum).name,
        )
        if self.callback is not None:
            self.callback(self.count)

    def __bool__(self) -> bool:
        return self.count > 0


def _run(
    config: Config, info: RankInfo, paths: RunPaths, fp: dict[str, Any], interactive: bool
) -> RankOutcome:
    rank = info.rank
    log.info("fetchshard %s as %s, %d CPUs", __version__, info.describe, cpus_available(os.environ))
    stop = _StopFlag()
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    for signum in take_pending():  # arrived while the rank was starting
        stop(signum)
    progress = Progress(
        paths.progress(rank), info, interactive=interactive, interval=config.run.progress_interval
    )
    try:
        with Ledger(paths.ledger(rank)) as ledger:
            progress.update(state="planning")
            try:
                result = plan(
                    ledger,
                    config,
                    info,
                    fp,
                    should_stop=lambda: bool(stop),
                    on_batch=lambda rows: progress.update(state="planning", input_rows=rows),
                )
            except Interrupted:
                progress.update(state="interrupted", force=True)
                progress.close()
                return RankOutcome(False, Stats())
            if result.skipped:
                log.info("plan found in the ledger; resuming")
            next_part = recover(paths, rank, ledger)
            counts = ledger.counts()
            log.info(
                "slice: %d items, %d committed, %d to do",
                counts.total,
                counts.committed,
                counts.pending,
            )
            progress.set_total(counts.total, counts.committed)
            log.info(
                "one URL can hold this rank at most %.0fs (README: how long the tail can be)",
                config.fetch.url_time_bound(),
            )
            session = Stats()
            if counts.pending and not stop:
                job = _Job(config, info, paths, ledger, next_part, progress, stop)
                session = _run_loop(job.run())
            counts = ledger.counts()
            complete = counts.pending == 0
            totals = _totals(ledger, session)
            write_atomic(
                paths.stats(rank),
                json.dumps(
                    {
                        "rank": rank,
                        "world_size": info.world_size,
                        "complete": complete,
                        **totals.to_dict(),
                    },
                    indent=2,
                ).encode(),
                durable=True,
            )
            progress.finish("done" if complete else "interrupted", counts.committed, totals)
            if complete:
                write_atomic(paths.done(rank), b"", durable=True)
                log.info(
                    "rank %d done: %d items, %d ok, %d failed",
                    rank,
                    counts.total,
                    counts.committed - counts.failed,
                    counts.failed,
                )
            else:
                log.warning(
                    "rank %d stopped with %d items to do; rerun to resume", rank, counts.pending
                )
            return RankOutcome(complete, totals)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _totals(ledger: Ledger, session: Stats) -> Stats:
    """Rank totals: committed rows from the ledger, counters summed over every session."""
    before = Stats.from_dict(ledger.get_meta("session_stats") or {})
    counters = before + session
    ledger.set_meta("session_stats", counters.to_dict())
    errors = ledger.error_counts()
    failed = sum(errors.values())
    items = ledger.counts().committed
    counters.items, counters.failed, counters.ok = items, failed, items - failed
    counters.errors.clear()
    counters.errors.update(errors)
    return counters


# Each request allocates hundreds of objects and hundreds are in flight, so at the default
# threshold (700) the cyclic collector ran every few requests and rescanned every in-flight
# request each time: 19 % of the event loop's CPU for 20,000 URLs (profile), 15.5 -> 12.6 s.
_GC_THRESHOLD = (100_000, 50, 100)


@contextlib.contextmanager
def _fewer_collections() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def _run_loop(coro: Coroutine[Any, Any, Stats]) -> Stats:
    with _fewer_collections():
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
            return asyncio.run(coro)
        return uvloop.run(coro)


class _Job:
    """The fetch phase of one rank, inside its event loop: the main pass, then the final one."""

    def __init__(
        self,
        config: Config,
        info: RankInfo,
        paths: RunPaths,
        ledger: Ledger,
        next_part: int,
        progress: Progress,
        stop: _StopFlag,
    ) -> None:
        self.config = config
        self.info = info
        self.paths = paths
        self.ledger = ledger
        self.next_part = next_part
        self.progress = progress
        self.stop = stop
        self.stats = Stats()
        self.fatal: BaseException | None = None
        self.tasks: dict[asyncio.Task[None], WorkItem] = {}
        self.deferred: list[WorkItem] = []
        self.interrupted: list[WorkItem] = []
        self.final = False  # in the final pass over deferred transient failures

    async def run(self) -> Stats:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        cfg = self.config
        self.writer = PartWriter(
            self.paths,
            self.info.rank,
            self.ledger,
            cfg.output,
            extras_schema(self.ledger),
            self.next_part,
        )
        self.scheduler = self._scheduler()
        self.stop.callback = self._on_stop
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self.stop, sig)
        ticker = asyncio.create_task(self._tick())
        try:
            self._write_unfetchable()
            async with make_client(cfg.fetch) as client:
                self.client = client
                await self._pass()
                self._save_deferred()
                fetch_cfg = cfg.fetch
                if not self.stop and fetch_cfg.final_pass_attempts > 0:
                    # Commit first: a new scheduler reads the queue from its start, and rows
                    # of the open part are still pending in the ledger until committed.
                    await self.writer.commit_async()
                    reopened = self.ledger.reopen_deferred(time.time() + fetch_cfg.final_pass_delay)
                    if reopened:
                        log.info(
                            "final pass over %d transient failures in %gs",
                            reopened,
                            fetch_cfg.final_pass_delay,
                        )
                        self.final = True
                        self.scheduler = self._scheduler(after=self.scheduler)
                        await self._pass()
            if self.fatal is not None:
                raise RunError(f"rank {self.info.rank} failed: {self.fatal}") from self.fatal
            await self.writer.commit_async()
            self._save_deferred()
            leftover = [*self.interrupted, *self.scheduler.pending_retries()]
            if leftover:
                self.ledger.release(leftover)
        finally:
            ticker.cancel()
            self.writer.close()
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)  # resets it to the default action...
                signal.signal(sig, self.stop)  # ...which would kill the rank before it is done
            self.stop.callback = None
        self.stats.seconds = time.monotonic() - started
        return self.stats

    def _scheduler(self, after: Scheduler | None = None) -> Scheduler:
        cfg = self.config
        return Scheduler(
            self.ledger,
            cfg.fetch,
            Partitioner(self.info.world_size, cfg.partition.spread),
            self.info.rank,
            after=after,
        )

    async def _pass(self) -> None:
        while not self.stop:
            got = await self.scheduler.next()
            if got is None:
                break
            if got.fail is not None:
                self._write(got.item, got.item.attempts, None, time.time(), got.fail, got.message)
                continue
            task = asyncio.create_task(self._fetch_one(got.slot, got.item))
            self.tasks[task] = got.item
            task.add_done_callback(self._task_done)
        await self._drain()

    def _save_deferred(self) -> None:
        if self.deferred:
            self.ledger.defer(self.deferred)
            self.deferred = []

    def _on_stop(self, count: int) -> None:
        self.scheduler.stop()
        if count > 1:
            for task in self.tasks:
                task.cancel()

    async def _drain(self) -> None:
        if not self.tasks:
            return
        grace = self.config.run.grace_period if self.stop else None
        _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("dropped %d in-flight fetches after the grace period", len(pending))
            await asyncio.gather(*pending, return_exceptions=True)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        item = self.tasks.pop(task)
        if task.cancelled():
            self.interrupted.append(
                dataclasses.replace(
                    item,
                    next_attempt_at=time.time(),
                    error_kind=ErrorKind.INTERRUPTED.value,
                    error_message="the rank stopped during the request",
                    http_status=None,
                )
            )
        elif task.exception() is not None and self.fatal is None:
            self.fatal = task.exception()
            log.error("stopping: %s", self.fatal, exc_info=self.fatal)
            self.scheduler.stop()

    async def _tick(self) -> None:
        """Commit a part that has been open too long and refresh the progress snapshot."""
        while True:
            await asyncio.sleep(1.0)
            if self.writer.due():
                await self.writer.commit_async()
            else:
                self.writer.reap()
            self.progress.update(
                state="fetching",
                in_flight=self.scheduler.in_flight,
                active_hosts=self.scheduler.active_hosts,
                stats=self.stats,
                written=self.writer.rows_committed,
            )

    def _write_unfetchable(self) -> None:
        """Items that failed in planning (bad URLs) become failed rows without a request."""
        after = -1
        now = time.time()
        while batch := self.ledger.pending_without_host(10_000, after):
            for item in batch:
                self._write(item, item.attempts, None, now, ErrorKind.BAD_URL, item.error_message)
                after = item.item_id

    def _write(
        self,
        item: WorkItem,
        attempts: int,
        result: FetchResult | None,
        now: float,
        kind: ErrorKind | None,
        message: str | None,
    ) -> None:
        row = ResultRow(
            item_id=item.item_id,
            url=item.url,
            extras=item.extras,
            status=STATUS_OK if kind is None else STATUS_FAILED,
            error_kind=None if kind is None else kind.value,
            error_message=message,
            http_status=result.http_status if result else None,
            final_url=result.final_url if result else None,
            content_type=result.content_type if result else None,
            size=result.size if result else None,
            attempts=attempts,
            fetched_at=now if result else None,
            elapsed_ms=result.elapsed_ms if result else None,
            body=result.body if result else None,
            sha256=result.sha256 if result else None,
        )
        stats = self.stats
        stats.items += 1
        if kind is None:
            stats.ok += 1
            stats.bytes += (result.size or 0) if result else 0
        else:
            stats.failed += 1
            stats.errors[kind.value] += 1
        self.writer.add(row)

    async def _fetch_one(self, slot: HostSlot, item: WorkItem) -> None:
        attempt = item.attempts + 1
        cfg = self.config.fetch
        url = item.fetch_url or item.url  # normalized while planning
        if cfg.robots_txt and not await self._robots_allow(slot, url):
            self._write(
                item,
                item.attempts,
                None,
                time.time(),
                ErrorKind.ROBOTS_TXT,
                f"disallowed by {slot.host}/robots.txt",
            )
            self.scheduler.done(slot)
            return
        factor = cfg.final_pass_timeout_factor if self.final else 1.0
        result = await fetch(
            self.client,
            url,
            cfg,
            headers=slot.headers or None,
            timeout_factor=factor,
        )
        self.stats.requests += 1
        kind = result.error_kind
        retry: WorkItem | None = None
        delay = 0.0
        if kind is not None and kind.transient:
            limit = cfg.max_attempts + (cfg.final_pass_attempts if self.final else 0)
            if attempt < limit:
                delay = _backoff(attempt, cfg.retry_base_delay, cfg.retry_max_delay)
                if result.retry_after is not None:
                    delay = max(delay, min(result.retry_after, cfg.retry_after_max))
                self.stats.retries += 1
                log.debug("%s: %s, retry %d in %.2fs", url, result.error_message, attempt, delay)
                retry = _work_item(item, attempt, time.time() + delay, result)
            elif not self.final and cfg.final_pass_attempts > 0:
                self.deferred.append(_work_item(item, attempt, 0.0, result))
                self.stats.deferred += 1
                events = self.scheduler.done(
                    slot, kind=kind, status=result.http_status, retry_after=result.retry_after
                )
                self._count(events)
                return
        if retry is None:
            self._write(item, attempt, result, time.time(), kind, result.error_message)
        events = self.scheduler.done(
            slot,
            retry,
            delay,
            kind=kind,
            status=result.http_status,
            retry_after=result.retry_after,
        )
        self._count(events)

    def _count(self, events: HostEvents) -> None:
        stats = self.stats
        stats.rate_decreases += events.rate_decreased
        stats.rate_increases += events.rate_increased
        stats.host_cooldowns += events.parked
        stats.hosts_unreachable += events.died

    async def _robots_allow(self, slot: HostSlot, url: str) -> bool:
        """Whether robots.txt lets us fetch ``url``; fetched once per host, rate limited."""
        async with slot.robots_lock:
            if slot.robots is None:
                await slot.limiter.acquire()
                slot.robots = await read_robots(self.client, url, self.config.fetch)
        return robots_allow(slot.robots, url)


def _work_item(item: WorkItem, attempt: int, due: float, result: FetchResult) -> WorkItem:
    kind = result.error_kind.value if result.error_kind is not None else None
    return WorkItem(
        item.item_id,
        item.url,
        item.extras,
        attempt,
        due,
        kind,
        result.error_message,
        result.http_status,
        item.fetch_url,
        item.host_id,
    )


def _backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return random.uniform(0.0, min(cap, base * 2.0 ** (attempt - 1)))


def is_interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("_FETCHSHARD_CHILD") is None
