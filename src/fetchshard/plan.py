"""Planning: check the output folder belongs to this run, then stream the input once and
keep this rank's slice in its ledger (DESIGN.md step 2)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from fetchshard.assignment import Assignment, HostCounter
from fetchshard.config import Config
from fetchshard.errors import ErrorKind, RunMismatchError
from fetchshard.faults import crash_point
from fetchshard.inputs import InputBatch, InputSet, fingerprint_files, open_inputs, read_ahead
from fetchshard.itemfile import to_batch
from fetchshard.ledger import NO_HOST, Ledger
from fetchshard.output.extras import extras_json, serialize_schema
from fetchshard.partition import (
    ID_MASK,
    BadUrl,
    ParsedUrl,
    Partitioner,
    canonical_host,
    hash64,
    item_id,
    item_key,
    normalize_url,
)
from fetchshard.placement import (
    Placement,
    RankShares,
    is_counted,
    partition_fingerprint,
)
from fetchshard.planstep.reader import (
    check_plan,
    count_bad,
    ledger_columns,
    plan_assignment,
    rank_tables,
)
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.layout import PlanPaths, items_file
from fetchshard.runfolder.prepare import fingerprint_difference
from fetchshard.strings import byte_positions, rows_with_bytes, string_buffers

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Planning was stopped by a signal; the ledger is consistent, rerun to go on."""


@dataclass(frozen=True, slots=True)
class PlanResult:
    rows: int  # input rows read (blank lines are not rows)
    kept: int  # rows of this rank
    new: int  # items new to the ledger (kept minus duplicates)
    bad: int  # kept rows that are not fetchable URLs
    skipped: bool  # the ledger already held a complete plan


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


_PLANNED_BY = ("world_size", "partition", "input")  # what a plan step's slices depend on


def plan_fingerprint(config: Config, files: list[Path], world_size: int) -> dict[str, Any]:
    """What a plan step's files were made for (``plan/plan.json``)."""
    whole = fingerprint(config, files, world_size)
    return {key: whole[key] for key in _PLANNED_BY}


def plan_in_use(config: Config, files: list[Path], world_size: int) -> PlanPaths | None:
    """The output folder's plan step, checked complete and made for this run; None when the
    folder has none (planning then reads the input). Raises PlanError otherwise."""
    paths = PlanPaths(Path(config.output.dir))
    if not paths.manifest.exists():
        return None
    check_plan(paths, plan_fingerprint(config, files, world_size))
    return paths


def plan(
    ledger: Ledger,
    config: Config,
    rank: RankInfo,
    fp: dict[str, Any],
    inputs: InputSet | None = None,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] | None = None,
    on_count: Callable[[int], None] | None = None,
    from_plan: PlanPaths | None = None,
) -> PlanResult:
    """Stream the input once and insert this rank's slice into the ledger (idempotent).

    ``inputs``: the files the run resolved and checked (and fingerprinted); by default they
    are resolved from ``config.input`` here. ``from_plan``: read the slice from the plan
    step's files instead (planstep/), which the caller has checked."""
    recorded = ledger.get_meta("fingerprint")
    if recorded is not None and recorded != fp:
        raise RunMismatchError(
            f"{ledger.path} was planned for a different run "
            f"({fingerprint_difference(recorded, fp)}); "
            "rerun with --restart to discard it and start over"
        )
    if ledger.get_meta("planned"):
        if ledger.items_missing():
            raise RunMismatchError(
                f"{items_file(ledger.path)} is missing, but {ledger.path} records a plan that "
                "needs it; rerun with --restart to start over"
            )
        return PlanResult(rows=0, kept=0, new=0, bad=0, skipped=True)
    if recorded is None:
        ledger.set_meta("fingerprint", fp)

    inp = config.input
    inputs = inputs or open_inputs(inp)
    if from_plan is not None:
        return _plan_from_slices(ledger, rank, inputs, from_plan, should_stop, on_batch)
    spread = config.partition.spread
    placement: Placement
    shares = RankShares(rank.rank)
    if not is_counted(spread):
        placement = Partitioner(rank.world_size, int(spread))
    elif rank.world_size == 1:
        placement = Partitioner(1, 1)
    else:
        hosts, counts = count_hosts(
            inputs, inp.max_url_length, should_stop=should_stop, on_batch=on_count
        )
        assignment = Assignment.from_counts(hosts, counts, rank.world_size)
        placement = assignment
        shares = RankShares.counted(assignment, rank.rank)
    slicer = _Slicer(placement, rank.rank, inp.max_url_length)
    rows = kept = bad = 0
    schema_seen = ledger.get_meta("extras_schema") is not None
    ledger.begin_plan()
    try:
        for batches, batch in enumerate(read_ahead(inputs.batches()), 1):
            if should_stop():
                raise Interrupted("planning interrupted")
            meta: dict[str, Any] = {}
            if not schema_seen:
                meta["extras_schema"] = (
                    serialize_schema(batch.extras.schema) if batch.extras is not None else ""
                )
                schema_seen = True
            mine = slicer.select(batch, fast=FAST_PATH)
            rows += len(batch.urls)
            kept += mine.kept
            bad += mine.bad
            staged = mine.batches(batch.extras, batch.first_row)
            ledger.insert_planned(mine.hosts, staged, meta=meta)
            crash_point("plan_batch", batches)
            if on_batch is not None:
                on_batch(rows)
        new = ledger.finish_plan(meta={"planned": True, "host_shares": shares.to_json()})
    finally:
        ledger.discard_plan()
    log.info(
        "planned %d of %d input rows for this rank (%d new, %d duplicates, %d bad URLs)",
        kept,
        rows,
        new,
        kept - new,
        bad,
    )
    return PlanResult(rows=rows, kept=kept, new=new, bad=bad, skipped=False)


def _plan_from_slices(
    ledger: Ledger,
    rank: RankInfo,
    inputs: InputSet,
    paths: PlanPaths,
    should_stop: Callable[[], bool],
    on_batch: Callable[[int], None] | None,
) -> PlanResult:
    """Planning from a plan step: this rank's runs of every slice into the ledger."""
    assignment = plan_assignment(paths, rank.world_size)
    shares = RankShares.counted(assignment, rank.rank)
    rows = bad = 0
    ledger.begin_plan()
    try:
        meta: dict[str, Any] = {"extras_schema": extras_schema_of(inputs)}
        for table in rank_tables(paths, rank.world_size, rank.rank, assignment):
            if should_stop():
                raise Interrupted("planning interrupted")
            columns, positions, hosts = ledger_columns(table)
            ledger.insert_planned(hosts, [(to_batch(columns, len(table)), positions)], meta=meta)
            meta = {}
            rows += len(table)
            bad += count_bad(table)
            if on_batch is not None:
                on_batch(rows)
        if meta:
            ledger.set_meta("extras_schema", meta["extras_schema"])
        new = ledger.finish_plan(meta={"planned": True, "host_shares": shares.to_json()})
    finally:
        ledger.discard_plan()
    log.info(
        "planned %d rows for this rank from the plan in %s (%d new, %d duplicates, %d bad URLs)",
        rows,
        paths.folder,
        new,
        rows - new,
        bad,
    )
    return PlanResult(rows=rows, kept=rows, new=new, bad=bad, skipped=False)


def extras_schema_of(inputs: InputSet) -> str:
    """The extras schema the ledger records ("" without extras), as the batches carry it."""
    schema = inputs.specs[0].extras_schema if inputs.specs else None
    return serialize_schema(schema) if schema is not None else ""


def rank_shares(ledger: Ledger, config: Config, rank: RankInfo) -> RankShares:
    """The rank's share of each host's rate, as its plan placed the hosts."""
    spread = config.partition.spread
    if not is_counted(spread):
        return RankShares(rank.rank, Partitioner(rank.world_size, int(spread)))
    return RankShares.from_json(rank.rank, ledger.get_meta("host_shares"))


def count_hosts(
    inputs: InputSet,
    max_url_length: int,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] | None = None,
    fast: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The counting pass: the input rows of every host (``hash64`` of the host, sorted, and
    its count; rows that are no fetchable URL count under ``hash64("")``)."""
    slicer = _Slicer(Partitioner(1, 1), 0, max_url_length)
    counter = HostCounter()
    rows = 0
    for batch in read_ahead(inputs.batches()):
        if should_stop():
            raise Interrupted("planning interrupted while counting hosts")
        counter.add(slicer.host_hashes(batch, fast=FAST_PATH if fast is None else fast))
        rows += len(batch.urls)
        if on_batch is not None:
            on_batch(rows)
    return counter.result()


# -------------------------------------------------------------------------- one batch
#
# Most URLs are already in normal form (normalize_url returns them unchanged). Those are found
# vectorized (partition.CANONICAL_URL, checked on the bytes by _canonical and per distinct
# origin by partition.canonical_host); their hosts are hashed once per origin, their keys in
# one pass, and numpy computes their ranks. Every other row (nulls, bad URLs, URLs that
# normalize_url changes) goes through the per-row reference code, which is what FAST_PATH =
# False runs on every row. Both give the same ledger (tests/unit/test_plan.py).

FAST_PATH = True

_ID_MASK = np.uint64(ID_MASK)
_ORIGIN_CACHE_LIMIT = 1 << 16  # origins whose facts are kept (a few MB)
_h64 = xxhash.xxh3_64_intdigest
_EMPTY = np.zeros(0, dtype=np.int64)


_NO_HOST = hash64("")  # the "host" of rows that are no fetchable URL, as the partition sees it


@dataclass(frozen=True, slots=True)
class _Origin:
    host: str
    host_id: int
    host_hash: int  # hash64(host)


@dataclass(slots=True)
class _Selected:
    """This rank's rows of a batch: canonical rows (arrays) and per-row reference results."""

    fast_rows: np.ndarray = field(default_factory=lambda: _EMPTY)  # input row indices
    fast_ids: np.ndarray = field(default_factory=lambda: _EMPTY)  # item ids
    fast_hosts: np.ndarray = field(default_factory=lambda: _EMPTY)  # host ids
    fast_urls: pa.Array | None = None
    # The full hashes of the fast rows' hosts and keys, and each row's origin (the plan step
    # keeps them; see plan_rows).
    fast_host_hashes: np.ndarray = field(default_factory=lambda: _EMPTY)
    fast_key_hashes: np.ndarray = field(default_factory=lambda: _EMPTY)
    fast_origins: np.ndarray = field(default_factory=lambda: _EMPTY)
    origins: list[_Origin | None] = field(default_factory=list)
    slow_rows: list[int] = field(default_factory=list)
    slow: list[tuple[int, int, str, str | None, str | None, str | None]] = field(
        default_factory=list
    )  # (item_id, host_id, url, fetch_url, error_kind, error_message)
    slow_hashes: list[tuple[int, int, str | None]] = field(default_factory=list)  # +host
    hosts: set[tuple[int, str]] = field(default_factory=set)
    bad: int = 0

    @property
    def kept(self) -> int:
        return len(self.fast_rows) + len(self.slow_rows)

    def batches(
        self, extras: pa.Table | None, first_row: int
    ) -> list[tuple[pa.RecordBatch, np.ndarray]]:
        """The rows to stage, each with its extras, and their input row numbers (when an item
        id repeats, the ledger keeps its first row)."""
        out: list[tuple[pa.RecordBatch, np.ndarray]] = []
        if len(self.fast_rows):
            columns: dict[str, Any] = {
                "item_id": self.fast_ids,
                "host_id": self.fast_hosts,
                "url": self.fast_urls,
            }
            if extras is not None:
                columns["extras"] = _encode(extras, self.fast_rows)
            out.append((to_batch(columns, len(self.fast_rows)), first_row + self.fast_rows))
        if self.slow:
            names = ("item_id", "host_id", "url", "fetch_url", "error_kind", "error_message")
            columns = dict(zip(names, zip(*self.slow, strict=True), strict=True))
            rows = np.array(self.slow_rows, dtype=np.int64)
            if extras is not None:
                columns["extras"] = _encode(extras, rows)
            out.append((to_batch(columns, len(rows)), first_row + rows))
        return out

    def plan_rows(self, extras: pa.Table | None, first_row: int) -> pa.Table:
        """The rows as the plan step writes them (planstep/slicefiles.py ITEMS)."""
        tables = []
        for batch, positions in self.batches(extras, first_row):
            tables.append(pa.Table.from_batches([batch]).append_column("position", [positions]))
        table = pa.concat_tables(tables)
        names = pa.array([o.host if o else None for o in self.origins], pa.string())
        hashes = [
            np.asarray(self.fast_host_hashes, np.uint64),
            np.array([h for h, _, _ in self.slow_hashes], np.uint64),
        ]
        keys = [
            np.asarray(self.fast_key_hashes, np.uint64),
            np.array([k for _, k, _ in self.slow_hashes], np.uint64),
        ]
        host_names = pa.concat_arrays(
            [
                names.take(pa.array(self.fast_origins, pa.int64())),
                pa.array([name for _, _, name in self.slow_hashes], pa.string()),
            ]
        )
        table = table.append_column("host_hash", [np.concatenate(hashes)])
        table = table.append_column("key_hash", [np.concatenate(keys)])
        return table.append_column("host", [host_names])


def _encode(extras: pa.Table, rows: np.ndarray) -> pa.Array:
    return extras_json(_take(extras, rows))


def _take(values: Any, rows: np.ndarray) -> Any:
    """``values.take(rows)`` for sorted distinct ``rows``; a zero-copy slice when they are
    consecutive (at world size 1, nearly every batch: a take copies every URL)."""
    if len(rows) and int(rows[-1]) - int(rows[0]) == len(rows) - 1:
        return values.slice(int(rows[0]), len(rows))
    return values.take(pa.array(rows, type=pa.int64()))


def _distinct(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(codes, return_inverse=True) for small non-negative ints, without sorting."""
    present = np.zeros(int(codes.max()) + 1 if len(codes) else 0, dtype=bool)
    present[codes] = True
    return np.flatnonzero(present), (np.cumsum(present) - 1)[codes]


def _not_canonical_byte(data: np.ndarray) -> np.ndarray:
    return (data <= 0x20) | (data >= 0x7F) | (data == 0x23)  # type: ignore[no-any-return]


def _canonical(urls: pa.Array, max_length: int) -> np.ndarray:
    """Rows that may be canonical (partition.CANONICAL_URL) as far as their bytes tell: at
    most ``max_length`` long, "http://" or "https://", printable ASCII without '#', not ending
    in '?'. The origin (and that there is a path) is checked by the caller."""
    offsets, data = string_buffers(urls)
    lengths = np.diff(offsets)
    ok = (lengths >= len("http://a/")) & (lengths <= max_length)
    if urls.null_count:
        ok &= urls.is_valid().to_numpy(zero_copy_only=False)
    if not ok.any():
        return ok
    ok[rows_with_bytes(offsets, data, _not_canonical_byte)] = False
    ok &= data[np.where(ok, offsets[1:] - 1, offsets[0])] != ord("?")
    http = pc.or_(pc.starts_with(urls, "http://"), pc.starts_with(urls, "https://"))
    ok &= http.fill_null(False).to_numpy(zero_copy_only=False)
    return ok


def _origins(urls: pa.Array, rows: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """The origin ("http[s]://netloc": up to the first '/' from the 9th byte on) of each of
    ``rows`` (which start with "http://" or "https://"), and whether a '/' follows it. Without
    one the origin is empty; an origin that is no "http[s]://netloc" fails canonical_host."""
    offsets, data = string_buffers(urls)
    starts, stops = offsets[rows], offsets[rows + 1]
    slashes = byte_positions(offsets, data, _is_slash)
    after = np.searchsorted(slashes, starts + len("https://"))
    found = after < len(slashes)
    ends = slashes[np.where(found, after, 0)] if len(slashes) else stops
    has_path = found & (ends < stops)
    ends = np.where(has_path, ends, starts)
    # Zero copy: a string array over the URLs' bytes whose even values are the origins
    # (bounds start0, end0, start1, end1, ...; the odd values are the bytes in between).
    bounds = np.empty(2 * len(rows), dtype=np.int32)
    bounds[0::2], bounds[1::2] = starts, ends
    spans = pa.Array.from_buffers(
        pa.string(), len(bounds) - 1, [None, pa.py_buffer(bounds), urls.buffers()[2]]
    )
    return spans.take(pa.array(np.arange(0, len(bounds), 2))), has_path


def _is_slash(data: np.ndarray) -> np.ndarray:
    return data == 0x2F  # type: ignore[no-any-return]


class _Slicer:
    """Picks this rank's rows of each batch under a placement; also tells each row's host."""

    def __init__(self, placement: Placement, rank: int, max_url_length: int) -> None:
        self.placement = placement
        self.rank = rank
        self.max_url_length = max_url_length
        self._origins: dict[str, _Origin | None] = {}

    def select(self, batch: InputBatch, *, fast: bool = True) -> _Selected:
        out = _Selected()
        n = len(batch.urls)
        slow_rows: Any = range(n)
        if fast and n:
            usable, ids = _ids(batch)
            if usable:
                slow_rows = self._select_canonical(batch.urls, ids, out)
        self._select_rows(batch, slow_rows, out)
        return out

    def host_hashes(self, batch: InputBatch, *, fast: bool = True) -> np.ndarray:
        """``hash64`` of every row's host (of "" for a row that is no fetchable URL)."""
        n = len(batch.urls)
        out = np.empty(n, dtype=np.uint64)
        slow: Any = range(n)
        if fast and n:
            mask = _canonical(batch.urls, self.max_url_length)
            rows = np.flatnonzero(mask)
            if len(rows):
                per_row, _, usable, hashes, has_path = self._canonical_origins(batch.urls, rows)
                good = usable[per_row] & has_path
                out[rows[good]] = hashes[per_row[good]]
                mask[rows[~good]] = False
            slow = np.flatnonzero(~mask).tolist()
        texts = batch.urls.take(pa.array(slow, type=pa.int64())).to_pylist()
        for index, text in zip(slow, texts, strict=True):
            parsed = self._parse(text)[1]
            out[index] = hash64(parsed.host) if parsed is not None else _NO_HOST
        return out

    def _parse(self, text: str | None) -> tuple[str | None, ParsedUrl | None]:
        """(why the row is no URL, or None; its parse, or None)."""
        max_length = self.max_url_length
        try:
            if text is None:
                raise BadUrl("URL is missing or not valid UTF-8")
            if len(text) > max_length:
                raise BadUrl(f"URL longer than input.max_url_length={max_length}")
            return None, normalize_url(text)
        except BadUrl as exc:
            return str(exc), None

    def _origin(self, origin: str) -> _Origin | None:
        if origin in self._origins:
            return self._origins[origin]
        host = canonical_host(origin)
        found = None
        if host is not None:
            found = _Origin(host, item_id(host) or 1, hash64(host))
        if len(self._origins) >= _ORIGIN_CACHE_LIMIT:
            self._origins.clear()
        self._origins[origin] = found
        return found

    def _canonical_origins(
        self, urls: pa.Array, rows: np.ndarray
    ) -> tuple[np.ndarray, list[_Origin | None], np.ndarray, np.ndarray, np.ndarray]:
        """For canonical ``rows``: each row's origin index, the origins, which are usable,
        their host hashes, and whether each row has a path."""
        spans, has_path = _origins(urls, rows)
        encoded = spans.dictionary_encode()  # every dictionary value occurs
        per_row = encoded.indices.to_numpy().astype(np.int64)
        origins = [self._origin(origin) for origin in encoded.dictionary.to_pylist()]
        usable = np.array([o is not None for o in origins], dtype=bool)
        hashes = np.array([o.host_hash if o else 0 for o in origins], dtype=np.uint64)
        return per_row, origins, usable, hashes, has_path

    def _select_canonical(self, urls: pa.Array, ids: pa.Array | None, out: _Selected) -> Any:
        """Select this rank's canonical rows into ``out``; return the other rows' indices."""
        mask = _canonical(urls, self.max_url_length)
        rows = np.flatnonzero(mask)
        if not len(rows):
            return list(range(len(urls)))
        per_row, origins, usable, host_hashes, has_path = self._canonical_origins(urls, rows)
        # Rows of hosts that never reach this rank need no key hash.
        reach = usable & self.placement.reaches(host_hashes, self.rank)
        cand = np.flatnonzero(reach[per_row] & has_path)
        if len(cand):
            keys = _take(urls, rows[cand])
            if ids is not None:
                keys = pc.binary_join_element_wise(
                    keys, _take(ids, rows[cand]), "\x00", null_handling="skip"
                )
            hashes = np.fromiter(
                map(_h64, keys.cast(pa.binary()).to_pylist()), dtype=np.uint64, count=len(cand)
            )
            ranks = self.placement.ranks_of(host_hashes[per_row[cand]], hashes)
            mine = ranks == self.rank
            picked = cand[mine]
            out.fast_rows = rows[picked]
            out.fast_ids = (hashes[mine] & _ID_MASK).astype(np.int64)
            host_ids = np.array([o.host_id if o else 0 for o in origins], dtype=np.int64)
            out.fast_hosts = host_ids[per_row[picked]]
            out.fast_urls = _take(urls, rows[picked])
            out.fast_host_hashes = host_hashes[per_row[picked]]
            out.fast_key_hashes = hashes[mine]
            out.fast_origins = per_row[picked]
            out.origins = origins
            for index in _distinct(per_row[picked])[0].tolist():
                origin = origins[index]
                assert origin is not None
                out.hosts.add((origin.host_id, origin.host))
        slow = ~mask
        slow[rows[~(usable[per_row] & has_path)]] = True
        return np.flatnonzero(slow).tolist()

    def _select_rows(self, batch: InputBatch, indices: Any, out: _Selected) -> None:
        """The per-row reference: normalize_url on each row, then the placement's ranks."""
        ids = batch.ids
        texts = batch.urls.take(pa.array(indices, type=pa.int64())).to_pylist()
        parsed_rows = []
        host_hashes = np.empty(len(texts), dtype=np.uint64)
        key_hashes = np.empty(len(texts), dtype=np.uint64)
        for i, (index, text) in enumerate(zip(indices, texts, strict=True)):
            user_id = ids[index] if ids is not None else None
            row_no = batch.first_row + index
            error, parsed = self._parse(text)
            if parsed is None:
                key = item_key(text if text is not None else f"\x00row {row_no}", user_id)
                host_hashes[i] = _NO_HOST
            else:
                key = item_key(parsed.url, user_id)
                host_hashes[i] = hash64(parsed.host)
            key_hashes[i] = hash64(key)
            parsed_rows.append((index, text, key, error, parsed, row_no))
        if not parsed_rows:
            return
        ranks = self.placement.ranks_of(host_hashes, key_hashes).tolist()
        for i, ((index, text, key, error, parsed, _), rank) in enumerate(
            zip(parsed_rows, ranks, strict=True)
        ):
            if rank != self.rank:
                continue
            out.slow_rows.append(index)
            host = parsed.host if parsed is not None else None
            out.slow_hashes.append((int(host_hashes[i]), int(key_hashes[i]), host))
            if parsed is None:
                shown = (text or "")[: self.max_url_length]
                message = f"{batch.where(index)}: {error}"
                out.slow.append(
                    (item_id(key), NO_HOST, shown, None, ErrorKind.BAD_URL.value, message)
                )
                out.bad += 1
                continue
            # Host ids are hashes too, so no lookup is needed while planning; 0 is reserved.
            host_id = item_id(parsed.host) or 1
            fetch_url = parsed.url if parsed.url != text else None
            out.slow.append((item_id(key), host_id, text, fetch_url, None, None))
            out.hosts.add((host_id, parsed.host))


def _ids(batch: InputBatch) -> tuple[bool, pa.Array | None]:
    """The batch's id column as Arrow strings (None without one); False: ids Arrow cannot
    hold as strings, which only the per-row path handles."""
    if batch.ids is None:
        return True, None
    try:
        return True, pa.array(batch.ids, type=pa.string())
    except (pa.ArrowException, UnicodeError):
        return False, None
