"""Which generations a run folder holds (planning/generations.py decides who joins which)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fetchshard.errors import select_kinds
from fetchshard.runfolder.documents import GenerationManifest, RunManifest
from fetchshard.runfolder.layout import GenerationPaths, RunPaths, generations_present


@dataclass(frozen=True, slots=True)
class Generation:
    """One generation of a run: its number, its world size, the failures it takes up."""

    number: int
    world_size: int
    # --retry-failed's words it began with (it plans the chosen failures of the generations
    # before it too); None: it began without them.
    retry_failed: tuple[str, ...] | None = None

    def retry_kinds(self) -> frozenset[str] | None:
        """The error kinds it takes up again (None: every kind); only if retry_failed."""
        return select_kinds(self.retry_failed or ())


def read_generations(root: Path) -> list[Generation]:
    """The run's generations in order ([] when the folder holds no run yet)."""
    run = RunManifest.read(RunPaths(root).run_json)
    if run is None:
        return []
    found = [Generation(0, run.world_size)]
    for number in generations_present(root):
        manifest = GenerationManifest.read(GenerationPaths(root, number).manifest)
        if number != len(found) or manifest is None:
            break  # a folder whose manifest never landed: that generation has not begun
        retry = manifest.retry_failed
        found.append(
            Generation(number, manifest.world_size, None if retry is None else tuple(retry))
        )
    return found


def leftover_sources(generations: list[Generation], number: int) -> list[tuple[int, int]]:
    """(generation, rank) of every rank whose leftover generation ``number`` takes over, in
    slice order: each rank of the generation before, then, if it began with --retry-failed,
    each rank of the older ones (their failures)."""
    previous = generations[number - 1]
    found = [(previous.number, r) for r in range(previous.world_size)]
    if generations[number].retry_failed is not None:
        older = generations[: number - 1]
        found += [(g.number, r) for g in older for r in range(g.world_size)]
    return found
