"""Planning: the vectorized path gives exactly the ledger of the per-row reference code.

The reference is the per-row code (``select.FAST_PATH = False``), and, independently of the
ledger code, :func:`_oracle`: the plan as the original per-row loop computed it, with the
ledger's INSERT OR IGNORE (first row of an item id wins) and host numbering.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fetchshard.config import Config, load_config
from fetchshard.errors import ErrorKind, RunMismatchError
from fetchshard.inputs import iter_batches
from fetchshard.ledger import NO_HOST, Counts, Ledger
from fetchshard.output.extras import encode_extras, encode_extras_fast
from fetchshard.planning import Interrupted, select
from fetchshard.planning.assignment import Assignment
from fetchshard.planning.placement import FixedSpread
from fetchshard.planning.rank import RankPlanResult, plan_rank
from fetchshard.planning.select import Selected, Selector
from fetchshard.ranks import RankInfo
from fetchshard.runfolder.layout import ledger_paths
from fetchshard.urls import (
    CANONICAL_URL,
    BadUrl,
    canonical_host,
    hash64,
    item_id,
    item_key,
    normalize_url,
)
from util import planned_items

MAX = 48  # input.max_url_length: small, so generated URLs fall on both sides of it

SPECIAL: list[str | None] = [
    "http://example.com/a.jpg",
    "https://example.com/a.jpg",
    "http://img1.example.org/data/1/0.jpg?x=1&y=2",
    "HTTP://Example.COM/Path",
    "HtTpS://WWW.Example.com/a/B",
    "http://EXAMPLE.com/x",
    "http://example.com:80/a",
    "https://example.com:443/a",
    "https://example.com:80/a",
    "http://example.com:443/a",
    "http://example.com:0/a",
    "http://example.com:65535/a",
    "http://example.com:65536/a",
    "http://example.com:99999/a",
    "http://example.com:080/a",
    "http://example.com:0080/a",
    "http://example.com:8080/a",
    "http://example.com:/a",
    "http://example.com:abc/a",
    "http://user@example.com/a",
    "http://user:pw@example.com/a",
    "http://@example.com/a",
    "http://example.com/a#frag",
    "http://example.com/a#",
    "http://example.com/a?b=1#frag",
    "http://example.com?q=1",
    "http://example.com",
    "/a row that starts with a slash, right after a URL without one",
    "https://example.com",
    "//x/y",
    "http://example.com/",
    "http://example.com/a?",
    "http://example.com/a??",
    "http://example.com/a?b?",
    "http://[::1]/x",
    "http://[::1]:8080/x",
    "http://[2001:DB8::1]:80/",
    "http://[::1/x",
    "http://127.0.0.1:9000/",
    "http://bücher.de/",
    "http://BÜCHER.de/x",
    "http://xn--bcher-kva.de/x",
    "http://example.com/%7Euser/%41",
    "http://ex%41mple.com/a",
    "http://example.com/a b",
    "http://exa mple.com/",
    "http://example.com/a\tb",
    "http://example.com/\x00",
    "http://example.com/\x7f",
    "http://example.com/\x1f",
    " http://example.com/lead",
    "http://example.com/trail ",
    "\thttp://example.com/tab\t",
    "\u3000http://example.com/ideographic-space\u3000",
    "\xa0http://example.com/nbsp",
    "http://example.com/ü",
    "http://example.com/\u2028",
    "javascript:alert(1)",
    "ftp://example.com/file",
    "mailto:someone@example.com",
    "file:///etc/passwd",
    "example.com/path",
    "//example.com/path",
    "http:///path",
    "http://",
    "http://:80/",
    "http://./",
    "http://-/x",
    "http://a..b/x",
    'http://example.com/"quoted"',
    "http://example.com/@at",
    "http://example.com/[x]",
    "http://example.com/a\\b",
    "http://example.com//double",
    "",
    "   ",
    None,
    None,
    "http://example.com/a.jpg",  # duplicates
    "HTTP://EXAMPLE.COM/a.jpg",
    "http://example.com/a.jpg#other",
    "http://example.com:80/a.jpg",
]


def _boundary() -> list[str | None]:
    out: list[str | None] = []
    for total in (MAX - 1, MAX, MAX + 1, MAX + 2):
        for prefix in ("http://example.com/", "HTTP://example.com/", "http://example.com:80/"):
            out.append(prefix + "p" * (total - len(prefix)))
    out.append("http://example.com/" + "ü" * MAX)
    return out


_SCHEMES = ["http", "https", "HTTP", "Https", "ftp", "javascript", ""]
_SEPS = ["://", "://", "://", "://", ":/", ":", "//"]
_USERS = [""] * 8 + ["user@", "user:pw@", "@"]
_HOSTS = [
    "example.com",
    "img7.example.org",
    "a",
    "Example.COM",
    "xn--bcher-kva.de",
    "bücher.de",
    "[::1]",
    "[2001:DB8::1]",
    "127.0.0.1",
    "",
    "a b",
    "host_name",
    "-x-",
    "ex%41mple.com",
    ".",
]
_PORTS = [""] * 8 + [
    ":80",
    ":443",
    ":0",
    ":1",
    ":65535",
    ":65536",
    ":99999",
    ":080",
    ":8080",
    ":",
    ":abc",
    ":00443",
]
_PATHS = [
    "",
    "/",
    "/a",
    "/a/b.jpg",
    "/a/b.jpg?w=1&h=2",
    "/%7Euser",
    "/ü",
    "/a b",
    "/a\tb",
    "//x",
    "/a#frag",
    "/a?",
    "/a??",
    "?q=1",
    "#f",
    "/\x00",
    "/\x7f",
    '/"q"',
    "/@x",
    "/[x]",
    "/a\\b",
    "/" + "long" * 8,
]
_WRAPS = [("", "")] * 10 + [(" ", ""), ("", " "), ("\t", "\n"), ("\u3000", ""), ("", "\xa0")]


def _random_urls(count: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    out: list[str | None] = []
    for _ in range(count):
        if rng.random() < 0.02:
            out.append(None)
            continue
        if out and rng.random() < 0.05:
            out.append(rng.choice(out))  # a duplicate
            continue
        if rng.random() < 0.6:  # mostly canonical pieces, to exercise the fast path
            url = (
                rng.choice(["http://", "https://"])
                + rng.choice(_HOSTS[:3])
                + rng.choice(["", "", "", ":8080", ":80", ":443", ":65536", ":1"])
                + rng.choice(["/", "/a", "/a/b.jpg", "/a?b=1", "/%7E", '/"', "/a?", "/a#"])
            )
            out.append(url)
            continue
        before, after = rng.choice(_WRAPS)
        url = (
            rng.choice(_SCHEMES)
            + rng.choice(_SEPS)
            + rng.choice(_USERS)
            + rng.choice(_HOSTS)
            + rng.choice(_PORTS)
            + rng.choice(_PATHS)
        )
        out.append(before + url + after)
    return out


def _urls(count: int = 3000, seed: int = 5) -> list[str | None]:
    return [*SPECIAL, *_boundary(), *_random_urls(count, seed)]


def _ids(n: int, seed: int) -> list[str | None]:
    rng = random.Random(seed)
    return [
        rng.choice([None, "", "1", "x", "ü", "a\x00b", str(rng.randrange(5))]) for _ in range(n)
    ]


def _config(path: Path, spread: int | str, batch_rows: int, **input_options: Any) -> Config:
    overrides: dict[str, Any] = {
        "input.paths": [str(path)],
        "input.max_url_length": MAX,
        "input.batch_rows": batch_rows,
        "partition.spread": spread,
    }
    overrides.update({f"input.{k}": v for k, v in input_options.items()})
    return load_config(environ={}, overrides=overrides)


def _ledger_contents(path: Path) -> dict[str, Any]:
    db = sqlite3.connect(path)
    try:
        return {
            "items": [tuple(r.values()) for r in planned_items(path)],
            "hosts": db.execute("SELECT seq, host_id, host FROM hosts ORDER BY seq").fetchall(),
            "meta": db.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
            "spans": db.execute("SELECT host_id, first, count FROM spans").fetchall(),
            "states": db.execute("SELECT COUNT(*) FROM states").fetchall(),
        }
    finally:
        db.close()


def _plan(
    tmp_path: Path,
    name: str,
    config: Config,
    rank: int,
    world: int,
    *,
    fast: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[RankPlanResult, dict[str, Any]]:
    monkeypatch.setattr(select, "FAST_PATH", fast)
    path = tmp_path / f"{name}.sqlite"
    with Ledger(ledger_paths(path)) as ledger:
        result = plan_rank(ledger, config, RankInfo(rank, world, "test"), {"fp": 1})
    assert not path.with_suffix(".plan").exists()
    return result, _ledger_contents(path)


def _plan_both(
    tmp_path: Path,
    name: str,
    config: Config,
    rank: int,
    world: int,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[RankPlanResult, dict[str, Any]]:
    """Plan with the fast path and with the per-row path; both must give the same ledger."""
    fast, got = _plan(tmp_path, f"f{name}", config, rank, world, fast=True, monkeypatch=monkeypatch)
    slow, want = _plan(
        tmp_path, f"s{name}", config, rank, world, fast=False, monkeypatch=monkeypatch
    )
    assert got == want
    assert fast == slow
    return fast, got


def _oracle(
    config: Config, rank: int, world: int
) -> tuple[dict[int, tuple[Any, ...]], list[str], int, int]:
    """The original per-row plan, with INSERT OR IGNORE and host numbering done by hand."""
    max_length = config.input.max_url_length
    rank_of = _oracle_placement(config, world)
    items: dict[int, tuple[Any, ...]] = {}
    hosts: list[str] = []
    known: set[str] = set()
    kept = bad = 0
    for batch in iter_batches(config.input):
        extras = batch.extras.to_pylist() if batch.extras is not None else None
        batch_hosts: set[str] = set()
        for index, text in enumerate(batch.urls.to_pylist()):
            user_id = batch.ids[index] if batch.ids is not None else None
            row_no = batch.first_row + index
            extra = (
                json.dumps(list(extras[index].values()), separators=(",", ":"))
                if extras is not None
                else None
            )
            try:
                if text is None:
                    raise BadUrl("URL is missing or not valid UTF-8")
                if len(text) > max_length:
                    raise BadUrl(f"URL longer than input.max_url_length={max_length}")
                parsed = normalize_url(text)
            except BadUrl as exc:
                key = item_key(text if text is not None else f"\x00row {row_no}", user_id)
                if rank_of("", key) != rank:
                    continue
                kept += 1
                bad += 1
                row = (
                    NO_HOST,
                    (text or "")[:max_length],
                    None,
                    extra,
                    ErrorKind.BAD_URL.value,
                    f"input row {row_no}: {exc}",
                )
                items.setdefault(item_id(key), row)
                continue
            key = item_key(parsed.url, user_id)
            if rank_of(parsed.host, key) != rank:
                continue
            kept += 1
            fetch_url = parsed.url if parsed.url != text else None
            row = (item_id(parsed.host) or 1, text, fetch_url, extra, None, None)
            items.setdefault(item_id(key), row)
            batch_hosts.add(parsed.host)
        for host in sorted(batch_hosts - known):
            hosts.append(host)
            known.add(host)
    return items, hosts, kept, bad


def _oracle_placement(config: Config, world: int) -> Callable[[str, str], int]:
    """rank_of(host, key): the fixed spread's, or the assignment from hosts counted by hand."""
    spread = config.partition.spread
    if spread != "auto" or world == 1:
        return FixedSpread(world, 1 if spread == "auto" else int(spread)).rank_of
    counts: Counter[int] = Counter()
    for batch in iter_batches(config.input):
        for text in batch.urls.to_pylist():
            try:
                if text is None or len(text) > config.input.max_url_length:
                    raise BadUrl("")
                host = normalize_url(text).host
            except BadUrl:
                host = ""
            counts[hash64(host)] += 1
    hashes = np.array(sorted(counts), dtype=np.uint64)
    assignment = Assignment.from_counts(hashes, np.array([counts[int(h)] for h in hashes]), world)
    return lambda host, key: assignment.rank_of(hash64(host), hash64(key))


def _write_parquet(path: Path, urls: Sequence[str | None], ids: Sequence[str | None]) -> Path:
    n = len(urls)
    pq.write_table(
        pa.table(
            {
                "url": pa.array(urls, type=pa.string()),
                "key": pa.array(ids, type=pa.string()),
                "caption": [f"c{i}" if i % 7 else None for i in range(n)],
                "n": list(range(n)),
            }
        ),
        path,
        row_group_size=333,
    )
    return path


CASES = [(1, 1), (1, 16), (2, 1), (3, 2), (8, 16), (16, 4), (5, 40)]
CASES += [(1, "auto"), (2, "auto"), (5, "auto"), (16, "auto")]


@pytest.mark.parametrize(("world", "spread"), CASES)
@pytest.mark.parametrize("with_id", [False, True], ids=["url-key", "id-column"])
def test_fast_path_gives_the_reference_ledger(
    world: int,
    spread: int | str,
    with_id: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    urls = _urls()
    src = _write_parquet(tmp_path / "in.parquet", urls, _ids(len(urls), 11))
    options: dict[str, Any] = {"id_column": "key"} if with_id else {}
    config = _config(src, spread, batch_rows=500, **options)
    ranks = sorted({0, world - 1, world // 2})
    total_kept = 0
    for rank in ranks:
        fast, got = _plan_both(tmp_path, str(rank), config, rank, world, monkeypatch)
        total_kept += fast.kept

        items, hosts, kept, bad = _oracle(config, rank, world)
        assert [(i, *row) for i, row in sorted(items.items())] == [
            (r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in got["items"]
        ]
        assert [h for _, _, h in got["hosts"]] == hosts
        assert [seq for seq, _, _ in got["hosts"]] == list(range(1, len(hosts) + 1))
        assert all(h == (item_id(host) or 1) for _, h, host in got["hosts"])
        assert (fast.kept, fast.bad, fast.new) == (kept, bad, len(items))
        assert fast.rows == len(urls)
        assert sum(count for _, _, count in got["spans"]) == len(got["items"])
        assert got["states"] == [(0,)], "planning gives no item a state"
    if len(ranks) == world:
        assert total_kept == len(urls)


def test_every_row_lands_on_exactly_one_rank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = _urls(1500, seed=9)
    src = _write_parquet(tmp_path / "in.parquet", urls, _ids(len(urls), 3))
    config = _config(src, 3, batch_rows=256, id_column="key")
    world = 4
    kept = [
        _plan(tmp_path, f"r{r}", config, r, world, fast=True, monkeypatch=monkeypatch)[0].kept
        for r in range(world)
    ]
    assert sum(kept) == len(urls)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "txt"])
def test_other_formats_match_the_reference(
    fmt: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = [u for u in _urls(1500, seed=21) if u is not None]
    if fmt == "txt":
        # One URL per line: no line breaks inside, and blank lines are not rows.
        urls = [u for u in urls if "\n" not in u and u.strip()]
        src = tmp_path / "in.txt"
        src.write_text("".join(u + "\n" for u in urls), encoding="utf-8")
        options: dict[str, Any] = {}
    elif fmt == "csv":
        src = tmp_path / "in.csv"
        ids = _ids(len(urls), 4)
        pacsv.write_csv(
            pa.table({"url": urls, "key": [i or "" for i in ids], "caption": urls}), src
        )
        options = {"id_column": "key"}
    else:
        src = tmp_path / "in.jsonl"
        ids = _ids(len(urls), 4)
        src.write_text(
            "".join(
                json.dumps({"url": u, "key": i, "n": k}) + "\n"
                for k, (u, i) in enumerate(zip(urls, ids, strict=True))
            ),
            encoding="utf-8",
        )
        options = {"id_column": "key"}
    config = _config(src, 4, batch_rows=300, **options)
    for world, rank in ((1, 0), (3, 1)):
        fast, got = _plan_both(tmp_path, str(world), config, rank, world, monkeypatch)
        items, _, kept, _ = _oracle(config, rank, world)
        assert len(got["items"]) == len(items) and fast.kept == kept


def test_canonical_rows_are_exactly_the_regex(tmp_path: Path) -> None:
    """The vectorized check selects the rows CANONICAL_URL (and the origin check) describe,
    and normalize_url leaves every one of those unchanged."""
    urls = _urls(4000, seed=2)
    array = pa.array(urls, type=pa.string())
    slicer = Selector(FixedSpread(1, 1), 0, MAX)
    selected = Selected()
    slow = set(slicer._select_canonical(array, None, selected))
    fast = set(selected.fast_rows.tolist())
    assert not fast & slow and len(fast | slow) == len(urls)
    regex = re.compile(CANONICAL_URL)
    for index, text in enumerate(urls):
        match = text is not None and len(text) <= MAX and regex.match(text)
        origin = text.split("/", 3)[:3] if match and text is not None else None
        host = canonical_host("/".join(origin)) if origin else None
        expected = bool(match) and host is not None
        assert (index in fast) == expected, text
        if expected:
            assert text is not None
            assert normalize_url(text).url == text
            assert normalize_url(text).host == host
    assert len(fast) > 100 and len(slow) > 100


def test_fetch_url_is_the_normalized_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    urls = ["http://example.com/a", "HTTP://Example.com:80/b#frag", "http://x.org/c?", "bad"]
    src = _write_parquet(tmp_path / "in.parquet", urls, [None] * len(urls))
    _, got = _plan(
        tmp_path, "l", _config(src, 1, batch_rows=10), 0, 1, fast=True, monkeypatch=monkeypatch
    )
    fetch = {row[2]: row[3] for row in got["items"]}
    assert fetch == {
        "http://example.com/a": None,
        "HTTP://Example.com:80/b#frag": "http://example.com/b",
        "http://x.org/c?": "http://x.org/c",
        "bad": None,
    }
    with Ledger(ledger_paths(tmp_path / "l.sqlite")) as ledger:
        host = item_id("example.com")
        work = ledger.queue.ready_items(host, (-1.0, -1), 1e18, 10)
        assert sorted((w.url, w.fetch_url) for w in work) == [
            ("HTTP://Example.com:80/b#frag", "http://example.com/b"),
            ("http://example.com/a", None),
        ]


def test_a_plan_whose_items_file_is_gone_is_refused(tmp_path: Path) -> None:
    urls = _urls(50, seed=3)
    src = _write_parquet(tmp_path / "in.parquet", urls, [None] * len(urls))
    config = _config(src, 1, batch_rows=100)
    path = tmp_path / "l.sqlite"
    with Ledger(ledger_paths(path)) as ledger:
        plan_rank(ledger, config, RankInfo(0, 1, "test"), {"fp": 1})
        assert plan_rank(ledger, config, RankInfo(0, 1, "test"), {"fp": 1}).skipped
    path.with_suffix(".items.arrow").unlink()
    with Ledger(ledger_paths(path)) as ledger, pytest.raises(RunMismatchError, match="--restart"):
        plan_rank(ledger, config, RankInfo(0, 1, "test"), {"fp": 1})


def test_interrupted_plan_leaves_no_stage_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    urls = _urls(600, seed=8)
    src = _write_parquet(tmp_path / "in.parquet", urls, [None] * len(urls))
    config = _config(src, 2, batch_rows=100)
    path = tmp_path / "l.sqlite"
    calls = iter(range(1000))
    with Ledger(ledger_paths(path)) as ledger, pytest.raises(Interrupted):
        plan_rank(
            ledger, config, RankInfo(0, 2, "test"), {"fp": 1}, should_stop=lambda: next(calls) == 3
        )
    assert not path.with_suffix(".plan").exists()
    with Ledger(ledger_paths(path)) as ledger:
        assert ledger.counts().total == 0
        result = plan_rank(ledger, config, RankInfo(0, 2, "test"), {"fp": 1})
    _, want = _plan(tmp_path, "ref", config, 0, 2, fast=False, monkeypatch=monkeypatch)
    assert _ledger_contents(path)["items"] == want["items"]
    assert result.new == result.kept - (result.kept - len(want["items"]))


def test_fast_extras_encoding_matches_encode_extras() -> None:
    strings = [
        "plain",
        "",
        None,
        'quote"',
        "back\\slash",
        "tab\tnew\nline\r",
        "\x00\x1f\x7f",
        "é ü",
        "\U0001f600",
        "\u2028",
        "</script>",
        "a" * 300,
    ]
    n = len(strings)
    table = pa.table(
        {
            "s": pa.array(strings, type=pa.string()),
            "ls": pa.array(strings, type=pa.large_string()),
            "i8": pa.array([-128, 127, None, 0, *range(n - 4)], type=pa.int8()),
            "i64": pa.array([-(2**63), 2**63 - 1, None, *range(n - 3)], type=pa.int64()),
            "u64": pa.array([2**64 - 1, 0, None, *range(n - 3)], type=pa.uint64()),
            "b": pa.array([True, False, None] * (n // 3), type=pa.bool_()),
            "f": pa.array(
                [
                    0.1,
                    -0.0,
                    float("nan"),
                    float("inf"),
                    float("-inf"),
                    1e20,
                    1.5,
                    None,
                    *[2.0] * (n - 8),
                ]
            ),
            "bin": pa.array([b"\x00\xff", None, *[b"x"] * (n - 2)], type=pa.binary()),
            "list": pa.array([[1, 2], None, [], *[[3]] * (n - 3)], type=pa.list_(pa.int64())),
            "struct": pa.array(
                [{"a": 1, "b": "x"}, None, *[{"a": None, "b": 'y"'}] * (n - 2)],
                type=pa.struct([("a", pa.int64()), ("b", pa.string())]),
            ),
            "null": pa.nulls(n),
        }
    )
    assert encode_extras_fast(table) == encode_extras(table)
    for name in table.column_names:
        one = table.select([name])
        assert encode_extras_fast(one) == encode_extras(one), name
    chunked = pa.concat_tables([table.slice(0, 5), table.slice(5)])
    assert encode_extras_fast(chunked) == encode_extras(table)
    assert encode_extras_fast(table.slice(3, 0)) == []


def test_ledger_of_schema_version_1_gets_fetch_urls(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE hosts (host_id INTEGER PRIMARY KEY, host TEXT NOT NULL,
                            seq INTEGER NOT NULL UNIQUE);
        CREATE TABLE items (
            item_id INTEGER PRIMARY KEY, host_id INTEGER NOT NULL, url TEXT NOT NULL,
            extras TEXT, state INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0, error_kind TEXT, error_message TEXT,
            http_status INTEGER, part INTEGER
        ) WITHOUT ROWID;
        CREATE INDEX items_ready ON items (host_id, state, next_attempt_at, item_id);
        """
    )
    host = item_id("example.com")
    db.executemany(
        "INSERT INTO items (item_id, host_id, url, state) VALUES (?, ?, ?, ?)",
        [
            (1, host, "http://example.com/a", 0),
            (2, host, "HTTP://Example.com:80/b#f", 0),
            (3, host, "HTTP://Example.com/c", 1),  # committed: never fetched again
            (4, NO_HOST, "bad url", 0),
        ],
    )
    db.commit()
    db.close()
    with Ledger(ledger_paths(path)) as ledger:
        work = {w.item_id: w.fetch_url for w in ledger.queue.ready_items(host, (-1.0, -1), 1.0, 10)}
        assert work == {1: None, 2: "http://example.com/b"}
    with Ledger(ledger_paths(path)) as ledger:  # reopening does not migrate again
        assert ledger.counts() == Counts(total=4, committed=1, pending=3, failed=0)
    assert [(r["item_id"], r["fetch_url"]) for r in planned_items(path)] == [
        (1, None),
        (2, "http://example.com/b"),
        (3, "http://example.com/c"),
        (4, None),
    ]
    db = sqlite3.connect(path)
    assert db.execute("SELECT item_id, state FROM states").fetchall() == [(3, 1)]
    assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'items'").fetchall()
    db.close()
