"""A rank's claim on its output folder: refuse another run's folder, write ``run.json``."""

from __future__ import annotations

from typing import Any

from fetchshard import __version__
from fetchshard.errors import RunFolderError, RunMismatchError
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.documents import RunManifest
from fetchshard.runfolder.layout import RunPaths
from fetchshard.runfolder.storage import LOCAL, Storage


def fingerprint_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two run fingerprints, in a few words for an error message."""
    if old.get("world_size") != new.get("world_size"):
        return f"world size {old.get('world_size')} -> {new.get('world_size')}"
    if old.get("plan") != new.get("plan"):
        return "planned with a plan step" if new.get("plan") else "planned without a plan step"
    if old.get("partition") != new.get("partition"):
        return f"partition {old.get('partition')} -> {new.get('partition')}"
    old_files = {f["path"]: f for f in old.get("input", {}).get("files", [])}
    new_files = {f["path"]: f for f in new.get("input", {}).get("files", [])}
    if old_files.keys() != new_files.keys():
        return "a different set of input files"
    changed = [p for p in new_files if new_files[p] != old_files[p]]
    if changed:
        return f"input file changed since the run began: {changed[0]}"
    return "different input options"


def prepare_output(
    paths: RunPaths,
    fp: dict[str, Any],
    rank: RankInfo,
    *,
    restart: bool,
    storage: Storage = LOCAL,
) -> None:
    """Refuse a folder of another run (unless ``restart``: then this rank's files, and rank
    0 also those of ranks beyond the world size, are removed); write run.json."""
    if restart:
        for path in paths.rank_files(rank.rank):
            storage.remove(path)
        if rank.rank == 0:
            for other in paths.ranks_present():
                if other >= rank.world_size:
                    for path in paths.rank_files(other):
                        storage.remove(path)
    else:
        try:
            old = RunManifest.read(paths.run_json)
        except RunFolderError as exc:
            raise RunMismatchError(f"{exc}; rerun with --restart to start over") from exc
        if old is not None and old.fingerprint != fp:
            raise RunMismatchError(
                f"{paths.root} holds a different run "
                f"({fingerprint_difference(old.fingerprint, fp)}); rerun with --restart to "
                "discard it and start over, or choose another output folder"
            )
    data = RunManifest(fingerprint=fp, fetchshard_version=__version__).to_bytes()
    current = paths.run_json.read_bytes() if paths.run_json.exists() else None
    if current != data:
        storage.write_atomic(paths.run_json, data, durable=True)
