"""A merged dataset into a bucket: ``fetchshard merge RUN -o s3://bucket/prefix``.

The dataset is made exactly as a local merge makes it, in a staging folder (a temporary
folder in the run folder by default, where the run's parts already fit; as large as the
dataset), then uploaded one finished file at a time, each with one PutObject
(runfolder/objectstore.py); the staging folder is removed at the end, whatever happened.

The order keeps ``manifest.json`` in the bucket true of the files beside it:

1. the manifest of an earlier merge to the prefix is deleted first;
2. the data, errors, shard, missing and duplicates files go up, then the files' records
   (``.fetchshard/``), then the card;
3. the objects of an earlier merge that this one lacks (another file count, format or plan)
   are deleted: readers glob ``data/train-*``, so a stale file would be read as data;
4. ``manifest.json``, last.

So a rerun to the same prefix replaces every object whole and leaves exactly its own set.
Objects under the prefix that no merge writes are left alone.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fetchshard.errors import RunError
from fetchshard.faults import crash_point
from fetchshard.merging.job import MergeOptions, MergeOutcome, MergeWatch, merge
from fetchshard.runfolder.layout import MERGE_STAGING_PREFIX, MergedPaths
from fetchshard.runfolder.objectstore import BucketURL, ObjectStore
from fetchshard.runfolder.view import RunFolder

log = logging.getLogger("fetchshard")


@dataclass(frozen=True)
class Published:
    """What an upload did: objects put (and their bytes), objects of an older merge removed."""

    uploaded: int
    bytes: int
    removed: int


def merge_into_bucket(
    run_dir: Path,
    options: MergeOptions,
    location: BucketURL,
    store: ObjectStore,
    *,
    staging: Path | None = None,
    watch: MergeWatch | None = None,
    folder: RunFolder | None = None,
) -> tuple[MergeOutcome, Published]:
    """Merge ``run_dir`` into a staging folder under ``staging`` (default: ``run_dir``), then
    publish it at ``location`` (see the module doc). One merge process: the whole plan."""
    parent = staging if staging is not None else run_dir
    parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=MERGE_STAGING_PREFIX, dir=parent) as tmp:
        root = Path(tmp) / "merged"
        outcome = merge(
            run_dir, dataclasses.replace(options, output=root), watch=watch, folder=folder
        )
        if outcome.manifest is None:  # one process writes every file, so it always finishes
            raise RunError(f"the merge in {root} did not finish: nothing was uploaded")
        published = publish(root, store, location)
    log.info(
        "%s: %d objects uploaded (%.1f MB), %d of an earlier merge removed",
        location,
        published.uploaded,
        published.bytes / 1e6,
        published.removed,
    )
    return outcome, published


def publish(root: Path, store: ObjectStore, location: BucketURL) -> Published:
    """Upload the finished merged folder ``root`` to ``location``, in the module doc's order."""
    paths = MergedPaths(root)
    staged = sorted(p for p in root.rglob("*") if p.is_file())
    names = {p.relative_to(root).as_posix() for p in staged}
    earlier = [
        o.key for o in store.list(location.folder) if paths.owns(root / location.relative(o.key))
    ]
    manifest = paths.manifest.relative_to(root).as_posix()
    if location.key(manifest) in earlier:
        store.delete(location.key(manifest))

    def order(path: Path) -> int:
        """Files first, then their records, then the card."""
        if path == paths.card:
            return 2
        return 1 if paths.state in path.parents else 0

    body = sorted((p for p in staged if p != paths.manifest), key=order)
    size = 0
    for number, path in enumerate(body, 1):
        size += _upload(store, location, root, path)
        crash_point("merge_upload", number)
    removed = _remove_stale(store, location, earlier, names)
    size += _upload(store, location, root, paths.manifest)
    return Published(uploaded=len(body) + 1, bytes=size, removed=removed)


def _upload(store: ObjectStore, location: BucketURL, root: Path, path: Path) -> int:
    """Put one finished file under its name in the folder; its size."""
    key = location.key(path.relative_to(root).as_posix())
    store.put_file(path, key, create_only=False)
    log.debug("uploaded %s", key)
    return path.stat().st_size


def _remove_stale(
    store: ObjectStore, location: BucketURL, earlier: list[str], names: set[str]
) -> int:
    stale = [key for key in earlier if location.relative(key) not in names]
    for key in stale:
        store.delete(key)
    return len(stale)
