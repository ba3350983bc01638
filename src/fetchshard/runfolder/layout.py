"""Every name in the output folder; nothing else in the package builds an output path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RANK_WIDTH = 5
PART_WIDTH = 6
TMP_SUFFIX = ".tmp"
_RANK_PREFIX = "rank-"
# The per-rank folders: every file in them is named for its rank (rank-00017...).
RANK_FOLDERS = ("ledger", "shards", "progress", "stats", "logs", "done")


def rank_name(rank: int) -> str:
    return f"{_RANK_PREFIX}{rank:0{RANK_WIDTH}d}"


def rank_of_name(name: str) -> int | None:
    """The rank a per-rank file or folder name carries (``rank-00017.sqlite`` -> 17)."""
    stem = name.split(".", 1)[0]
    digits = stem[len(_RANK_PREFIX) :]
    return int(digits) if stem.startswith(_RANK_PREFIX) and digits.isdigit() else None


def items_file(ledger: Path) -> Path:
    """The planned items of a ledger (``rank-00017.items.arrow`` beside its SQLite file)."""
    return ledger.with_suffix(".items.arrow")


def plan_scratch(ledger: Path) -> Path:
    """The folder where planning stages a ledger's items; it exists only while planning."""
    return ledger.with_suffix(".plan")


@dataclass(frozen=True)
class LedgerPaths:
    """A ledger's files, as ``fetchshard.ledger.Ledger`` is handed them."""

    db: Path  # the SQLite database
    items: Path  # the planned items (items_file)
    scratch: Path  # where planning stages them (plan_scratch)


def ledger_paths(ledger: Path) -> LedgerPaths:
    """The files of the ledger whose SQLite database is ``ledger``."""
    return LedgerPaths(ledger, items_file(ledger), plan_scratch(ledger))


def tmp_of(path: Path) -> Path:
    """Where a file is written before it is renamed into place."""
    return path.with_name(path.name + TMP_SUFFIX)


@dataclass(frozen=True)
class RunPaths:
    """The layout of one output folder (see ARCHITECTURE.md, "The run folder")."""

    root: Path

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def ledger(self, rank: int) -> Path:
        return self.root / "ledger" / f"{rank_name(rank)}.sqlite"

    def ledger_paths(self, rank: int) -> LedgerPaths:
        """The rank's ledger with its items file and planning scratch folder."""
        return ledger_paths(self.ledger(rank))

    def shard_dir(self, rank: int) -> Path:
        return self.root / "shards" / rank_name(rank)

    def part(self, rank: int, part_no: int) -> Path:
        return self.shard_dir(rank) / f"part-{part_no:0{PART_WIDTH}d}.parquet"

    def part_tmp(self, rank: int, part_no: int) -> Path:
        return tmp_of(self.part(rank, part_no))

    def progress(self, rank: int) -> Path:
        return self.root / "progress" / f"{rank_name(rank)}.json"

    def stats(self, rank: int) -> Path:
        return self.root / "stats" / f"{rank_name(rank)}.json"

    def log(self, rank: int) -> Path:
        return self.root / "logs" / f"{rank_name(rank)}.log"

    def lock(self, rank: int) -> Path:
        """Held by the process running the rank (runfolder/lock.py); never removed."""
        return self.root / "locks" / f"{rank_name(rank)}.lock"

    @property
    def files_dir(self) -> Path:
        """Bodies written as files (output.mode files), named by output/filenames.py."""
        return self.root / "files"

    def file(self, relative: str) -> Path:
        """A body's file from the path its row holds (relative to the output folder)."""
        return self.root / relative

    def partial_dir(self, rank: int) -> Path:
        """The rank's unfinished transfers: ``<item id>.part`` and ``<item id>.json``."""
        return self.root / "partial" / rank_name(rank)

    def done(self, rank: int) -> Path:
        return self.root / "done" / rank_name(rank)

    def rank_files(self, rank: int) -> list[Path]:
        """Every file or folder that belongs to one rank (for --restart)."""
        return [
            self.ledger(rank),
            self.ledger(rank).with_name(self.ledger(rank).name + "-journal"),
            items_file(self.ledger(rank)),
            plan_scratch(self.ledger(rank)),
            self.shard_dir(rank),
            self.progress(rank),
            self.stats(rank),
            self.log(rank),
            self.done(rank),
        ]

    def ranks_present(self) -> set[int]:
        """Ranks that left any per-rank file in this folder."""
        found: set[int] = set()
        for sub in RANK_FOLDERS:
            folder = self.root / sub
            if not folder.is_dir():
                continue
            for entry in folder.iterdir():
                rank = rank_of_name(entry.name)
                if rank is not None:
                    found.add(rank)
        return found

    def part_number(self, path: Path) -> int | None:
        """The part number of a committed part file name, or None for anything else."""
        name = path.name
        if not (name.startswith("part-") and name.endswith(".parquet")):
            return None
        digits = name[len("part-") : -len(".parquet")]
        return int(digits) if digits.isdigit() else None


# ------------------------------------------------------------------ the plan step


@dataclass(frozen=True)
class PlanPaths:
    """``OUT/plan``: what ``fetchshard plan`` rank N wrote of its slice of the input (the files
    of planning/slicefiles.py), read by every rank of ``fetchshard run``."""

    root: Path  # the output folder

    @property
    def folder(self) -> Path:
        return self.root / "plan"

    @property
    def manifest(self) -> Path:
        return self.folder / "plan.json"

    def hosts(self, rank: int) -> Path:
        """Rows per host in the slice (host hash, rows), sorted by host hash."""
        return self.folder / f"{rank_name(rank)}.hosts.arrow"

    def items(self, rank: int) -> Path:
        """The slice's items, sorted by (host hash, key hash)."""
        return self.folder / f"{rank_name(rank)}.items.arrow"

    def index(self, rank: int) -> Path:
        """Every INDEX_STRIDE-th (host hash, key hash) of the items, to find a range fast."""
        return self.folder / f"{rank_name(rank)}.index.arrow"

    def done(self, rank: int) -> Path:
        """The slice's PlanSliceDone, written last."""
        return self.folder / "done" / f"{rank_name(rank)}.json"

    def lock(self, rank: int) -> Path:
        return self.folder / "locks" / f"{rank_name(rank)}.lock"

    def log(self, rank: int) -> Path:
        return self.folder / "logs" / f"{rank_name(rank)}.log"

    def slice_files(self, rank: int) -> list[Path]:
        """Every file of one plan rank but its lock (for --restart and a redo)."""
        data = [self.hosts(rank), self.items(rank), self.index(rank)]
        return [self.done(rank), *data, *(tmp_of(p) for p in data)]


# ------------------------------------------------------------------ the merged dataset

DATA_SPLIT = "train"
FILE_WIDTH = 5


@dataclass(frozen=True)
class MergedPaths:
    """The layout of a merged dataset (``fetchshard merge``): the Hugging Face one, by default
    ``OUT/merged``; its bookkeeping under a dot folder the loaders skip."""

    root: Path

    def data_file(self, index: int, count: int) -> Path:
        """``data/train-00000-of-00042.parquet``: the name ``datasets`` reads as a split."""
        return self.root / "data" / _numbered(DATA_SPLIT, index, count, "parquet")

    def errors_file(self, index: int, count: int) -> Path:
        """The failures, a second config of the dataset (split-named, so never mixed in)."""
        return self.root / "errors" / _numbered(DATA_SPLIT, index, count, "parquet")

    def shard_tar(self, index: int) -> Path:
        """A webdataset shard (``00000.tar``) and, beside it, its metadata sidecar."""
        return self.root / f"{index:0{FILE_WIDTH}d}.tar"

    def shard_sidecar(self, index: int) -> Path:
        return self.root / f"{index:0{FILE_WIDTH}d}.parquet"

    @property
    def card(self) -> Path:
        return self.root / "README.md"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def missing(self) -> Path:
        """The items a partial merge lacks, with their rank and why."""
        return self.root / "missing.parquet"

    @property
    def duplicates(self) -> Path:
        """``--dedup content``: the successes dropped, and whose body each repeats."""
        return self.root / "duplicates.parquet"

    @property
    def state(self) -> Path:
        """Merge bookkeeping: one record per finished file (a dot folder: loaders skip it)."""
        return self.root / ".fetchshard"

    def record(self, plan: str, name: str) -> Path:
        """The record of one finished output file of the merge plan ``plan`` (a digest)."""
        return self.state / plan / f"{name}.json"

    def output_files(self) -> list[Path]:
        """Every data, errors and shard file in the folder (of any plan), tmp files too."""
        found = [
            entry
            for folder in (self.root / "data", self.root / "errors")
            if folder.is_dir()
            for entry in folder.iterdir()
        ]
        if self.root.is_dir():
            found += [e for e in self.root.iterdir() if _SHARD_NAME.fullmatch(e.name)]
        return sorted(found)


_SHARD_NAME = re.compile(rf"\d{{{FILE_WIDTH},}}\.(tar|parquet)({re.escape(TMP_SUFFIX)})?")


def _numbered(split: str, index: int, count: int, suffix: str) -> str:
    return f"{split}-{index:0{FILE_WIDTH}d}-of-{count:0{FILE_WIDTH}d}.{suffix}"
