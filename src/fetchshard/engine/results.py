"""What becomes of one fetched result: checked, decided, its file settled, its row written.

The job (job.py) fetches an item and hands its :class:`FetchResult` here, once per attempt:
the body is checked against what the item expects (whole and of its content type, the
input's hash, size and checksum, the minimum size), the retry decision is taken
(:func:`retry.decide`: write, retry after a delay, defer to the final pass), a body in a
``.part`` is placed or dropped, the host's scheduler hears the answer, and a terminal row is
counted and sent on to the stages and the part writer.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from fetchshard.clock import Clock
from fetchshard.config import Config
from fetchshard.engine.retry import WRITE, Action, decide
from fetchshard.engine.rows import result_row, retry_item
from fetchshard.engine.stages import Pipeline
from fetchshard.errors import ErrorKind
from fetchshard.hosts.scheduler import Scheduler
from fetchshard.hosts.slot import HostSlot
from fetchshard.http.content import content_problem, expected_file, expected_hash
from fetchshard.http.request import FetchResult
from fetchshard.http.sink import BodySink
from fetchshard.ledger import WorkItem
from fetchshard.output.files import FileSink, FileStore
from fetchshard.stats import Stats

log = logging.getLogger("fetchshard")
BAD_CONTENT = ErrorKind.BAD_CONTENT
HASH_MISMATCH = ErrorKind.HASH_MISMATCH
CHECKSUM_MISMATCH = ErrorKind.CHECKSUM_MISMATCH
TOO_SMALL = ErrorKind.TOO_SMALL
# A body that contradicts its response or the input's hash would come back the same; a file
# whose size or checksum is wrong, or that is suspiciously small, was perhaps cut: retried.
_FINAL_PROBLEMS = frozenset({BAD_CONTENT, HASH_MISMATCH})


class ResultHandler:
    """One fetched result's way to its row, or back to the queue (per URL: the checks, one
    decision, and the row; nothing else)."""

    def __init__(
        self,
        config: Config,
        extras: pa.Schema | None,
        stats: Stats,
        rows: Pipeline,
        clock: Clock,
        files: FileStore | None,
    ) -> None:
        self.fetch = config.fetch
        self.expected = expected_hash(config.input, extras)
        self.expected_file = expected_file(config.input, extras)
        self.stats = stats
        self.rows = rows
        self.clock = clock
        self.files = files
        self.deferred: list[WorkItem] = []  # transient failures set aside for the final pass

    def take_deferred(self) -> list[WorkItem]:
        """The items deferred since the last call."""
        deferred, self.deferred = self.deferred, []
        return deferred

    async def handle(
        self,
        scheduler: Scheduler,
        slot: HostSlot,
        item: WorkItem,
        url: str,
        result: FetchResult,
        sink: BodySink | None,
        *,
        final: bool,
    ) -> None:
        """``result`` of fetching ``item`` (at ``url``, from ``slot``'s host) into ``sink``;
        ``final``: in the final pass."""
        attempt = item.attempts + 1
        answered = kind = result.error_kind  # host health hears the answer, not the verdict
        problem, bad = self.check(item, result) if kind is None else (None, BAD_CONTENT)
        if problem is not None:
            result.error_kind, result.error_message, result.body = bad, problem, None
            kind = bad
        if problem is not None and bad in _FINAL_PROBLEMS:  # the same bytes would come again
            decision = WRITE
        else:
            decision = decide(kind, attempt, result.retry_after, final=final, config=self.fetch)
        if isinstance(sink, FileSink):
            await self._settle_file(item, url, result, sink, kind, decision.final_row)
        retry: WorkItem | None = None
        if decision.action is Action.RETRY:
            self.stats.retries += 1
            log.debug(
                "%s: %s, retry %d in %.2fs", url, result.error_message, attempt, decision.delay
            )
            retry = retry_item(item, attempt, self.clock.wall() + decision.delay, result)
        elif decision.action is Action.DEFER:
            self.deferred.append(retry_item(item, attempt, 0.0, result))
            self.stats.deferred += 1
        events = scheduler.done(
            slot,
            retry,
            decision.delay,
            kind=answered,
            status=result.http_status,
            retry_after=result.retry_after,
        )
        self.stats.count_host(
            events.rate_decreased, events.rate_increased, events.parked, events.died
        )
        throttled = kind is ErrorKind.HTTP_429 or result.http_status == 503
        self.stats.count_throttled(slot.host, events.parked_s, throttled)
        if decision.final_row:
            self.stats.count_row(
                kind.value if kind is not None else None,
                result.size,
                http_status=result.http_status,
                content_type=result.content_type,
                host=slot.host,
                url=url,
                message=result.error_message,
            )
            row = result_row(item, attempt, result, self.clock.wall(), kind, result.error_message)
            await self.rows.send(row, slot.host)

    def check(self, item: WorkItem, result: FetchResult) -> tuple[str | None, ErrorKind]:
        """Why a body that arrived whole is not the item's, and the kind of that failure."""
        head = result.body if result.body is not None else result.head
        problem = content_problem(result.content_type, head, result.http_status, result.size)
        if problem is not None and not self._empty_expected(item, result):
            return problem, BAD_CONTENT
        if self.expected is not None:
            problem = self.expected.mismatch(
                item.extras, result.body, result.sha256, result.digests
            )
            if problem is not None:
                return problem, HASH_MISMATCH
        if self.expected_file is not None:
            problem = self.expected_file.mismatch(
                item.extras, result.size, result.sha256, result.digests
            )
            if problem is not None:
                return problem, CHECKSUM_MISMATCH
        least = self.fetch.min_body_bytes
        if least and result.size is not None and result.size < least:
            return f"{result.size:,} bytes, below fetch.min_body_bytes ({least:,})", TOO_SMALL
        return None, BAD_CONTENT

    def _empty_expected(self, item: WorkItem, result: FetchResult) -> bool:
        """An empty body the input says is empty (a repo's empty file) is the right one."""
        expected = self.expected_file
        return result.size == 0 and expected is not None and expected.size(item.extras) == 0

    async def _settle_file(
        self,
        item: WorkItem,
        url: str,
        result: FetchResult,
        sink: FileSink,
        kind: ErrorKind | None,
        final: bool,
    ) -> None:
        """A body in a ``.part``: placed if good, dropped if it failed a check; an item that
        ends failed leaves no file (output/files.py)."""
        assert self.files is not None
        in_file = result.path is not None
        if in_file and kind is None:
            result.path = await self.files.place(sink)
        elif in_file:
            result.path = None
            await self.files.discard(sink)
        if kind is not None and final:
            await self.files.forget(item.item_id, url, sink.target)
