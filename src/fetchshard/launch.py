"""``--ranks N``: N local rank processes started through the same ``fetchshard run`` path."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from fetchshard.errors import EXIT_INTERRUPTED, EXIT_OK, RankFailedError

log = logging.getLogger(__name__)

CHILD_ENV = "_FETCHSHARD_CHILD"
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


def launch_ranks(run_args: Sequence[str], world_size: int) -> int:
    """Start ranks 0..N-1 as ``python -m fetchshard run ARGS --rank i --world-size N``.

    Signals the launcher receives are forwarded to every rank (each in its own session, so a
    terminal's Ctrl-C reaches a rank once, through us). Returns 0 when every rank completed,
    75 when some were interrupted; raises :class:`RankFailedError` when any failed.
    """
    env = {**os.environ, CHILD_ENV: "1"}
    procs: list[subprocess.Popen[bytes]] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    try:
        for rank in range(world_size):
            cmd = [
                sys.executable,
                "-m",
                "fetchshard",
                "run",
                *run_args,
                "--ranks",
                "1",
                "--rank",
                str(rank),
                "--world-size",
                str(world_size),
            ]
            procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        log.info("started %d local ranks: pids %s", world_size, [p.pid for p in procs])
        for proc in procs:
            # A signal interrupts the wait, runs ``forward`` and the wait goes on (PEP 475).
            proc.wait()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        for proc in procs:
            if proc.poll() is None:  # only if we are unwinding from an error of our own
                proc.terminate()
                proc.wait()
    codes = [p.returncode for p in procs]
    failed = [(r, c) for r, c in enumerate(codes) if c not in (EXIT_OK, EXIT_INTERRUPTED)]
    if failed:
        listed = ", ".join(f"rank {r} exited {c}" for r, c in failed)
        raise RankFailedError(f"{len(failed)} of {world_size} ranks failed: {listed}")
    return EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else EXIT_OK
