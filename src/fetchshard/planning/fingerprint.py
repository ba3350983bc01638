"""What guards a folder: the fingerprint of a run and of a plan, the one place two of them are
compared (:func:`difference`), and a rank's claim on a run folder or a plan folder.

A fingerprint is what must not change between a run and its resumption: the input files
(path, size, mtime), the options that decide the rows, the world size, the placement rule and
what the parts hold (images, bodies as files). ``run.json`` and each ledger record the run's;
``plan/plan.json`` the plan's (a part of it: what the slices depend on). The formats are
those of every earlier fetchshard: an older folder is still accepted
(tests/system/test_compat.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fetchshard import __version__
from fetchshard.config import Config
from fetchshard.errors import FetchshardError, PlanError, RunFolderError, RunMismatchError
from fetchshard.inputs import fingerprint_files
from fetchshard.planning.placement import ASSIGNMENT_VERSION, AUTO, is_counted
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.documents import PlanManifest, RunManifest
from fetchshard.runfolder.layout import (
    PlanPaths,
    RunPaths,
    generation_folder,
    generations_present,
)
from fetchshard.runfolder.storage import LOCAL, Storage

_NOT_FINGERPRINTED = ("workers", "queue_per_worker", "pool")  # how, not what


def fingerprint(
    config: Config, files: list[Path], world_size: int, *, planned: bool = False
) -> dict[str, Any]:
    """What must not change between a run and its resumption (``planned``: its ranks read
    a plan step's files, not the input)."""
    inp = config.input
    stages: dict[str, Any] = {}
    if config.images.mode != "off":  # what the parts hold; the pool's size may change
        images = dataclasses.asdict(config.images)
        stages["images"] = {k: v for k, v in images.items() if k not in _NOT_FINGERPRINTED}
    out = config.output
    if out.mode == "files" or out.body_file_above > 0:  # which bodies are files: the columns
        stages["files"] = {"mode": out.mode, "body_file_above": out.body_file_above}
    if planned:
        stages["plan"] = "step"
    return {
        **stages,
        "world_size": world_size,
        "partition": partition_fingerprint(config.partition.spread),
        "input": {
            "files": fingerprint_files(files),
            "format": inp.format,
            "url_column": inp.url_column,
            "id_column": inp.id_column,
            "extra_columns": list(inp.extra_columns) if inp.extra_columns is not None else None,
            "max_url_length": inp.max_url_length,
        },
    }


def partition_fingerprint(spread: int | str) -> dict[str, Any]:
    """The placement rule's part of the fingerprint (``partition``)."""
    if is_counted(spread):
        return {"spread": AUTO, "assignment": ASSIGNMENT_VERSION}
    return {"spread": spread}


_PLANNED_BY = ("world_size", "partition", "input")  # what a plan step's slices depend on


def plan_fingerprint(config: Config, files: list[Path], world_size: int) -> dict[str, Any]:
    """What a plan step's files were made for (``plan/plan.json``)."""
    whole = fingerprint(config, files, world_size)
    return {key: whole[key] for key in _PLANNED_BY}


def difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    """None when the recorded fingerprint ``old`` is ``new`` (of a run, or of a plan); else
    what differs, in a few words for an error message. Every comparison of two fingerprints
    is this one."""
    if old == new:
        return None
    if old.get("world_size") != new.get("world_size"):
        return f"world size {old.get('world_size')} -> {new.get('world_size')}"
    if old.get("plan") != new.get("plan"):
        return "planned with a plan step" if new.get("plan") else "planned without a plan step"
    if old.get("partition") != new.get("partition"):
        return f"partition {old.get('partition')} -> {new.get('partition')}"
    old_files = {f["path"]: f for f in old.get("input", {}).get("files", [])}
    new_files = {f["path"]: f for f in new.get("input", {}).get("files", [])}
    if old_files.keys() != new_files.keys():
        return "another input: a different set of input files"
    changed = [p for p in new_files if new_files[p] != old_files[p]]
    if changed:
        return f"another input: {changed[0]} has changed"
    if old.get("input") != new.get("input"):
        return "another input: different input options"
    for key, what in (("images", "the images section"), ("files", "which bodies are files")):
        if old.get(key) != new.get(key):
            return f"{what} changed"
    return "other settings"


# ------------------------------------------------------------------------- claims


def claim_run_folder(
    paths: RunPaths,
    fp: dict[str, Any],
    rank: RankInfo,
    *,
    restart: bool,
    storage: Storage = LOCAL,
) -> None:
    """A run rank's claim on its output folder: refuse a folder of another run, unless
    ``restart``: then this rank starts over whatever the folder holds (its files, and rank 0's
    also those of ranks beyond the world size, are removed; every later generation goes);
    write run.json."""

    def start_over() -> None:
        for generation in generations_present(paths.root):
            with contextlib.suppress(FileNotFoundError):  # other ranks remove them too
                storage.remove(generation_folder(paths.root, generation))
        for path in paths.rank_files(rank.rank):
            storage.remove(path)
        if rank.rank == 0:
            for other in paths.ranks_present():
                if other >= rank.world_size:
                    for path in paths.rank_files(other):
                        storage.remove(path)

    recorded = None
    if restart:
        start_over()  # not only over another run's folder: --restart starts the rank over
    else:
        try:
            old = RunManifest.read(paths.run_json)
        except RunFolderError as exc:
            raise RunMismatchError(f"{exc}; rerun with --restart to start over") from exc
        recorded = old.fingerprint if old is not None else None
    _claim(
        paths.run_json,
        RunManifest(fingerprint=fp, fetchshard_version=__version__),
        recorded,
        restart=restart,
        refuse=lambda what: RunMismatchError(
            f"{paths.root} holds a different run ({what}); rerun with --restart to "
            "discard it and start over, or choose another output folder"
        ),
        start_over=start_over,
        storage=storage,
    )


def claim_plan_folder(
    paths: PlanPaths,
    fp: dict[str, Any],
    rank: RankInfo,
    *,
    restart: bool,
    storage: Storage = LOCAL,
) -> PlanManifest:
    """A plan rank's claim on the plan folder: refuse a plan made for another input or world
    size, unless ``restart``: then this rank's files of it go, and rank 0's also those of
    ranks beyond the world size and the host counts summed by range (a slice of this plan
    already done is kept); write and return the manifest."""
    old = PlanManifest.read(paths.manifest)

    def start_over() -> None:
        for path in paths.slice(rank.rank).files():
            storage.remove(path)
        if rank.rank == 0 and old is not None:
            for other in range(rank.world_size, old.world_size):
                for path in paths.slice(other).files():
                    storage.remove(path)
            # The old plan's host counts by range (a run's ranks sum the new one's again:
            # its documents name their plan, so these would only be ignored).
            storage.remove(paths.counts_folder)

    manifest = PlanManifest(fingerprint=fp, fetchshard_version=__version__)
    _claim(
        paths.manifest,
        manifest,
        old.fingerprint if old is not None else None,
        restart=restart,
        refuse=lambda what: PlanError(
            f"{paths.folder} holds another plan ({what}); rerun fetchshard plan with "
            "--restart to make a new one"
        ),
        start_over=start_over,
        storage=storage,
    )
    return manifest


def _claim(
    document: Path,
    mine: RunManifest | PlanManifest,
    recorded: Mapping[str, Any] | None,
    *,
    restart: bool,
    refuse: Callable[[str], FetchshardError],
    start_over: Callable[[], None],
    storage: Storage,
) -> None:
    """The claim on a folder whose ``document`` (run.json, plan/plan.json) records the
    fingerprint ``recorded`` (None: none yet): another's is refused with ``refuse(what
    differs)``, or with ``restart`` replaced after ``start_over()``; then ``mine`` is written
    unless the folder holds its bytes already (every rank writes the same)."""
    what = None if recorded is None else difference(recorded, mine.fingerprint)
    if what is not None:
        if not restart:
            raise refuse(what)
        start_over()
    data = mine.to_bytes()
    current = document.read_bytes() if document.exists() else None
    if current != data:
        storage.write_atomic(document, data, durable=True)
