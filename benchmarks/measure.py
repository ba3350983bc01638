"""Running one client as a measured process tree: wall time, CPU, RSS, timeout.

CPU comes from ``os.wait4()`` on the child: on Linux the rusage of a reaped child includes
every descendant that it (or its descendants) waited for, which covers rank processes,
multiprocessing pools and threads. A sampler thread also reads /proc every ~50 ms for the live
tree (the child's session, since it is started with ``start_new_session=True``): summed RSS
(peak of the tree), the largest single process's RSS, and last-seen CPU per process as a
cross-check of the wait4 figure (it misses each process's last < 50 ms, so it is a lower
bound). wait4's ru_maxrss is recorded but not used: it carries the harness's RSS from fork.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Measurement:
    wall_s: float
    exit_code: int | None  # negative: killed by that signal
    timed_out: bool
    cpu_user_s: float  # wait4, whole tree of waited-for processes
    cpu_sys_s: float
    cpu_sampled_s: float  # /proc samples, lower bound (see module doc)
    # ru_maxrss of wait4. Not a client figure: Linux keeps a process's RSS high-water mark
    # across exec, so it includes the harness's own RSS at fork (~140 MB) for every client.
    maxrss_wait4_mb: float
    peak_rss_tree_mb: float  # sampled: the largest sum over the live tree
    peak_rss_largest_mb: float  # sampled: the largest single process
    max_processes: int
    samples: int
    leftover_processes: int  # still in the client's session after it exited; killed
    marker_s: float | None = None  # seconds until ``stop_on_line`` appeared, if asked

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "cpu_s": round(self.cpu_s, 3)}


def _read_stat(pid: str) -> tuple[int, int, float] | None:
    """(ppid, session, utime+stime seconds) of one process, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    ppid, session = int(fields[1]), int(fields[3])
    cpu = (int(fields[11]) + int(fields[12])) / _TICKS
    return ppid, session, cpu


def _read_rss(pid: str) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


_Sampler = TypeVar("_Sampler", bound="PeriodicSampler")


class PeriodicSampler:
    """Calls ``sample()`` every ``interval`` s in a daemon thread, from ``start()`` until
    ``stop()`` (or until ``limit`` s have passed, if given); also a context manager.
    ``stop()`` waits ``join_timeout`` s at most for the thread."""

    def __init__(
        self, name: str, interval: float, limit: float | None = None, join_timeout: float = 5.0
    ) -> None:
        self.interval = interval
        self.limit = limit
        self.samples = 0
        self._join_timeout = join_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def sample(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._join_timeout)

    def __enter__(self: _Sampler) -> _Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        deadline = None if self.limit is None else time.monotonic() + self.limit
        while not self._stop.is_set() and (deadline is None or time.monotonic() < deadline):
            self.sample()
            self._stop.wait(self.interval)


class TreeSampler(PeriodicSampler):
    """Samples the process tree rooted at ``root`` (and its session) every ``interval``."""

    def __init__(self, root: int, interval: float = 0.05) -> None:
        super().__init__("tree-sampler", interval)
        self.root = root
        self.peak_tree = 0
        self.peak_largest = 0
        self.max_processes = 0
        self.cpu_last: dict[int, float] = {}
        self.members: set[int] = set()
        self.full_scan_every = 10

    def _scan(self) -> set[int]:
        """Every process of the client's session, and descendants that left it."""
        stats: dict[int, tuple[int, int, float]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _read_stat(entry)
                if st is not None:
                    stats[int(entry)] = st
        members = {pid for pid, (_, sid, _) in stats.items() if self.root in (sid, pid)}
        for _ in range(32):  # bounded: a tree deeper than 32 levels is not a client
            grown = {pid for pid, (ppid, _, _) in stats.items() if ppid in members} - members
            if not grown:
                break
            members |= grown
        return members

    def sample(self) -> None:
        # A full /proc scan costs the harness ~10 % of a core at 20 Hz, on a 2-core machine
        # shared with the client: new processes are looked for every 10th sample only.
        if self.samples % self.full_scan_every == 0:
            self.members = self._scan()
        total = largest = 0
        alive: set[int] = set()
        for pid in self.members:
            st = _read_stat(str(pid))
            if st is None or (self.root not in (st[1], pid) and st[0] not in self.members):
                continue  # gone (or its PID reused by a stranger)
            alive.add(pid)
            rss = _read_rss(str(pid))
            total += rss
            largest = max(largest, rss)
            self.cpu_last[pid] = st[2]
        self.members = alive
        self.peak_tree = max(self.peak_tree, total)
        self.peak_largest = max(self.peak_largest, largest)
        self.max_processes = max(self.max_processes, len(alive))
        self.samples += 1


def session_members(sid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _read_stat(entry)
            if st is not None and st[1] == sid:
                found.append(int(entry))
    return found


def session_cpu(sid: int) -> float:
    """CPU seconds (user+sys) used so far by the live processes of a session (the server)."""
    total = 0.0
    for pid in session_members(sid):
        st = _read_stat(str(pid))
        if st is not None:
            total += st[2]
    return total


def result_header(started_at: datetime.datetime) -> dict[str, Any]:
    """The first fields of a benchmark's result document: when it ran (``started_at`` to
    now), the command line and the machine."""
    return {
        "started": started_at.isoformat(timespec="seconds"),
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": [sys.executable, *sys.argv],
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
    }


def machine_busy_cpu() -> float:
    """CPU seconds all cores have spent busy since boot (/proc/stat), to see who else ran."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: everything but idle and iowait.
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / _TICKS


def evict_folder(folder: Path) -> None:
    """Drop a folder's files from the page cache (written back first), so that the next read
    of them is a cold one, without dropping every cache on the machine."""
    os.sync()
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the client's own process group, SIGKILL it after ``grace`` seconds."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def run_measured(
    cmd: list[str],
    *,
    timeout: float,
    stdout: BinaryIO | int | None = subprocess.DEVNULL,
    stderr: BinaryIO | int | None = subprocess.DEVNULL,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stop_on_line: re.Pattern[str] | None = None,
    stderr_sink: Callable[[str], None] | None = None,
) -> Measurement:
    """Run ``cmd`` in a new session, measure it, kill its group after ``timeout`` seconds.

    With ``stop_on_line``, stderr is read line by line; the first matching line records
    ``marker_s`` and ends the run (SIGTERM to the group): used to time planning alone."""
    if stop_on_line is not None:
        stderr = subprocess.PIPE
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        return _measure(proc, started, cmd, timeout, stop_on_line, stderr_sink)
    except BaseException:
        # Ctrl-C or a harness bug: the client is in its own session and would survive us.
        if proc.returncode is None:
            _kill_group(proc.pid, grace=5.0)
        raise


def _measure(
    proc: subprocess.Popen[bytes],
    started: float,
    cmd: list[str],
    timeout: float,
    stop_on_line: re.Pattern[str] | None,
    stderr_sink: Callable[[str], None] | None,
) -> Measurement:
    sampler = TreeSampler(proc.pid)
    sampler.start()
    marker: list[float] = []
    reader: threading.Thread | None = None
    if stop_on_line is not None:
        pattern = stop_on_line
        assert proc.stderr is not None
        pipe = proc.stderr

        def read_lines() -> None:
            for raw in pipe:
                line = raw.decode("utf-8", "replace")
                if stderr_sink is not None:
                    stderr_sink(line)
                if not marker and pattern.search(line):
                    marker.append(time.perf_counter() - started)
                    _kill_group(proc.pid, grace=15.0)

        reader = threading.Thread(target=read_lines, name="stderr-reader", daemon=True)
        reader.start()
    timed_out = False
    # wait4 in a thread so the main thread can enforce the timeout without polling wait4.
    result: list[tuple[int, int, Any]] = []
    waiter = threading.Thread(target=lambda: result.append(os.wait4(proc.pid, 0)), daemon=True)
    waiter.start()
    waiter.join(timeout)
    if waiter.is_alive():
        timed_out = True
        _kill_group(proc.pid, grace=10.0)
        waiter.join(30)
    wall = time.perf_counter() - started
    sampler.stop()
    if reader is not None:
        reader.join(timeout=5)
    if not result:
        raise RuntimeError(f"process {proc.pid} could not be reaped: {cmd[:3]}")
    _, status, usage = result[0]
    # Popen must not try to reap the PID again (it may be reused by then).
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.stderr is not None:
        proc.stderr.close()
    leftovers = session_members(proc.pid)
    if leftovers:
        # Orphans of the client would disturb the next run: its session is its own group.
        _kill_group(proc.pid, grace=5.0)
    cpu_sampled = sum(sampler.cpu_last.values())
    return Measurement(
        wall_s=wall,
        exit_code=proc.returncode,
        timed_out=timed_out,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        cpu_sampled_s=cpu_sampled,
        maxrss_wait4_mb=usage.ru_maxrss / 1024,
        peak_rss_tree_mb=sampler.peak_tree / 2**20,
        peak_rss_largest_mb=sampler.peak_largest / 2**20,
        max_processes=sampler.max_processes,
        samples=sampler.samples,
        leftover_processes=len(leftovers),
        marker_s=marker[0] if marker else None,
    )
