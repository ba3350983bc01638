"""``--ranks N``: N local rank processes started through the same ``fetchshard run`` path."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from fetchshard.environment import (
    CHILD,
    CHILD_COMMAND,
    CHILD_OVERRIDES,
    CHILD_STDERR_LEVEL,
    CPU_SHARE,
    LAUNCHER_PID,
)
from fetchshard.errors import EXIT_INTERRUPTED, EXIT_OK, ConfigError, RankFailedError
from fetchshard.ranks import cpus_available
from fetchshard.signals import blocked, take_pending

log = logging.getLogger(__name__)

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
# What each rank decides for itself, not taken from the launcher's command line.
_PER_RANK = ("run.ranks", "run.rank", "run.world_size")


def inherited_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The launcher's command-line overrides, in a rank it started (else none)."""
    raw = environ.get(CHILD_OVERRIDES)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{CHILD_OVERRIDES} is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{CHILD_OVERRIDES} is not a JSON object")
    return data


def inherited_command(environ: Mapping[str, str]) -> list[str] | None:
    """The command line its launcher recorded, in a rank it started (else None)."""
    raw = environ.get(CHILD_COMMAND)
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{CHILD_COMMAND} is not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigError(f"{CHILD_COMMAND} is not a JSON list")
    return [str(word) for word in data]


def launch_ranks(
    config_file: Path | None,
    overrides: Mapping[str, Any],
    world_size: int,
    *,
    ranks: Sequence[int] | None = None,
    output: Path | None = None,
    interactive: bool = False,
    command: str = "run",
    recorded: Sequence[str] = (),
) -> int:
    """Start ranks 0..N-1 (or only ``ranks`` of them) as ``python -m fetchshard COMMAND
    [CONFIG] --rank i --world-size N``, each given the launcher's ``overrides`` as data (JSON
    in the environment), and ``recorded``, the launcher's command line, to record as its own.

    Signals the launcher receives are forwarded to every rank (each in its own session, so a
    terminal's Ctrl-C reaches a rank once, through us); if the launcher dies, even of SIGKILL,
    each rank gets SIGTERM from the kernel and stops as on any SIGTERM. Returns 0 when every
    rank completed, 75 when some were interrupted; raises :class:`RankFailedError` when any
    failed.
    """
    shared = {k: v for k, v in overrides.items() if k not in _PER_RANK}
    started = list(range(world_size) if ranks is None else ranks)
    head = [sys.executable, "-m", "fetchshard", command]
    if config_file is not None:
        head.append(str(config_file))
    env = {
        CHILD_OVERRIDES: json.dumps(shared),
        CPU_SHARE: str(max(1, cpus_available(os.environ) // len(started))),
    }
    if recorded:
        env[CHILD_COMMAND] = json.dumps(list(recorded))
    commands = [
        [*head, "--ranks", "1", "--rank", str(r), "--world-size", str(world_size)] for r in started
    ]
    if output is None:
        codes = start_ranks(commands, env)
    else:
        from fetchshard.reporting.live import JobProgress

        if interactive:
            env[CHILD_STDERR_LEVEL] = "warning"  # their info lines would break the bar
        with JobProgress(output, world_size, bar=interactive) as progress:
            codes = start_ranks(commands, env, tick=progress.update)
    failed = [
        (r, c) for r, c in zip(started, codes, strict=True) if c not in (EXIT_OK, EXIT_INTERRUPTED)
    ]
    if failed:
        listed = ", ".join(f"rank {r} exited {c}" for r, c in failed)
        raise RankFailedError(f"{len(failed)} of {len(started)} ranks failed: {listed}")
    return EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else EXIT_OK


def start_ranks(
    commands: list[list[str]],
    extra_env: Mapping[str, str],
    *,
    tick: Callable[[], None] | None = None,
    every: float = 1.0,
) -> list[int]:
    """Run one local process per command, each in its own session, and wait for them all
    (calling ``tick`` every ``every`` seconds meanwhile); return their exit codes. Signals
    the launcher receives are forwarded to each; if the launcher dies (SIGKILL included)
    each gets SIGTERM from the kernel."""
    env = {
        **os.environ,
        **extra_env,
        CHILD: "1",
        LAUNCHER_PID: str(os.getpid()),  # each rank ends with us (signals.die_with_launcher)
    }
    procs: list[subprocess.Popen[bytes]] = []
    received: list[int] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in _FORWARDED}
    # A stop held since the launcher's first line (signals.hold), before it could forward one:
    # no rank is started, the job is interrupted.
    received += take_pending()
    try:
        for cmd in commands:
            if received:
                break
            # Each rank starts with the stop signals blocked until its own hold(): one
            # forwarded meanwhile waits for it rather than killing it (exit -15, not 75).
            with blocked():
                procs.append(subprocess.Popen(cmd, env=env, start_new_session=True))
        if not procs:
            log.warning("stopped before any rank started (signal %s)", received[0])
            return [EXIT_INTERRUPTED] * len(commands)
        log.info("started %d local ranks: pids %s", len(procs), [p.pid for p in procs])
        for proc in procs:
            # A signal interrupts the wait, runs ``forward`` and the wait goes on (PEP 475).
            while True:
                try:
                    proc.wait(timeout=every if tick else None)
                    break
                except subprocess.TimeoutExpired:
                    if tick:
                        tick()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        for proc in procs:
            if proc.poll() is None:  # only if we are unwinding from an error of our own
                proc.terminate()
                proc.wait()
    # Ranks never started (a stop came first) are interrupted, not failed.
    return [p.returncode for p in procs] + [EXIT_INTERRUPTED] * (len(commands) - len(procs))
