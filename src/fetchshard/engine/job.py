"""The fetch phase of one rank, inside its event loop: the main pass, then the final one.

The job owns the tasks in flight and the order of things (dispatch, drain, commit, the final
pass); what becomes of an attempt's result (checks, the retry decision, its file, its row) is
:mod:`results`'s, which host may go now the scheduler's, what a row holds :mod:`rows`'s, what
happens to a row before it is written the stages', how a part becomes durable the part
writer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from pathlib import PurePosixPath
from typing import Any

from fetchshard.clock import Clock
from fetchshard.config import Config
from fetchshard.engine.eventloop import LagProbe
from fetchshard.engine.progress import Progress
from fetchshard.engine.results import ResultHandler
from fetchshard.engine.rows import interrupted_item, result_row
from fetchshard.engine.stages import Pipeline, Stage, columns_with
from fetchshard.engine.stop import StopFlag, loop_stop_signals
from fetchshard.errors import ErrorKind, RunError, StorageError, UsageError
from fetchshard.hosts.scheduler import Scheduler
from fetchshard.hosts.slot import HostSlot
from fetchshard.http.client import make_client
from fetchshard.http.content import checked_algorithms
from fetchshard.http.request import fetch
from fetchshard.http.sink import BodySink, MemorySink
from fetchshard.hub import localdir
from fetchshard.hub.uri import BOOKKEEPING_FOLDERS
from fetchshard.ledger import Ledger, WorkItem
from fetchshard.output.columns import ResultRow
from fetchshard.output.extras import deserialize_schema
from fetchshard.output.files import FileSink, FileStore, FileTarget, file_columns, uses_files
from fetchshard.output.parts import PartWriter
from fetchshard.output.segments import fetch_file
from fetchshard.output.targets import TargetRule
from fetchshard.planning.rank import rank_shares
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.storage import LOCAL, Storage
from fetchshard.stats import Stats

log = logging.getLogger("fetchshard")
TICK = 1.0  # seconds between the commit check and the progress snapshot


class FetchJob:
    """Fetch every pending item of a rank's ledger once (then the final pass), commit parts."""

    def __init__(
        self,
        config: Config,
        info: RankInfo,
        paths: RunPaths,
        ledger: Ledger,
        next_part: int,
        progress: Progress,
        stop: StopFlag,
        stages: tuple[Stage, ...] = (),
        *,
        storage: Storage = LOCAL,
    ) -> None:
        self.config = config
        self.storage = storage
        self.info = info
        self.paths = paths
        self.ledger = ledger
        self.next_part = next_part
        self.progress = progress
        self.stop = stop
        self.stages = stages
        self.stats = Stats()
        self.fatal: BaseException | None = None
        self.tasks: dict[asyncio.Task[None], WorkItem] = {}
        self.interrupted: list[WorkItem] = []
        self.final = False  # in the final pass over deferred transient failures
        self._waiting_key: str | None = None

    async def fetch_all(self) -> Stats:
        """Both passes; the stats of this session."""
        loop = asyncio.get_running_loop()
        self.clock = Clock(monotonic=loop.time, wall=time.time)
        started = self.clock.monotonic()
        cfg = self.config
        text = self.ledger.meta.extras_schema
        self.extras = deserialize_schema(text) if text else None
        self.algorithms = checked_algorithms(cfg.input)
        self.files: FileStore | None = None
        self.writer = PartWriter(
            self.paths,
            self.info.rank,
            self.ledger,
            cfg.output,
            self.extras,
            self.next_part,
            columns=columns_with(self.stages).extended(file_columns(cfg)),
            storage=self.storage,
            clock=self.clock,
        )
        self.rows = Pipeline(
            self.stages, self.writer.add, self._failed, on_stage_failure=self._stage_failed
        )
        self.scheduler = self._scheduler()
        self.stop.callback = self._on_stop
        ticker = asyncio.create_task(self._tick())
        self.lag = LagProbe(self.clock.monotonic)
        probe = asyncio.create_task(self.lag.run())
        try:
            with loop_stop_signals(loop, self.stop):
                await self._passes()
        finally:
            ticker.cancel()
            probe.cancel()
            self.stats.loop_lag_max_ms = round(self.lag.max_s * 1000, 1)
            if self.lag.late:
                log.info(
                    "event loop: %d of %d wake-ups over 50 ms late, the longest %.0f ms",
                    self.lag.late,
                    self.lag.samples,
                    self.lag.max_s * 1000,
                )
            self.writer.close()
            await self.rows.aclose()
            self.stop.callback = None
        self.stats.seconds = self.clock.monotonic() - started
        return self.stats

    def _mirror_hooks(self) -> dict[str, Any]:
        """A mirror's files get huggingface_hub's metadata beside them (hub/localdir.py)."""
        if not self.paths.mirror:
            return {}
        root, durable = self.paths.output_dir, self.config.output.fsync_files

        def placed(relative: PurePosixPath, target: FileTarget) -> None:
            if target.commit is not None and target.etag is not None:
                localdir.write_metadata(root, relative, target.commit, target.etag, durable=durable)

        return {"placed": placed, "forgotten": lambda r: localdir.remove_metadata(root, r)}

    async def _passes(self) -> None:
        cfg = self.config.fetch
        self._write_unfetchable()
        async with contextlib.AsyncExitStack() as resources:
            self.client = await resources.enter_async_context(make_client(cfg))
            if uses_files(self.config):
                store = FileStore(
                    self.paths,
                    self.info.rank,
                    self.config.output,
                    self.algorithms,
                    one_item_per_url=self.config.input.id_column is None,
                    storage=self.storage,
                    **self._mirror_hooks(),
                )
                self.files = await resources.enter_async_context(store)
                reserved = BOOKKEEPING_FOLDERS if self.paths.mirror else ()
                self.targets = TargetRule.of(self.config, self.extras, reserved)
            self.results = ResultHandler(
                self.config, self.extras, self.stats, self.rows, self.clock, self.files
            )
            await self._pass()
            self._save_deferred()
            if not self.stop and cfg.final_pass_attempts > 0:
                # Commit first: a new scheduler reads the queue from its start, and rows of
                # the open part are still pending in the ledger until committed.
                await self.writer.commit_async()
                due = self.clock.wall() + cfg.final_pass_delay
                reopened = self.ledger.queue.reopen_deferred(due)
                if reopened:
                    log.info(
                        "final pass over %d transient failures in %gs",
                        reopened,
                        cfg.final_pass_delay,
                    )
                    self.final = True
                    self.scheduler = self._scheduler(after=self.scheduler)
                    await self._pass()
        if isinstance(self.fatal, UsageError):  # what the user must fix (a second writer)
            raise self.fatal
        if self.fatal is not None:
            raise RunError(f"rank {self.info.rank} failed: {self.fatal}") from self.fatal
        await self.writer.commit_async()
        self._save_deferred()
        leftover = [*self.interrupted, *self.scheduler.pending_retries()]
        if leftover:
            self.ledger.queue.release(leftover)

    def _scheduler(self, after: Scheduler | None = None) -> Scheduler:
        cfg = self.config
        return Scheduler(
            self.ledger,
            cfg.fetch,
            rank_shares(self.ledger, cfg, self.info),
            self.info.rank,
            clock=self.clock,
            after=after,
        )

    async def _pass(self) -> None:
        while not self.stop:
            if self.rows.blocked:  # the stages are full: no new fetch until they drain
                await self.rows.ready()
                if self.stop:
                    break
            got = await self.scheduler.next()
            if got is None:
                break
            if got.fail is not None:
                self._write_failed(got.item, got.fail, got.message, host=got.slot.host)
                continue
            task = asyncio.create_task(self._fetch_one(got.slot, got.item))
            self.tasks[task] = got.item
            task.add_done_callback(self._task_done)
        await self._drain()

    def _save_deferred(self) -> None:
        deferred = self.results.take_deferred()
        if deferred:
            self.ledger.queue.defer(deferred)

    def _on_stop(self, count: int) -> None:
        self.scheduler.stop()
        self.rows.wake()
        if count > 1:
            for task in self.tasks:
                task.cancel()

    async def _drain(self) -> None:
        """Wait for the fetches in flight and the rows in the stages (on a stop: a grace)."""
        grace = self.config.run.grace_period if self.stop else None
        deadline = None if grace is None else self.clock.monotonic() + grace
        if self.tasks:
            _, pending = await asyncio.wait(set(self.tasks), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("dropped %d in-flight fetches after the grace period", len(pending))
                await asyncio.gather(*pending, return_exceptions=True)
        left = None if deadline is None else max(0.0, deadline - self.clock.monotonic())
        await self.rows.drain(left)

    def _failed(self, exc: BaseException) -> None:
        """A bug (in a fetch task or a stage): stop the rank, report it once."""
        if self.fatal is None:
            self.fatal = exc
            # A full disk or a second writer is not a bug: one line, no traceback.
            known = isinstance(exc, StorageError | UsageError)
            log.error("stopping: %s", exc, exc_info=None if known else exc)
            self.scheduler.stop()

    def _stage_failed(self, fetched: ResultRow, row: ResultRow, host: str) -> None:
        """A stage failed a fetched row (an image that does not decode): recount it."""
        self.stats.recount_failure(
            fetched.size,
            fetched.content_type,
            row.error_kind or ErrorKind.INTERNAL.value,
            host=host,
            url=row.url,
            message=row.error_message,
        )

    def _task_done(self, task: asyncio.Task[None]) -> None:
        item = self.tasks.pop(task)
        if task.cancelled():
            self.interrupted.append(interrupted_item(item, self.clock.wall()))
        elif task.exception() is not None:
            self._failed(task.exception())  # type: ignore[arg-type]

    async def _tick(self) -> None:
        """Commit a part that has been open too long and refresh the progress snapshot."""
        while True:
            await asyncio.sleep(TICK)
            if self.writer.due():
                await self.writer.commit_async()
            else:
                self.writer.reap()
            waiting = self.scheduler.waiting()
            if waiting is not None and self.final:
                waiting = f"final pass: {waiting}"
            self._say_why(waiting)
            self.progress.update(
                state="fetching",
                in_flight=self.scheduler.in_flight,
                active_hosts=self.scheduler.active_hosts,
                stats=self.stats,
                written=self.writer.rows_committed,
                waiting=waiting,
                received=self._received(),
            )

    def _received(self) -> int | None:
        """Body bytes received so far this session (None before the client exists)."""
        client = getattr(self, "client", None)  # made in _passes, after the ticker starts
        return client.watch.received if client is not None else None

    def _say_why(self, waiting: str | None) -> None:
        """Log what the rank waits for when that changes (its countdowns aside)."""
        key = None if waiting is None else re.sub(r"\d+", "#", waiting)
        if key != self._waiting_key:
            self._waiting_key = key
            if waiting is not None:
                log.info("nothing in flight, waiting: %s", waiting)

    def _write_unfetchable(self) -> None:
        """Items that failed in planning (bad URLs) become failed rows without a request."""
        after = -1
        while batch := self.ledger.queue.pending_without_host(10_000, after):
            for item in batch:
                self._write_failed(item, ErrorKind.BAD_URL, item.error_message)
                after = item.item_id

    def _write_failed(
        self, item: WorkItem, kind: ErrorKind, message: str | None, *, host: str | None = None
    ) -> None:
        """An item that fails without (another) request: its row skips the stages."""
        self.stats.count_row(
            kind.value,
            None,
            http_status=item.http_status,
            host=host,
            url=item.url,
            message=message,
        )
        self.rows.write(result_row(item, item.attempts, None, self.clock.wall(), kind, message))

    async def _fetch_one(self, slot: HostSlot, item: WorkItem) -> None:
        """One attempt at ``item`` (robots.txt first, where asked); its result to
        :class:`ResultHandler`."""
        cfg = self.config.fetch
        url = item.fetch_url or item.url  # normalized while planning
        if cfg.robots_txt and not await slot.robots.allows(
            self.client, url, cfg, slot.limiter.acquire
        ):
            self._write_failed(
                item,
                ErrorKind.ROBOTS_TXT,
                f"disallowed by {slot.host}/robots.txt",
                host=slot.host,
            )
            self.scheduler.done(slot)
            return
        factor = cfg.final_pass_timeout_factor if self.final else 1.0
        sink: BodySink | None = None
        if self.files is not None:
            target = self.targets.target(item.extras)
            if isinstance(target, str):  # the input's path for it cannot be written
                self._write_failed(item, ErrorKind.BAD_PATH, target, host=slot.host)
                self.scheduler.done(slot)
                return
            sink = self.files.sink(item.item_id, url, target)
        elif self.algorithms:
            sink = MemorySink(self.algorithms)
        if isinstance(sink, FileSink):  # a large file of known size may come as ranges
            result = await fetch_file(self.client, url, cfg, sink, timeout_factor=factor)
        else:
            result = await fetch(self.client, url, cfg, timeout_factor=factor, sink=sink)
        self.stats.requests += 1
        await self.results.handle(self.scheduler, slot, item, url, result, sink, final=self.final)
