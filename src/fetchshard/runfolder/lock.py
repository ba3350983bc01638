"""One process per rank: an exclusive lock the operating system releases when its holder dies.

The lock is a POSIX record lock (``fcntl``), the kind SQLite itself relies on, so it holds
across hosts on NFS and Lustre wherever SQLite's does; there is no PID file to guess about.
Its file holds who took it (:class:`LockHolder`), for the message a second process shows.
POSIX locks belong to the process and end when it closes any descriptor of the file, so
nothing else in a rank opens a lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from fetchshard.errors import RankLockedError
from fetchshard.runfolder.documents import Document

POLL = 0.25  # seconds between two tries while waiting for a lock


@dataclass(frozen=True, kw_only=True)
class LockHolder(Document):
    """Who holds a rank's lock, written into the lock file once it is taken."""

    KIND: ClassVar[str] = "lock"
    VERSION: ClassVar[int] = 1
    _COMPACT: ClassVar[bool] = True

    rank: int
    host: str
    pid: int
    since: float

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"held by pid {self.pid} on {self.host} since {since}"


def _try_lock(fd: int) -> bool:
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # EACCES or EAGAIN: another process holds it
        return False
    return True


def holder_of(path: Path) -> str:
    """Who holds the lock at ``path``, as a message says it."""
    try:
        data = path.read_bytes()
        holder = LockHolder.from_bytes(data, path) if data.strip() else None
    except Exception:  # the holder may be writing it right now
        holder = None
    return holder.describe() if holder is not None else "held by another process"


@contextlib.contextmanager
def rank_lock(
    path: Path,
    rank: int,
    *,
    wait: float,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[LockHolder]:
    """Hold rank ``rank``'s lock for the block; wait up to ``wait`` seconds for it, then raise
    :class:`RankLockedError` (nothing else touched)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        told = False
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                raise RankLockedError(
                    f"rank {rank} of {path.parent.parent} is {holder_of(path)}: is it still "
                    f"running? (waited {wait:g}s, run.lock_wait)"
                )
            if not told and on_wait is not None:
                on_wait(f"rank {rank} is {holder_of(path)}; waiting up to {wait:g}s for it")
                told = True
            time.sleep(POLL)
        holder = LockHolder(
            rank=rank, host=socket.gethostname(), pid=os.getpid(), since=time.time()
        )
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.to_bytes(), 0)
        yield holder
    finally:
        os.close(fd)  # releases the lock (the OS does the same if we die)


# struct flock (fcntl(2)): l_type, l_whence, l_start, l_len, l_pid, with C's padding.
_FLOCK = "hhqqixxxx"


def is_locked(path: Path) -> bool:
    """Whether some process holds the lock at ``path`` now (for merge and report).

    It asks (F_GETLK) rather than tries: a probe that took the lock for a moment made every
    other prober see it held (four merge processes, one saw a finished rank "still
    running")."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        query = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, query)
        return bool(struct.unpack(_FLOCK, answer)[0] != fcntl.F_UNLCK)
    finally:
        os.close(fd)
