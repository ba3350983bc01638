"""images/pool.py: image work in real threads or processes, below the event loop's priority."""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

import pytest

from fetchshard.config import ImagesConfig
from fetchshard.images.pool import NICER, PROCESSES, THREADS, ImagePool
from server.images import corpus_bytes

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


@pytest.mark.parametrize("kind", [THREADS, PROCESSES])
async def test_workers_run_nicer_than_the_loop(kind: str) -> None:
    pool = ImagePool(ImagesConfig(mode="verify"), workers=2, kind=kind)
    loop_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    try:
        result = await pool.run(corpus_bytes("baseline.jpg"))
        assert result.kind is None and result.width == 320
        if kind == THREADS:
            workers = [t for t in threading.enumerate() if t.name.startswith("fetchshard-image")]
            ids = [t.native_id for t in workers]
        else:
            executor = pool._executor
            assert isinstance(executor, ProcessPoolExecutor)
            ids = list(executor._processes)
        assert ids
        for native_id in ids:
            assert native_id is not None
            assert os.getpriority(os.PRIO_PROCESS, native_id) == min(loop_nice + NICER, 19)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_nice
    finally:
        await pool.aclose()
