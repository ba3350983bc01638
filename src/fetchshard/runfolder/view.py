"""A read-only view of an output folder, for another process on any host (merge, report).

It reads the documents and, for ranks asked about, their ledgers through read-only SQLite
connections; it never writes, so it may look at a folder whose ranks are running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from fetchshard.errors import RunFolderError
from fetchshard.ledger import LedgerSummary, read_summary, read_superseded
from fetchshard.runfolder.documents import DoneMarker, ProgressSnapshot, RankStats, RunManifest
from fetchshard.runfolder.generations import Generation, read_generations
from fetchshard.runfolder.layout import RunPaths, find_run_root
from fetchshard.runfolder.lock import is_locked
from fetchshard.runfolder.storage import LOCAL, Storage


@dataclass(frozen=True)
class RankView:
    """What one rank left in the folder, read when first asked for."""

    paths: RunPaths
    rank: int
    # Read from a bucket's copy: no lock to probe, the progress document's age tells.
    remote: bool = False
    # Of a generation a later one took over: its ranks had stopped before it began.
    ended: bool = False

    @cached_property
    def done(self) -> DoneMarker | None:
        return DoneMarker.read(self.paths.done(self.rank))

    @cached_property
    def stats(self) -> RankStats | None:
        return RankStats.read(self.paths.stats(self.rank))

    @cached_property
    def progress(self) -> ProgressSnapshot | None:
        return ProgressSnapshot.read(self.paths.progress(self.rank))

    @property
    def running(self) -> bool:
        """Whether a process holds the rank's lock now (a rank not done and not running has
        stopped or died). In a copy of a bucket's run: one whose last progress document
        says it is working and is younger than three of its intervals."""
        if self.ended:
            return False
        if not self.remote:
            return is_locked(self.paths.lock(self.rank))
        progress = self.progress
        if progress is None or progress.state not in _WORKING:
            return False
        return time.time() - progress.updated_at < 3 * progress.interval + _STALE_SLACK

    @property
    def started(self) -> bool:
        return self.paths.ledger(self.rank).exists() or self.paths.progress(self.rank).exists()

    @property
    def state(self) -> str:
        """``done``, ``not started``, else the state of its last snapshot (``planning``,
        ``fetching``, ``interrupted``...); whether a ``fetching`` rank is still alive is for
        :attr:`running` to say."""
        if self.done is not None:
            return "done"
        if self.progress is not None:
            return self.progress.state
        return "started" if self.started else "not started"

    def ledger(self) -> LedgerSummary | None:
        """Counts and committed parts from the rank's ledger (read-only), if it has one."""
        path = self.paths.ledger(self.rank)
        return read_summary(path) if path.exists() else None

    def superseded(self) -> dict[int, np.ndarray]:
        """Part -> ids of the rows in it that are no longer current (after --retry-failed)."""
        path = self.paths.ledger(self.rank)
        return read_superseded(path) if path.exists() else {}

    def part_files(self) -> list[Path]:
        """The committed parts, as the ledger records them, in part order."""
        summary = self.ledger()
        if summary is None:
            return []
        return [self.paths.part(self.rank, p.part) for p in summary.parts]


_WORKING = frozenset({"starting", "planning", "fetching"})
_STALE_SLACK = 10.0  # seconds: a progress document's put may lag its interval


class RunFolder:
    """An output folder as written by ``fetchshard run``: its generations, and the ranks of
    the current (newest) one. ``storage``: where the parts are published (a bucket's run:
    ``root`` is a local copy of its documents and ledger snapshots)."""

    def __init__(
        self, root: Path, *, storage: Storage = LOCAL, location: str | None = None
    ) -> None:
        self.storage = storage
        self.location = location or str(find_run_root(root))  # as the user names it
        self.remote = not storage.local
        self._published: dict[Path, dict[str, int]] = {}
        root = find_run_root(root)
        if not root.is_dir():
            raise RunFolderError(f"{root} is not a folder")
        manifest = RunManifest.read(RunPaths(root).run_json)
        if manifest is None:
            raise RunFolderError(f"{root} is not a fetchshard output folder (no run.json)")
        self.manifest = manifest
        self.generations = read_generations(root)
        self.current = self.generations[-1]
        self.paths = RunPaths(root, self.current.number)  # the current generation's

    @property
    def world_size(self) -> int:
        """The current generation's."""
        return self.current.world_size

    def rank(self, rank: int) -> RankView:
        return RankView(self.paths, rank, self.remote)

    def ranks(self) -> list[RankView]:
        """Every rank of the current generation, in order."""
        return [self.rank(r) for r in range(self.world_size)]

    def generation_ranks(self, generation: Generation) -> list[RankView]:
        """Every rank of ``generation``, in order."""
        paths = self.paths.of_generation(generation.number)
        ended = generation != self.current
        return [RankView(paths, r, self.remote, ended) for r in range(generation.world_size)]

    def part_exists(self, path: Path) -> bool:
        """Whether the committed part ``path`` is where it was published."""
        if not self.remote:
            return path.exists()
        folder = path.parent
        if folder not in self._published:
            self._published[folder] = self.storage.published(folder)
        return path.name in self._published[folder]

    def strays(self) -> list[int]:
        """Ranks with files in the folder beyond the world size (of an earlier run)."""
        return sorted(r for r in self.paths.ranks_present() if r >= self.world_size)

    def not_done(self) -> list[int]:
        return [view.rank for view in self.ranks() if view.done is None]
