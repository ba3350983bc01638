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
from collections.abc import Callable, Sequence
from typing import Protocol

from fetchshard.output.columns import BASE_COLUMNS, Column, ColumnTable, ResultRow


class Stage(Protocol):
    name: str
    columns: Sequence[Column]

    async def process(self, row: ResultRow) -> ResultRow: ...

    async def aclose(self) -> None: ...


def columns_with(stages: Sequence[Stage]) -> ColumnTable:
    """The run's column table: the base columns and every stage's, in stage order."""
    table = BASE_COLUMNS
    for stage in stages:
        table = table.extended(stage.columns)
    return table


class Pipeline:
    """Rows from the fetches through the stages to ``sink`` (the part writer's ``add``).

    Without stages a row goes to the sink at once, in the caller's call (the hot path adds
    nothing). With stages, at most ``depth`` rows are in the stages at once; :meth:`send`
    waits for room, so fetches wait rather than memory grows.
    """

    def __init__(
        self,
        stages: Sequence[Stage],
        sink: Callable[[ResultRow], None],
        on_error: Callable[[BaseException], None],
        *,
        depth: int = 256,
    ) -> None:
        self._stages = tuple(stages)
        self._sink = sink
        self._on_error = on_error
        self._room = asyncio.Semaphore(depth)
        self._tasks: set[asyncio.Task[None]] = set()
        self.direct = not self._stages

    def write(self, row: ResultRow) -> None:
        """A row that skips the stages (failed before any request)."""
        self._sink(row)

    async def send(self, row: ResultRow) -> None:
        """A fetched row: through the stages, then written."""
        if self.direct:
            self._sink(row)
            return
        await self._room.acquire()
        task = asyncio.get_running_loop().create_task(self._through(row))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _through(self, row: ResultRow) -> None:
        try:
            for stage in self._stages:
                row = await stage.process(row)
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
