"""Generations: the same run over another number of ranks, without fetching anything twice.

A run folder holds one or more generations. Generation 0 is the run as it began (``run.json``
records its world size); running the same command with another world size begins
generation g+1 (``gen-000g/generation.json``, :class:`GenerationManifest`) once every rank of
generation g is stopped. Its ranks plan only the leftover of generation g (leftover.py) and
spread it over the new world size; every committed row stays where it is.

Who may run, decided from files alone:

- :func:`enter_generation`: a rank whose world size is the current generation's joins it;
  another world size (or ``--retry-failed`` on a run that has generations) begins the next
  one, after waiting ``run.lock_wait`` for the current generation's ranks to stop (one line
  naming the rank that still runs, exit 2, otherwise). Its manifest is created once: the
  first rank to write it wins, the others read it.
- :func:`check_fence`: called with the rank's lock held; a rank whose generation is no longer
  the newest (it chose it before the next one began) refuses, having written nothing.

Why that is enough: a new generation's rank writes the manifest and only then (before it
plans anything, leftover.plan_generation_rank) checks again that every rank of the one before
is stopped; a rank takes its lock and only then reads the manifests. So an older rank either
sees the new manifest and refuses, or holds its lock when the new rank checks, which waits
for it and refuses. The first check, before the manifest, only spares the folder a generation
that cannot begin yet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fetchshard.config import Config
from fetchshard.errors import GenerationError, RunMismatchError
from fetchshard.planning.fingerprint import difference, fingerprint
from fetchshard.runfolder.documents import GenerationManifest, RunManifest
from fetchshard.runfolder.generations import Generation, read_generations
from fetchshard.runfolder.layout import GenerationPaths, RunPaths
from fetchshard.runfolder.lock import POLL, holder_of, is_locked
from fetchshard.runfolder.storage import LOCAL, Storage

log = logging.getLogger(__name__)

# What may differ between the generations of one run: the rest of the fingerprint may not.
_PER_GENERATION = ("world_size", "plan", "generation")
_TRIES = 5  # generations begun by others while this rank chose (each one is checked again)


def generation_fingerprint(fp: Mapping[str, Any], generation: int) -> dict[str, Any]:
    """A rank's ledger fingerprint in ``generation`` (0: the run's own)."""
    return dict(fp) if generation == 0 else {**fp, "generation": generation}


def check_same_run(root: Path, fp: Mapping[str, Any]) -> None:
    """Refuse a folder holding another run, whatever the world size (RunMismatchError)."""
    run = RunManifest.read(RunPaths(root).run_json)
    if run is None:
        return
    what = difference(_shared(run.fingerprint), _shared(fp))
    if what is not None:
        raise RunMismatchError(
            f"{root} holds a different run ({what}); rerun with --restart to discard it and "
            "start over, or choose another output folder"
        )


def _shared(fp: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fp.items() if k not in _PER_GENERATION}


def uses_input_plan(root: Path, world_size: int) -> bool:
    """Whether ranks of ``world_size`` plan from the input (or a plan step): generation 0,
    and no later generation begun or about to begin."""
    generations = read_generations(root)
    return not generations or generations == [Generation(0, world_size)]


def enter_generation(
    root: Path,
    world_size: int,
    retry_failed: tuple[str, ...],
    *,
    lock_wait: float,
    on_wait: Callable[[str], None] | None = None,
    storage: Storage = LOCAL,
) -> tuple[list[Generation], Generation]:
    """The generations so far and the one a rank of ``world_size`` ranks belongs to,
    beginning it if it must (see the module docstring)."""
    retry = retry_failed or None
    for _ in range(_TRIES):
        generations = read_generations(root)
        if not generations:
            first = Generation(0, world_size)
            return [first], first
        current = generations[-1]
        if not _begins_another(root, generations, world_size, retry):
            return generations, current
        wait_stopped(root, current, lock_wait=lock_wait, on_wait=on_wait, joining=world_size)
        manifest = GenerationManifest(
            generation=current.number + 1,
            world_size=world_size,
            previous_world_size=current.world_size,
            retry_failed=None if retry is None else list(retry),
            began_at=time.time(),
        )
        if storage.create(GenerationPaths(root, current.number + 1).manifest, manifest.to_bytes()):
            log.info(
                "generation %d began: %d ranks take over what the %d of generation %d left",
                manifest.generation,
                world_size,
                current.world_size,
                current.number,
            )
    raise GenerationError(f"{root}: generations keep beginning under this rank; rerun it")


def _begins_another(
    root: Path, generations: list[Generation], world_size: int, retry: tuple[str, ...] | None
) -> bool:
    current = generations[-1]
    if current.world_size != world_size:
        return True
    if retry is None or len(generations) == 1:
        return False  # resume it (a first generation retries its failures in place)
    # --retry-failed on a run of several generations: failures may sit in any of them, so a
    # new generation takes them up, unless the current one began so and has work left.
    return current.retry_failed != retry or generation_complete(root, current)


def join_generation(
    config: Config,
    files: list[Path],
    world_size: int,
    on_wait: Callable[[str], None] | None = None,
    *,
    storage: Storage = LOCAL,
) -> tuple[list[Generation], Generation]:
    """A rank's (or a launcher's) way in: another run's folder refused, then
    :func:`enter_generation` with the run's options (``storage``: the run's, which publishes
    a new generation's manifest where the run's data is)."""
    root = config.output.root
    check_same_run(root, fingerprint(config, files, world_size))
    return enter_generation(
        root,
        world_size,
        config.run.retry_failed,
        lock_wait=config.run.lock_wait,
        on_wait=on_wait,
        storage=storage,
    )


def generation_complete(root: Path, generation: Generation) -> bool:
    paths = RunPaths(root, generation.number)
    return all(paths.done(r).exists() for r in range(generation.world_size))


def wait_stopped(
    root: Path,
    generation: Generation,
    *,
    lock_wait: float,
    on_wait: Callable[[str], None] | None = None,
    joining: int | None = None,
) -> None:
    """Wait up to ``lock_wait`` seconds for every rank of ``generation`` to be stopped (its
    lock free); raise GenerationError naming one still running otherwise."""
    paths = RunPaths(root, generation.number)
    held = list(range(generation.world_size))
    deadline = time.monotonic() + lock_wait
    told = False
    while True:
        held = [r for r in held if is_locked(paths.lock(r))]
        if not held:
            return
        rank = held[0]
        running = (
            f"rank {rank} of generation {generation.number} ({generation.world_size} ranks) is "
            f"{holder_of(paths.lock(rank))}"
        )
        if time.monotonic() >= deadline:
            others = f" (and {len(held) - 1} more)" if len(held) > 1 else ""
            asked = f" with {joining} ranks" if joining is not None else ""
            raise GenerationError(
                f"{root}: {running}{others}: stop every rank of generation "
                f"{generation.number} before running{asked} (waited {lock_wait:g}s, "
                "run.lock_wait)"
            )
        if not told and on_wait is not None:
            on_wait(f"{running}; waiting up to {lock_wait:g}s for it to stop")
            told = True
        time.sleep(POLL)


def check_fence(root: Path, generation: Generation) -> None:
    """With the rank's lock held: refuse when a newer generation than the rank's began."""
    newest = read_generations(root)[-1:]
    if newest and newest[0].number > generation.number:
        latest = newest[0]
        raise GenerationError(
            f"{root}: generation {latest.number} ({latest.world_size} ranks) began after this "
            f"rank of generation {generation.number} ({generation.world_size} ranks) started; "
            f"rerun with {latest.world_size} ranks to join it"
        )
