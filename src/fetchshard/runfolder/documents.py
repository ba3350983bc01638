"""The run folder's JSON documents, each a typed, versioned class that writes and reads itself.

=================  ==========================  ====================================================
document           file                        written
=================  ==========================  ====================================================
RunManifest        ``run.json``                by every rank at start (same bytes: written once)
ProgressSnapshot   ``progress/rank-N.json``    by its rank, every ``run.progress_interval``
RankStats          ``stats/rank-N.json``       by its rank when it stops (done or interrupted)
DoneMarker         ``done/rank-N``             by its rank last, once its whole slice is committed
PlanManifest       ``plan/plan.json``          by every rank of the plan step (same bytes)
PlanSliceDone      ``plan/done/rank-N.json``   by plan rank N last, once its slice's files are in
RangeCounts        ``plan/counts/done/``       last, once a host-hash range's counts are summed
GenerationManifest ``gen-000G/generation.json`` once, by the first rank of generation G >= 1
LeftoverDone       ``gen-000G/leftover/done/`` last, once the leftover of an earlier rank is in
=================  ==========================  ====================================================

Every document carries ``kind`` and ``version``. A reader accepts its own version and older
ones (files from before versions existed count as version 1) and refuses a newer one with
:class:`NewerFormatError`, so ``report`` on a login node says "upgrade" instead of crashing.
Unknown keys are ignored: a version adds keys, a new version number means readers must change.

A document is a dataclass whose fields are its keys: :class:`Document` writes them as they
are and reads each by its declared type. A class writes or reads itself only where its file
is not simply its fields (a version to convert, a key named otherwise, a nested layout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from fetchshard.errors import NewerFormatError, RunFolderError
from fetchshard.runfolder.layout import rank_of_name
from fetchshard.runfolder.storage import LOCAL, Storage
from fetchshard.stats import Stats

_D = TypeVar("_D", bound="Document")


class Document:
    """Base of the documents (dataclasses): the envelope, and by default the fields written
    as they are and read by their declared types."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int]
    _COMPACT: ClassVar[bool] = False  # written often: no indentation
    __dataclass_fields__: ClassVar[dict[str, Any]]  # every document is a dataclass

    def to_dict(self) -> dict[str, Any]:
        """The fields as JSON data; a nested document writes itself."""
        return {name: _plain(getattr(self, name)) for name in _field_types(type(self))}

    @classmethod
    def from_dict(cls: type[_D], data: dict[str, Any], path: Path) -> _D:
        """Each field read by its declared type (``int(...)``, a nested document by its own
        reader); a missing key takes the field's default, or None where None is allowed."""
        values: dict[str, Any] = {}
        for name, (kind, required) in _field_types(cls).items():
            if name in data:
                values[name] = _read(kind, data[name], path)
            elif required:
                if not _allows_none(kind):
                    raise KeyError(name)
                values[name] = None
        return cls(**values)

    def to_bytes(self) -> bytes:
        doc = {"kind": self.KIND, "version": self.VERSION, **self.to_dict()}
        if self._COMPACT:
            return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_bytes(cls: type[_D], data: bytes, path: Path) -> _D:
        try:
            raw = json.loads(data)
        except ValueError as exc:
            raise RunFolderError(f"{path} is not a readable {cls.KIND} document: {exc}") from exc
        if not isinstance(raw, dict):
            raise RunFolderError(f"{path} is not a {cls.KIND} document (not a JSON object)")
        kind = raw.get("kind", cls.KIND)
        if kind != cls.KIND:
            raise RunFolderError(f"{path} is a {kind!r} document, not {cls.KIND!r}")
        version = raw.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise RunFolderError(f"{path}: version {version!r} is not a version number")
        if version > cls.VERSION:
            raise NewerFormatError(
                f"{path} was written by a newer fetchshard ({cls.KIND} format {version}; this "
                f"one reads up to {cls.VERSION}): upgrade fetchshard to read this folder"
            )
        try:
            return cls.from_dict(raw, path)
        except (KeyError, TypeError, ValueError) as exc:
            raise RunFolderError(f"{path} is not a valid {cls.KIND} document: {exc!r}") from exc

    def write(self, path: Path, *, durable: bool = False, storage: Storage = LOCAL) -> None:
        storage.write_atomic(path, self.to_bytes(), durable=durable)

    @classmethod
    def read(cls: type[_D], path: Path) -> _D | None:
        """The document at ``path``, or None when there is none."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RunFolderError(f"cannot read {path}: {exc}") from exc
        return cls.from_bytes(data, path)


_FIELD_TYPES: dict[type[Document], dict[str, tuple[Any, bool]]] = {}


def _field_types(cls: type[Document]) -> dict[str, tuple[Any, bool]]:
    """A document class's fields (it is a dataclass): each one's declared type and whether
    it has no default; worked out once per class."""
    known = _FIELD_TYPES.get(cls)
    if known is None:
        hints = typing.get_type_hints(cls)
        known = _FIELD_TYPES[cls] = {
            f.name: (
                hints[f.name],
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        }
    return known


def _allows_none(kind: Any) -> bool:
    return typing.get_origin(kind) in (types.UnionType, typing.Union) and type(None) in (
        typing.get_args(kind)
    )


def _plain(value: Any) -> Any:
    """A field's value as JSON data: a nested document by its own writer."""
    if isinstance(value, Document):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def _read(kind: Any, value: Any, path: Path) -> Any:
    """``value`` as read from JSON, as the declared type ``kind``."""
    if kind is Any:
        return value
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):  # X | None: the only unions documents use
        if value is None and type(None) in args:
            return None
        (inner,) = (a for a in args if a is not type(None))
        return _read(inner, value, path)
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {value!r}")
        return [_read(args[0], v, path) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {value!r}")
        return {str(k): _read(args[1], v, path) for k, v in value.items()}
    if isinstance(kind, type) and issubclass(kind, Document):
        if not isinstance(value, dict):
            raise TypeError(f"expected an object, got {value!r}")
        return kind.from_dict(value, path)
    if kind in (int, float, str, bool):
        return kind(value)
    raise TypeError(f"no reader for a field of type {kind!r}")


@dataclass(frozen=True, kw_only=True)
class _Fingerprinted(Document):
    """A document of what a folder was made for: a fingerprint with its world size."""

    fingerprint: dict[str, Any]
    fetchshard_version: str

    @property
    def world_size(self) -> int:
        return int(self.fingerprint["world_size"])

    @classmethod
    def from_dict(cls: type[_F], data: dict[str, Any], path: Path) -> _F:
        # The default reader, and a check it cannot know: a fingerprint has its world size.
        fingerprint = data["fingerprint"]
        if not isinstance(fingerprint, dict) or "world_size" not in fingerprint:
            raise ValueError("the fingerprint has no world size")
        return super().from_dict(data, path)


_F = TypeVar("_F", bound=_Fingerprinted)


@dataclass(frozen=True, kw_only=True)
class RunManifest(_Fingerprinted):
    """What must not change between a run and its resumption (``run.json``)."""

    KIND: ClassVar[str] = "run"
    VERSION: ClassVar[int] = 1


@dataclass(frozen=True, kw_only=True)
class RankStats(Document):
    """A rank's counters when it stopped: rows from its ledger, counters over its sessions."""

    KIND: ClassVar[str] = "rank_stats"
    VERSION: ClassVar[int] = 1

    rank: int
    world_size: int
    complete: bool
    stats: Stats
    written_at: float
    # The rank's settings (the whole config, as plain data) and command line: the dataset
    # card says how the data was fetched. Absent from files of older versions.
    settings: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    # Its own writer and reader: the counters (Stats) are written beside the other keys, not
    # nested, as version 1 has always had them.
    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "world_size": self.world_size,
            "complete": self.complete,
            "written_at": self.written_at,
            "settings": self.settings,
            "command": self.command,
            **self.stats.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> RankStats:
        return cls(
            rank=int(data["rank"]),
            world_size=int(data["world_size"]),
            complete=bool(data["complete"]),
            stats=Stats.from_dict(data),
            written_at=float(data.get("written_at", 0.0)),
            settings=dict(data.get("settings") or {}),
            command=[str(a) for a in data.get("command") or []],
        )


# At most this many samples of history; when full, every other one is dropped and the step
# between samples doubles, so a run of any length keeps an evenly spaced, bounded history.
HISTORY_SAMPLES = 256


@dataclass(kw_only=True)
class ProgressHistory:
    """Progress over time as named columns, one value per sample, oldest first: a rank's in
    its snapshot, every rank's summed in the report (report/timeline.py)."""

    time: list[float] = field(default_factory=list)  # seconds since the epoch
    committed: list[float] = field(default_factory=list)  # items with a committed row
    fetched: list[float] = field(default_factory=list)  # ...or with a row in a part still open
    bytes: list[float] = field(default_factory=list)  # body bytes of this session's successes

    def __len__(self) -> int:
        return len(self.time)

    def append(self, time: float, committed: float, fetched: float, nbytes: float) -> None:
        self.time.append(time)
        self.committed.append(committed)
        self.fetched.append(fetched)
        self.bytes.append(nbytes)

    def drop_last(self) -> None:
        for column in self._columns():
            column.pop()

    def thin(self) -> None:
        """Keep every other sample, the newest among them."""
        first = (len(self) - 1) % 2
        self.time, self.committed = self.time[first::2], self.committed[first::2]
        self.fetched, self.bytes = self.fetched[first::2], self.bytes[first::2]

    def _columns(self) -> tuple[list[float], ...]:
        return self.time, self.committed, self.fetched, self.bytes

    @classmethod
    def from_dict(cls, data: dict[str, list[float]]) -> ProgressHistory:
        history = cls(
            time=list(data["time"]),
            committed=list(data["committed"]),
            fetched=list(data["fetched"]),
            bytes=list(data["bytes"]),
        )
        if len({len(column) for column in history._columns()}) > 1:
            raise ValueError("the history's columns differ in length")
        return history

    @classmethod
    def from_rows(
        cls, rows: list[list[float]], *, started_at: float, committed_before: int
    ) -> ProgressHistory:
        """Version 1's layout: rows [seconds since started_at, committed, rows written this
        session, bytes]; fetched was never below committed (a session's last sample)."""
        history = cls()
        for t, committed, written, nbytes, *_ in rows:
            fetched = max(committed, committed_before + written)
            history.append(round(started_at + t, 3), committed, fetched, nbytes)
        return history


@dataclass(kw_only=True)
class ProgressSnapshot(Document):
    """What a rank is doing now, replaced atomically so another host can read it any time."""

    KIND: ClassVar[str] = "progress"
    # 2: the history as named columns, times since the epoch, fetched instead of written;
    # version 1's rows are still read (ProgressHistory.from_rows).
    VERSION: ClassVar[int] = 2
    _COMPACT: ClassVar[bool] = True

    rank: int
    world_size: int
    started_at: float
    state: str = "starting"  # starting, planning, fetching, interrupted, done
    updated_at: float = 0.0
    input_rows: int | None = None  # read while planning
    total: int | None = None  # items of the slice
    committed: int = 0  # items whose row is committed, earlier sessions included
    written: int = 0  # rows written in this session (committed or not)
    ok: int = 0
    failed: int = 0
    requests: int = 0
    retries: int = 0
    bytes: int = 0
    in_flight: int = 0
    active_hosts: int = 0
    urls_per_s: float = 0.0  # rows written per second over this session
    waiting: str | None = None  # nothing in flight: what the rank waits for
    errors: dict[str, int] = field(default_factory=dict)  # of this session's rows
    interval: float = 5.0  # seconds between snapshots (run.progress_interval)
    committed_before: int = 0  # committed by earlier sessions (committed + written: done)
    failed_before: int = 0  # committed failures of earlier sessions
    errors_before: dict[str, int] = field(default_factory=dict)  # ...by error kind
    http_status: dict[str, int] = field(default_factory=dict)  # this session's rows
    content_types: dict[str, int] = field(default_factory=dict)  # this session's successes
    sizes: dict[str, int] = field(default_factory=dict)  # ...by size bucket (stats.py)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # the worst (stats.py)
    history: ProgressHistory = field(default_factory=ProgressHistory)  # history_step apart
    history_step: float = 5.0

    def sample(self, now: float, *, last: bool = False) -> None:
        """Add a history sample if one is due (``last``: the session's end, always kept, in
        place of a sample too close before it)."""
        history = self.history
        t = round(now, 3)
        if history.time and t - history.time[-1] < self.history_step:
            if not last:
                return
            history.drop_last()
        fetched = max(self.committed, self.committed_before + self.written)
        history.append(t, self.committed, fetched, self.bytes)
        if len(history) > HISTORY_SAMPLES:
            history.thin()
            self.history_step *= 2

    # Its own reader: version 1's history rows become version 2's columns (and the values are
    # taken as written, no conversion per key: report reads thousands of these, often).
    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path) -> ProgressSnapshot:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        history = values.pop("history", None)
        snap = cls(**values)
        if data.get("version", 1) == 1:
            snap.history = ProgressHistory.from_rows(
                history or [], started_at=snap.started_at, committed_before=snap.committed_before
            )
        elif history is not None:
            snap.history = ProgressHistory.from_dict(history)
        return snap


@dataclass(frozen=True, kw_only=True)
class DoneMarker(Document):
    """Written last by a rank whose whole slice is committed."""

    KIND: ClassVar[str] = "done"
    VERSION: ClassVar[int] = 1

    rank: int
    world_size: int | None  # None: an empty marker of a version before documents
    items: int | None
    completed_at: float | None

    @classmethod
    def from_bytes(cls, data: bytes, path: Path) -> DoneMarker:
        if not data.strip():  # the empty marker of fetchshard 0.1.0 at 7d665ca and before
            rank = rank_of_name(path.name)
            if rank is None:
                raise RunFolderError(f"{path} is not named for a rank")
            return cls(rank=rank, world_size=None, items=None, completed_at=None)
        return super().from_bytes(data, path)


@dataclass(frozen=True, kw_only=True)
class PlanManifest(_Fingerprinted):
    """What the plan step was made for (``plan/plan.json``): world size, input, placement."""

    KIND: ClassVar[str] = "plan"
    VERSION: ClassVar[int] = 1

    @property
    def digest(self) -> str:
        """A short name of the fingerprint, which each slice's PlanSliceDone carries."""
        text = json.dumps(self.fingerprint, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class PlanSliceDone(Document):
    """Plan rank N's slice is complete: its files are in place (written last)."""

    KIND: ClassVar[str] = "plan_slice"
    VERSION: ClassVar[int] = 1

    rank: int
    world_size: int
    plan: str  # PlanManifest.digest of the plan it belongs to: a slice of an older one is not
    rows: int  # input rows read
    items: int  # rows written (every row: duplicates are dropped by the run's ledger)
    hosts: int
    bytes_read: int  # of the input
    seconds: float
    completed_at: float


@dataclass(frozen=True, kw_only=True)
class RangeCounts(Document):
    """Host-hash range N of a plan's W: its hosts' rows summed over every slice are in
    ``plan/counts/range-N.arrow`` (written last). Its heavy hosts one by one and the others'
    rows: what every run rank reads of the range (planning/aggregate.py)."""

    KIND: ClassVar[str] = "range_counts"
    VERSION: ClassVar[int] = 1
    _COMPACT: ClassVar[bool] = True  # read by every run rank, with its heavy hosts

    number: int  # the range: host hashes [ceil(N 2**64 / W), ceil((N + 1) 2**64 / W))
    world_size: int
    plan: str  # PlanManifest.digest of the plan it sums: one of an older plan is not
    total: int  # rows of the whole plan: a host is heavy above total / W / TINY rows
    rows: int  # of this range
    hosts: int
    heavy_hosts: list[int]  # their hashes, sorted
    heavy_rows: list[int]
    light_rows: int  # the rows of its other hosts
    bytes_read: int  # of the slices' hosts files: the runs of this range
    seconds: float
    completed_at: float


@dataclass(frozen=True, kw_only=True)
class GenerationManifest(Document):
    """Generation G >= 1 began: its world size, and what it takes over (written once)."""

    KIND: ClassVar[str] = "generation"
    VERSION: ClassVar[int] = 1

    generation: int
    world_size: int
    previous_world_size: int
    # --retry-failed's words when it began with them ([] for every kind): it takes up again
    # the chosen failures of every earlier generation; None: only items without a row.
    retry_failed: list[str] | None
    began_at: float


@dataclass(frozen=True, kw_only=True)
class HubListing(Document):
    """An hf:// input resolved and listed once for the whole run: the listing file beside it
    is every rank's input (hub/input.py)."""

    KIND: ClassVar[str] = "hub-listing"
    VERSION: ClassVar[int] = 1

    uri: str  # as asked, canonical (hf://datasets/ns/name@main/sub)
    endpoint: str
    commit: str  # the revision resolved, once
    include: list[str]
    exclude: list[str]
    files: int
    bytes: int
    listed_at: float


@dataclass(frozen=True, kw_only=True)
class LeftoverDone(Document):
    """The leftover of one rank of an earlier generation is written (its done document)."""

    KIND: ClassVar[str] = "leftover"
    VERSION: ClassVar[int] = 1

    generation: int  # the generation it was written for
    source_generation: int
    source_rank: int
    items: int  # items in the leftover
    hosts: int
    carried: int  # of them, items with a committed row (requeued, or failures to retry)
    committed: int  # items of the source rank with a committed row it keeps
    bytes_read: int  # of the source rank's files
    seconds: float
    completed_at: float
    # The committed failures taken up again, by error kind (--retry-failed): no longer
    # current once their items are committed anew.
    carried_errors: dict[str, int] = field(default_factory=dict)


@dataclass(kw_only=True)
class PartialTransfer:
    """Beside an unfinished ``.part`` (``partial/rank-N/<item>.json``): what its bytes are of,
    so a resume asks for the rest only of the same file (``If-Range``).

    Version 1 is a ``.part`` written from its start (output/files.py ``FileSink``). A large
    file fetched as byte ranges (output/segments.py) is version 2: the file's ``size`` and
    each range's ``[start, end, done]`` (``end`` its last byte, as in a ``Range`` header;
    ``done`` the bytes written from ``start``, never more than were written when the record
    was). A version-1 reader refuses it and starts over: its bytes are not one prefix."""

    url: str  # the URL requested
    etag: str | None  # the response's ETag, if any (a weak one is not used to resume)
    last_modified: str | None  # its Last-Modified, if any
    size: int | None = None  # a segmented transfer's: the whole file's
    segments: tuple[tuple[int, int, int], ...] | None = None  # (start, end, done) per range

    def if_range(self) -> str | None:
        """The If-Range value of the file: a strong ETag, else Last-Modified, else None."""
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        return self.last_modified

    def validator(self) -> str | None:
        """The If-Range value to resume the ``.part`` as one prefix; None (no resume) without
        one, or when the record is of ranges (its bytes are not a prefix)."""
        return None if self.segments is not None else self.if_range()

    def to_bytes(self) -> bytes:
        version = 1 if self.segments is None else 2
        doc: dict[str, Any] = {"kind": "partial", "version": version, "url": self.url}
        doc["etag"] = self.etag
        doc["last_modified"] = self.last_modified
        if self.segments is not None:
            doc["size"] = self.size
            doc["segments"] = [list(s) for s in self.segments]
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def read(cls, path: Path) -> PartialTransfer | None:
        """The record at ``path``; None when missing or unreadable (the part then restarts:
        a resume is an optimisation, never needed for correctness)."""
        try:
            raw = json.loads(path.read_bytes())
            if raw.get("kind") != "partial" or raw.get("version") not in (1, 2):
                return None
            record = cls(
                url=str(raw["url"]), etag=raw.get("etag"), last_modified=raw.get("last_modified")
            )
            if raw["version"] == 2:
                record.size = _count(raw["size"])
                record.segments = tuple(
                    (_count(start), _count(end), _count(done))
                    for start, end, done in raw["segments"]
                )
            return record
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None


def _count(value: object) -> int:
    """A non-negative JSON integer, or ValueError."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"not a count: {value!r}")
    return value
