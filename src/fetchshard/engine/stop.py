"""How a rank stops: SIGINT, SIGTERM or SIGUSR1 set a flag; a second one skips the grace."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Iterator

from fetchshard.signals import take_pending

log = logging.getLogger("fetchshard")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


class StopFlag:
    """Set by a stop signal; ``callback(count)`` runs at each one (the job's reaction)."""

    def __init__(self) -> None:
        self.count = 0
        self.callback: Callable[[int], None] | None = None

    def __call__(self, signum: int, _frame: object = None) -> None:
        self.count += 1
        log.warning(
            "received %s: stopping, committing what is done (rerun to resume)",
            signal.Signals(signum).name,
        )
        if self.callback is not None:
            self.callback(self.count)

    def __bool__(self) -> bool:
        return self.count > 0


@contextlib.contextmanager
def stop_signals(stop: StopFlag) -> Iterator[None]:
    """Route the stop signals to ``stop`` for the block (with those held since start-up)."""
    previous = {sig: signal.signal(sig, stop) for sig in STOP_SIGNALS}
    for signum in take_pending():  # arrived while the rank was starting
        stop(signum)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def loop_stop_signals(loop: asyncio.AbstractEventLoop, stop: StopFlag) -> Iterator[None]:
    """The same inside the event loop (a handler that runs as a loop callback)."""
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop, sig)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)  # resets it to the default action...
            signal.signal(sig, stop)  # ...which would kill the rank before it is done
