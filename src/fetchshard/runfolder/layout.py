"""Every name in the output folder; nothing else in the package builds an output path."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

RANK_WIDTH = 5
PART_WIDTH = 6
# Spilled runs: plan/spill/rank-NNNNN/run-NNNNN.arrow (a plan rank's), and a leftover's in
# gen-000G/leftover/spill/gen-000J-rank-NNNNN/.
RUN_WIDTH = 5
TMP_SUFFIX = ".tmp"
_RANK_PREFIX = "rank-"
# The per-rank folders: every file in them is named for its rank (rank-00017...).
RANK_FOLDERS = ("ledger", "shards", "progress", "stats", "logs", "done")
GENERATION_WIDTH = 4
_GENERATION_PREFIX = "gen-"


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


def generation_name(generation: int) -> str:
    return f"{_GENERATION_PREFIX}{generation:0{GENERATION_WIDTH}d}"


@dataclass(frozen=True)
class SliceFiles:
    """The files of one slice of a plan (planning/slicefiles.py writes and reads them): a plan
    step rank's slice of the input, or the leftover of one rank of an earlier generation."""

    name: str  # for messages: "plan rank 3", "generation 0 rank 3"
    items: Path  # the slice's items, sorted by (host hash, key hash)
    hosts: Path  # rows per host hash, sorted by host hash
    index: Path  # every INDEX_STRIDE-th (host hash, key hash) of the items
    done: Path  # the slice's done document, written last
    lock: Path  # held by the process writing the slice
    # What a row's key hash is: "hash", the hash of its input key (the item id is its low
    # bits); "item", its item id scrambled (a leftover's: planning/slicefiles.py).
    keys: str = "hash"
    # Where the slice's sorted runs are spilled while it is written (a plan rank's slice or a
    # leftover larger than plan.memory: planning/spill.py); None: sorted in memory.
    spill: Path | None = None

    def spill_run(self, number: int) -> Path:
        """The spilled run ``number`` (0, 1, ...; a merge pass's output takes the next)."""
        if self.spill is None:
            raise ValueError(f"{self.name} has no spill folder")
        return self.spill / f"run-{number:0{RUN_WIDTH}d}.arrow"

    def files(self) -> list[Path]:
        """Every file of the slice but its lock (for --restart and a redo), and the folder
        of its spilled runs."""
        data = [self.hosts, self.items, self.index]
        spill = [] if self.spill is None else [self.spill]
        return [self.done, *data, *(tmp_of(p) for p in data), *spill]


# The run folder of a mirror (an hf:// input), inside it: the repo's files are the mirror's
# top level, and `datasets` skips dot-folders when it looks for data files.
MIRROR_STATE = ".fetchshard"


def mirror_state(output: Path) -> Path:
    """The run folder of a mirror written to ``output``."""
    return output / MIRROR_STATE


def find_run_root(folder: Path) -> Path:
    """The run folder a user names: ``folder`` itself, or the run folder of the mirror it is."""
    inner = mirror_state(folder)
    if not (folder / "run.json").exists() and (inner / "run.json").exists():
        return inner
    return folder


@dataclass(frozen=True)
class RunPaths:
    """The layout of one output folder (see ARCHITECTURE.md, "The run folder"): the per-rank
    files of ``generation`` (0: the folder itself; g: ``gen-000g/``); the files shared by
    every generation (run.json, bodies as files) at the top."""

    root: Path
    generation: int = 0

    @property
    def base(self) -> Path:
        """Where the generation's per-rank folders are."""
        return self.root if self.generation == 0 else generation_folder(self.root, self.generation)

    def of_generation(self, generation: int) -> RunPaths:
        return RunPaths(self.root, generation)

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    def ledger(self, rank: int) -> Path:
        return self.base / "ledger" / f"{rank_name(rank)}.sqlite"

    def ledger_paths(self, rank: int) -> LedgerPaths:
        """The rank's ledger with its items file and planning scratch folder."""
        return ledger_paths(self.ledger(rank))

    def shard_dir(self, rank: int) -> Path:
        return self.base / "shards" / rank_name(rank)

    def part(self, rank: int, part_no: int) -> Path:
        return self.shard_dir(rank) / f"part-{part_no:0{PART_WIDTH}d}.parquet"

    def part_tmp(self, rank: int, part_no: int) -> Path:
        return tmp_of(self.part(rank, part_no))

    def progress(self, rank: int) -> Path:
        return self.base / "progress" / f"{rank_name(rank)}.json"

    def stats(self, rank: int) -> Path:
        return self.base / "stats" / f"{rank_name(rank)}.json"

    def log(self, rank: int) -> Path:
        return self.base / "logs" / f"{rank_name(rank)}.log"

    def lock(self, rank: int) -> Path:
        """Held by the process running the rank (runfolder/lock.py); never removed."""
        return self.base / "locks" / f"{rank_name(rank)}.lock"

    @property
    def mirror(self) -> bool:
        """A mirror's run folder (an hf:// input): the files are the folder it is in."""
        return self.root.name == MIRROR_STATE

    @property
    def output_dir(self) -> Path:
        """The folder the user named: the run folder, or the mirror holding it."""
        return self.root.parent if self.mirror else self.root

    @property
    def files_dir(self) -> Path:
        """Bodies written as files (output.mode files), named by output/filenames.py, or at
        their repo paths in a mirror."""
        return self.output_dir if self.mirror else self.root / "files"

    def file(self, relative: str) -> Path:
        """A body's file from the path its row holds (relative to the output folder)."""
        return self.output_dir / relative

    def hub_document(self, key: str) -> Path:
        """An hf:// input's HubListing document (``key`` names the input as asked)."""
        return self.root / "hub" / f"{key}.json"

    def hub_listing(self, key: str, commit: str) -> Path:
        """Its listing at ``commit``: every rank's input (Parquet)."""
        return self.root / "hub" / f"{key}-{commit}.parquet"

    def hub_lock(self, key: str) -> Path:
        """Held by the process listing it."""
        return self.root / "hub" / f"{key}.lock"

    def partial_dir(self, rank: int) -> Path:
        """The rank's unfinished transfers: ``<item id>.part`` and ``<item id>.json``."""
        return self.base / "partial" / rank_name(rank)

    def done(self, rank: int) -> Path:
        return self.base / "done" / rank_name(rank)

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
            folder = self.base / sub
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


# ------------------------------------------------------------------ generations


def generation_folder(root: Path, generation: int) -> Path:
    """``OUT/gen-0001``: the per-rank folders of a generation after the first, and its own
    files (GenerationPaths)."""
    return root / generation_name(generation)


def generations_present(root: Path) -> list[int]:
    """The generations after the first that have a folder (whatever it holds), in order."""
    found = []
    if root.is_dir():
        for entry in root.iterdir():
            number = generation_of_name(entry.name)
            if number is not None and entry.is_dir():
                found.append(number)
    return sorted(found)


def generation_of_name(name: str) -> int | None:
    """The generation a folder name is of (``gen-0002`` -> 2), else None."""
    digits = name[len(_GENERATION_PREFIX) :]
    return int(digits) if name.startswith(_GENERATION_PREFIX) and digits.isdigit() else None


CARRIED_SUFFIX = ".carried.arrow"


@dataclass(frozen=True)
class GenerationPaths:
    """What starts generation g >= 1: its manifest, and the leftover of every rank of the
    generations before it that it takes over (one slice per such rank)."""

    root: Path  # the output folder
    generation: int

    @property
    def folder(self) -> Path:
        return generation_folder(self.root, self.generation)

    @property
    def manifest(self) -> Path:
        return self.folder / "generation.json"

    def leftover(self, generation: int, rank: int) -> SliceFiles:
        """The slice of what rank ``rank`` of the earlier ``generation`` left to do."""
        stem = f"{generation_name(generation)}-{rank_name(rank)}"
        folder = self.folder / "leftover"
        return SliceFiles(
            name=f"generation {generation} rank {rank}",
            items=folder / f"{stem}.items.arrow",
            hosts=folder / f"{stem}.hosts.arrow",
            index=folder / f"{stem}.index.arrow",
            done=folder / "done" / f"{stem}.json",
            lock=folder / "locks" / f"{stem}.lock",
            keys="item",
            spill=folder / "spill" / stem,
        )

    def carried(self, generation: int, rank: int) -> Path:
        """(item id, part) of the committed rows of that rank the leftover takes up again
        (requeued or --retry-failed): they stop being current once this generation commits
        the item."""
        stem = f"{generation_name(generation)}-{rank_name(rank)}"
        return self.folder / "leftover" / f"{stem}{CARRIED_SUFFIX}"


# ------------------------------------------------------------------ the plan step


@dataclass(frozen=True)
class RangeFiles:
    """One host-hash range's counts summed over every slice of a plan (planning/aggregate.py)."""

    counts: Path  # host_hash, rows: the range's hosts, sorted
    done: Path  # its RangeCounts document, written last
    lock: Path  # held by the process summing it


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

    def slice(self, rank: int) -> SliceFiles:
        """Plan rank ``rank``'s slice of the input; its done document is a PlanSliceDone."""
        return SliceFiles(
            name=f"plan rank {rank}",
            items=self.folder / f"{rank_name(rank)}.items.arrow",
            hosts=self.folder / f"{rank_name(rank)}.hosts.arrow",
            index=self.folder / f"{rank_name(rank)}.index.arrow",
            done=self.folder / "done" / f"{rank_name(rank)}.json",
            lock=self.folder / "locks" / f"{rank_name(rank)}.lock",
            spill=self.folder / "spill" / rank_name(rank),
        )

    def log(self, rank: int) -> Path:
        return self.folder / "logs" / f"{rank_name(rank)}.log"

    @property
    def counts_folder(self) -> Path:
        """The host counts aggregated by host-hash range, written by ``fetchshard run``'s
        ranks (they derive from the slices: removed with them)."""
        return self.folder / "counts"

    def range_counts(self, number: int) -> RangeFiles:
        """Host-hash range ``number``'s counts (``counts/range-NNNNN.arrow``)."""
        name = f"range-{number:0{RANK_WIDTH}d}"
        return RangeFiles(
            counts=self.counts_folder / f"{name}.arrow",
            done=self.counts_folder / "done" / f"{name}.json",
            lock=self.counts_folder / "locks" / f"{name}.lock",
        )


# ------------------------------------------------------------------ the merged dataset

DATA_SPLIT = "train"
FILE_WIDTH = 5
# A merge into a bucket builds the dataset first in a temporary folder of this name (in the
# run folder, by default, where the run's parts already fit), removed when it ends.
MERGE_STAGING_PREFIX = ".merge-staging-"


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

    def owns(self, path: Path) -> bool:
        """Whether ``path`` (inside the folder) is a file some merge writes, of any plan or
        format: what a later merge to the same place replaces or removes. Anything else
        beside them is the user's."""
        data = self.data_file(0, 1).parent
        errors = self.errors_file(0, 1).parent
        if path.parent in (data, errors) or self.state in path.parents:
            return True
        if path in (self.card, self.manifest, self.missing, self.duplicates):
            return True
        return path.parent == self.root and _SHARD_NAME.fullmatch(path.name) is not None


_SHARD_NAME = re.compile(rf"\d{{{FILE_WIDTH},}}\.(tar|parquet)({re.escape(TMP_SUFFIX)})?")


def _numbered(split: str, index: int, count: int, suffix: str) -> str:
    return f"{split}-{index:0{FILE_WIDTH}d}-of-{count:0{FILE_WIDTH}d}.{suffix}"
