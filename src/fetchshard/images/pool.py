"""Image work in processes beside the event loop: an awaitable call per image.

Processes, not threads: a decode holds the GIL for part of its time, and the event loop must
never wait on an image. Workers are spawned (not forked from a process with threads), set up
once with the run's :class:`ImageOptions`, and started on first use inside the running loop.
A worker that dies (a crash in a C decoder) breaks the pool: it is replaced, the images it
held are tried once more, and one that breaks the new pool too fails as ``decode``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from fetchshard.images.transform import DECODE, ImageOptions, ImageResult, process_image

_options: ImageOptions | None = None  # a worker's own, from _start_worker


def _start_worker(options: ImageOptions) -> None:
    from fetchshard.images.transform import setup_worker

    global _options
    _options = options
    setup_worker()


def _work(data: bytes) -> ImageResult:
    assert _options is not None, "worker not set up"
    return process_image(data, _options)


class ImagePool:
    """``workers`` processes that run :func:`process_image` with ``options``."""

    def __init__(self, options: ImageOptions, workers: int) -> None:
        self.options = options
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self.replaced = 0  # pools replaced after a worker died

    def _new(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(self.options,),
        )

    async def run(self, data: bytes) -> ImageResult:
        """One image's result; the event loop goes on meanwhile."""
        for _attempt in (1, 2):
            executor = self._executor
            if executor is None:
                executor = self._executor = self._new()
            try:
                return await asyncio.wrap_future(executor.submit(_work, data))
            except BrokenProcessPool:
                if self._executor is executor:  # the first to notice replaces it
                    self._executor = None
                    self.replaced += 1
                    executor.shutdown(wait=False, cancel_futures=True)
        return ImageResult(DECODE, "the image process died on this image (twice)")

    async def aclose(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: executor.shutdown(wait=True, cancel_futures=True)
            )
