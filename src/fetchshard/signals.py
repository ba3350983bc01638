"""Stop signals that arrive before a rank is ready to handle them.

A rank installs its stop handlers only after its imports and input checks (~1 s, more on a
loaded node). Until then SIGTERM or a batch system's ``--signal=USR1`` would kill it (exit 138),
and the job templates do not resubmit after that. So the entry point holds them from its first
line, and the rank replays what it held once its own handlers are in place.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from types import FrameType

from fetchshard.environment import LAUNCHER_PID

HELD = (signal.SIGTERM, signal.SIGUSR1)
_pending: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _pending.append(signum)


def hold() -> None:
    """Record SIGTERM and SIGUSR1 instead of dying of them (main thread only); one that
    arrived blocked (a ``--ranks`` launcher starts its ranks with them blocked) is recorded
    now."""
    for sig in HELD:
        signal.signal(sig, _remember)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)


def ignore_on_exit() -> None:
    """The command is over: block the stop signals for the rest of the process's life. While
    Python shuts down it puts the default handlers back, so a stop that arrives then (the
    ``--ranks`` launcher forwarding one to a rank that has just finished) would kill the
    process (exit -15) instead of letting it exit with its own code."""
    signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, *HELD))


@contextlib.contextmanager
def blocked() -> Iterator[None]:
    """Block the stop signals for the block (a child started in it inherits them blocked,
    so that one forwarded before its :func:`hold` waits for it instead of killing it)."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def take_pending() -> list[int]:
    """The signals held so far, oldest first; they are forgotten."""
    taken = _pending[:]
    _pending.clear()
    return taken


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_launcher(environ: Mapping[str, str]) -> None:
    """In a rank started by ``--ranks``: get SIGTERM when the launcher dies, however it dies
    (SIGKILL included), and stop as on any SIGTERM (commit, exit 75). Linux only."""
    raw = environ.get(LAUNCHER_PID)
    if not raw or not raw.isdigit() or not sys.platform.startswith("linux"):
        return
    import ctypes  # only in a child of --ranks

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        return
    if os.getppid() != int(raw):  # the launcher died before we asked
        os.kill(os.getpid(), signal.SIGTERM)
