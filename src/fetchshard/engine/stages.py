"""The hook between fetch and write: stages that look at a row and may change it.

A :class:`Stage` (the image stage, for one) gets every row that came from a request, after
its last attempt, and returns the row to write: with values for its own columns
(:attr:`Stage.columns`, kept in ``ResultRow.more``), or turned into a failure. Its work runs
as a task of the rank's event loop, so CPU work belongs in a pool it awaits; the event loop
never waits for it. Rows failed before any request (bad URLs, robots.txt, given-up hosts)
go straight to the writer.

An item is committed only once its row reaches the writer and the part holding it is
durable, so a row still in a stage when the rank stops is simply fetched again on resume.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from fetchshard.output.columns import BASE_COLUMNS, Column, ColumnTable, ResultRow

if TYPE_CHECKING:
    from fetchshard.config import Config

DEPTH = 256  # rows in the stages at once, unless a stage wants fewer


class Stage(Protocol):
    name: str
    columns: Sequence[Column]
    depth: int  # rows it may hold at once (its queue): fetches wait beyond that

    async def process(self, row: ResultRow) -> ResultRow: ...

    async def aclose(self) -> None: ...


def configured_stages(config: Config) -> tuple[Stage, ...]:
    """The stages ``config`` asks for (none by default), built but not started."""
    if config.images.mode == "off":
        return ()
    from fetchshard.images.stage import ImageStage  # Pillow: only when images are on
    from fetchshard.ranks import cpus_available

    workers = config.images.workers or cpus_available(os.environ)
    return (ImageStage(config.images, workers),)


def columns_with(stages: Sequence[Stage]) -> ColumnTable:
    """The run's column table: the base columns and every stage's, in stage order."""
    table = BASE_COLUMNS
    for stage in stages:
        table = table.extended(stage.columns)
    return table


# A fetched row that a stage turned into a failure: (the row as fetched, as it is now, host).
StageFailure = Callable[[ResultRow, ResultRow, str], None]


class Pipeline:
    """Rows from the fetches through the stages to ``sink`` (the part writer's ``add``).

    Without stages a row goes to the sink at once, in the caller's call (the hot path adds
    nothing). With stages, at most ``depth`` rows (the smallest of the stages' depths) are in
    the stages at once; :meth:`send` waits for room, and :meth:`ready` tells the dispatcher
    to wait while a sender does, so fetches wait rather than memory grows.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        sink: Callable[[ResultRow], None],
        on_error: Callable[[BaseException], None],
        *,
        on_stage_failure: StageFailure | None = None,
    ) -> None:
        self._stages = tuple(stages)
        self._sink = sink
        self._on_error = on_error
        self._on_stage_failure = on_stage_failure
        self.depth = min((s.depth for s in self._stages), default=DEPTH)
        self._room = asyncio.Semaphore(self.depth)
        self._tasks: set[asyncio.Task[None]] = set()
        self._senders_waiting = 0
        self._unblocked = asyncio.Event()
        self._unblocked.set()
        self.direct = not self._stages

    def write(self, row: ResultRow) -> None:
        """A row that skips the stages (failed before any request)."""
        self._sink(row)

    async def send(self, row: ResultRow, host: str) -> None:
        """A fetched row (from ``host``): through the stages, then written."""
        if self.direct:
            self._sink(row)
            return
        if self._room.locked():
            self._senders_waiting += 1
            self._unblocked.clear()
            try:
                await self._room.acquire()
            finally:
                self._senders_waiting -= 1
                if not self._senders_waiting:
                    self._unblocked.set()
        else:
            await self._room.acquire()
        task = asyncio.get_running_loop().create_task(self._through(row, host))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def blocked(self) -> bool:
        """Fetched rows wait for room in the stages: dispatch nothing new (:meth:`ready`)."""
        return not self._unblocked.is_set()

    async def ready(self) -> None:
        """Wait while fetched rows wait for room in the stages (or until :meth:`wake`)."""
        await self._unblocked.wait()

    def wake(self) -> None:
        """Let :meth:`ready` return (the rank is stopping)."""
        self._unblocked.set()

    async def _through(self, row: ResultRow, host: str) -> None:
        try:
            fetched = row
            for stage in self._stages:
                row = await stage.process(row)
            if self._on_stage_failure is not None and row.status != fetched.status:
                self._on_stage_failure(fetched, row, host)
            self._sink(row)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug in a stage: it stops the rank
            self._on_error(exc)
        finally:
            self._room.release()

    @property
    def in_stages(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every row sent has been written (or ``timeout``: then drop the rest,
        whose items stay pending)."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        for stage in self._stages:
            await stage.aclose()
