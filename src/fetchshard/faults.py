"""Test hook: crash this process at a named point of the commit protocol.

``_FETCHSHARD_FAULT=after_rename:2`` SIGKILLs the process right after part 2 is renamed and
before its ledger commit; ``plan_batch:3`` after the third planning batch is in the ledger;
``plan_step_batch:3`` after a plan step rank read its third batch, ``plan_step_spill:2``
after it spilled its second sorted run, ``plan_step_written:1`` after it published its
slice's files, before its done document; ``leftover_spill:2`` after a rank writing a
later generation's leftover slice spilled its second sorted run, ``leftover_written:1``
after it published the slice, before its done document; ``range_counts_written:2`` after a
run rank published the counts of the second host-hash range it sums, before their document;
``merge_data:2`` after the second data file's record is written, before its rename;
``before_publish:2`` before part 2 is published (renamed, or put in a bucket),
``during_put:2`` halfway through sending the second upload of a run into a bucket;
``merge_upload:2`` after a merge into a bucket uploaded its second object;
``image:2`` kills each image worker process (``images.pool: processes``) at its second image;
``enospc:5`` makes the fifth and every later write of a body's file fail as a full disk would
(where a test cannot mount a small filesystem). The tests use it to hit windows a timed
``kill -9`` cannot aim at. Unset in normal runs.
"""

from __future__ import annotations

import errno
import itertools
import os
import signal

from fetchshard.environment import FAULT


def _parse() -> tuple[str, int] | None:
    raw = os.environ.get(FAULT, "")
    point, sep, count = raw.partition(":")
    if not sep or not count.isdigit():
        return None
    return point, int(count)


_FAULT = _parse()


def fault_armed(point: str, count: int) -> bool:
    """Whether the configured fault is ``point`` at ``count`` (to prepare for it)."""
    return _FAULT is not None and (point, count) == _FAULT


def crash_point(point: str, count: int) -> None:
    """SIGKILL ourselves if the configured fault is ``point`` at ``count``."""
    if _FAULT is not None and (point, count) == _FAULT:
        os.kill(os.getpid(), signal.SIGKILL)


_calls = itertools.count(1)


def fault_after(point: str) -> None:
    """Raise ENOSPC from the configured ``enospc:N`` write on (``point`` is the write kind)."""
    if _FAULT is not None and _FAULT[0] == "enospc" and next(_calls) >= _FAULT[1]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), point)
