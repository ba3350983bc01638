"""Image work beside the event loop: an awaitable call per image, in threads or processes.

Threads (the default) cost nothing to hand an image to: Pillow releases the GIL while it
decodes, resizes and encodes, so the workers run on other cores while the loop fetches; the
GIL is held only for each image's few Python steps (the loop's lag stays in milliseconds,
``engine.eventloop.LagProbe`` measures it). Processes isolate a decoder that crashes: the
image bytes and results are copied between processes, which costs the loop's process about
half a millisecond per image (benchmarks/README.md). Workers start on first use inside the
running loop. A process that dies breaks its pool: the pool is replaced, the images it held
are tried once more, and one that breaks the new pool too fails as ``decode``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from fetchshard.config import ImagesConfig
from fetchshard.faults import crash_point
from fetchshard.images.transform import DECODE, ImageResult, process_image, setup

log = logging.getLogger("fetchshard.images")
THREADS, PROCESSES = "threads", "processes"
_config: ImagesConfig | None = None  # a worker process's own, from _start_process
_done = 0  # images this worker process has taken (the crash test hook counts them)


# How much lower than the event loop's a worker's CPU priority is (nice): where the image
# workers fill every core, the loop still runs as soon as a socket is ready (the deadlines
# test's loop lag, 2 workers on 2 cores: 94-306 ms at the same priority, 33-117 ms at +10);
# with a core to spare, nice changes nothing.
NICER = 10  # added to the loop's nice, at most 19


def _lower_priority() -> None:
    """Lower this thread's CPU priority (on Linux, a thread's own) below the loop's."""
    me = threading.get_native_id()  # a worker starts at its creator's, the loop's
    with contextlib.suppress(AttributeError, OSError):  # not Linux, or refused: unchanged
        os.setpriority(os.PRIO_PROCESS, me, min(os.getpriority(os.PRIO_PROCESS, me) + NICER, 19))


def _start_process(config: ImagesConfig) -> None:
    global _config
    _config = config
    _lower_priority()
    setup()


def _in_process(data: bytes) -> ImageResult:
    global _done
    assert _config is not None, "worker not set up"
    _done += 1
    crash_point("image", _done)  # tests: a worker that dies as a crashing decoder would
    return process_image(data, _config)


class ImagePool:
    """``workers`` threads or processes that run :func:`process_image` with ``config`` (the
    images section: frozen, sent once to each worker process)."""

    def __init__(self, config: ImagesConfig, workers: int, kind: str = THREADS) -> None:
        if kind not in (THREADS, PROCESSES):
            raise ValueError(f"unknown pool kind {kind!r}")
        self.config = config
        self.workers = workers
        self.kind = kind
        self._executor: Executor | None = None
        self.replaced = 0  # process pools replaced after a worker died

    def _new(self) -> Executor:
        if self.kind == THREADS:
            setup()
            return ThreadPoolExecutor(
                self.workers, thread_name_prefix="fetchshard-image", initializer=_lower_priority
            )
        return ProcessPoolExecutor(
            max_workers=self.workers,
            # spawned, not forked: the rank has threads (the writer's, the resolver's)
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_process,
            initargs=(self.config,),
        )

    async def run(self, data: bytes) -> ImageResult:
        """One image's result; the event loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        for _attempt in (1, 2):
            executor = self._executor
            if executor is None:
                executor = self._executor = self._new()
            try:
                if self.kind == THREADS:
                    return await loop.run_in_executor(executor, process_image, data, self.config)
                return await loop.run_in_executor(executor, _in_process, data)
            except BrokenProcessPool:
                if self._executor is executor:  # the first to notice replaces it
                    self._executor = None
                    self.replaced += 1
                    executor.shutdown(wait=False, cancel_futures=True)
                    log.warning(
                        "an image process died (%d so far): new processes; the images it "
                        "held are tried once more",
                        self.replaced,
                    )
        return ImageResult(DECODE, "the image process died on this image (twice)")

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: executor.shutdown(wait=True, cancel_futures=True)
            )
