"""The row selector: one rank's rows of an input batch, normalized and hashed, as its ledger
(or a plan step's slice) holds them; and the host hash of every row, for the counting pass.

Most URLs are already in normal form (normalize_url returns them unchanged). Those are found
vectorized (urls.CANONICAL_URL, checked on the bytes by _canonical and per distinct origin by
urls.canonical_host); their hosts are hashed once per origin, their keys in one pass, and
numpy computes their ranks. Every other row (nulls, bad URLs, URLs that normalize_url changes)
goes through the per-row reference code, which is what FAST_PATH = False runs on every row.
Both give the same ledger (tests/unit/planning/test_rank.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

from fetchshard.errors import ErrorKind
from fetchshard.inputs import InputBatch
from fetchshard.ledger import ITEM_COLUMNS, NO_HOST, to_batch
from fetchshard.output.extras import extras_json
from fetchshard.planning.placement import Placement
from fetchshard.strings import byte_positions, rows_with_bytes, string_buffers
from fetchshard.urls import (
    ID_MASK,
    BadUrl,
    ParsedUrl,
    canonical_host,
    hash64,
    item_id,
    item_key,
    normalize_url,
)

FAST_PATH = True  # False: every row through the per-row reference (tests)

_ID_MASK = np.uint64(ID_MASK)
_ORIGIN_CACHE_LIMIT = 1 << 16  # origins whose facts are kept (a few MB)
_h64 = xxhash.xxh3_64_intdigest
_EMPTY = np.zeros(0, dtype=np.int64)


_NO_HOST = hash64("")  # the "host" of rows that are no fetchable URL, as placement sees it


@dataclass(frozen=True, slots=True)
class _Origin:
    host: str
    host_id: int
    host_hash: int  # hash64(host)


@dataclass(slots=True)
class Selected:
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
            names = [name for name in ITEM_COLUMNS if name != "extras"]  # as ``slow`` holds them
            columns = dict(zip(names, zip(*self.slow, strict=True), strict=True))
            rows = np.array(self.slow_rows, dtype=np.int64)
            if extras is not None:
                columns["extras"] = _encode(extras, rows)
            out.append((to_batch(columns, len(rows)), first_row + rows))
        return out

    def plan_rows(self, extras: pa.Table | None, first_row: int) -> pa.Table:
        """The rows as the plan step writes them (slicefiles.py ITEMS)."""
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
    """Rows that may be canonical (urls.CANONICAL_URL) as far as their bytes tell: at
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


class Selector:
    """Picks one rank's rows of each batch under a placement; also tells each row's host.

    ``FixedSpread(1, 1)`` and rank 0: every row (the counting pass, a plan step's slice)."""

    def __init__(self, placement: Placement, rank: int, max_url_length: int) -> None:
        self.placement = placement
        self.rank = rank
        self.max_url_length = max_url_length
        self._origins: dict[str, _Origin | None] = {}

    def select(self, batch: InputBatch, *, fast: bool | None = None) -> Selected:
        """The rank's rows of ``batch`` (``fast``: by default :data:`FAST_PATH`)."""
        if fast is None:
            fast = FAST_PATH
        out = Selected()
        n = len(batch.urls)
        slow_rows: Any = range(n)
        if fast and n:
            usable, ids = _ids(batch)
            if usable:
                slow_rows = self._select_canonical(batch.urls, ids, out)
        self._select_rows(batch, slow_rows, out)
        return out

    def host_hashes(self, batch: InputBatch, *, fast: bool | None = None) -> np.ndarray:
        """``hash64`` of every row's host (of "" for a row that is no fetchable URL)."""
        if fast is None:
            fast = FAST_PATH
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

    def _select_canonical(self, urls: pa.Array, ids: pa.Array | None, out: Selected) -> Any:
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

    def _select_rows(self, batch: InputBatch, indices: Any, out: Selected) -> None:
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
