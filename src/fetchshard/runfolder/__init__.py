"""The output folder as one contract: its layout, its documents, durable writes, a view.

Writers (the ranks) and readers (``merge``, ``report``, the job templates) go through this
package; nothing else names a path of the folder or parses one of its files.
"""

from fetchshard.runfolder.documents import (
    Document,
    DoneMarker,
    ProgressSnapshot,
    RankStats,
    RunManifest,
)
from fetchshard.runfolder.layout import RunPaths, items_file, plan_scratch, rank_name
from fetchshard.runfolder.storage import LOCAL, LocalStorage, Storage, fsync_path, write_atomic

__all__ = [
    "LOCAL",
    "Document",
    "DoneMarker",
    "LocalStorage",
    "ProgressSnapshot",
    "RankStats",
    "RunManifest",
    "RunPaths",
    "Storage",
    "fsync_path",
    "items_file",
    "plan_scratch",
    "rank_name",
    "write_atomic",
]
