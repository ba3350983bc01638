"""The plan step's input slices: every row read by exactly one rank, each rank reading its share."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.config import load_config
from fetchshard.inputs import open_inputs
from fetchshard.inputs.slices import slice_of

WORLDS = [1, 2, 3, 7, 31, 200]


def _lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        kind = rng.random()
        if kind < 0.05:
            out.append("")  # blank: not a row
        elif kind < 0.08:
            out.append(f"http://long{i}.org/" + "x" * rng.randrange(3000, 9000))
        else:
            out.append(f"http://h{rng.randrange(50)}.org/{i}?q={'y' * rng.randrange(60)}")
    return out


def _inputs(paths: list[Path], **options: Any) -> Any:
    overrides = {"input.paths": [str(p) for p in paths], "input.batch_rows": 97}
    overrides.update({f"input.{k}": v for k, v in options.items()})
    return open_inputs(load_config(environ={}, overrides=overrides).input)


def _rows(batches: Any) -> tuple[list[Any], list[int]]:
    urls: list[Any] = []
    order: list[int] = []
    for batch in batches:
        urls += batch.urls.to_pylist()
        order += [batch.first_row + i for i in range(len(batch.urls))]
        extras = batch.extras.to_pylist() if batch.extras is not None else [None] * len(batch.urls)
        urls[-len(batch.urls) :] = [
            (u, e) if e is not None else u
            for u, e in zip(urls[-len(batch.urls) :], extras, strict=True)
        ]
    return urls, order


def _check_slices(inputs: Any, world: int) -> list[int]:
    """Every rank's slice, in rank order, is the whole input in order; returns bytes read."""
    whole, _ = _rows(inputs.batches())
    got: list[Any] = []
    keys: list[int] = []
    read = []
    for rank in range(world):
        part = inputs.slice(rank, world)
        urls, order = _rows(part.batches())
        got += urls
        keys += order
        read.append(part.bytes_read)
    assert got == whole
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    return read


def _text_files(tmp_path: Path, name: str, header: str = "") -> tuple[list[Path], int]:
    paths = []
    for k, seed in enumerate((1, 2, 3)):
        lines = _lines(400 if k != 1 else 3, seed)
        text = "\n".join(lines) + ("\n" if k != 2 else "")  # the last file ends mid-line
        if k == 0:
            text = "\ufeff" + header + text  # a BOM
        elif header:
            text = header + text
        path = tmp_path / f"{name}{k}"
        path.write_bytes(text.replace("\n", "\r\n" if k == 1 else "\n").encode())
        paths.append(path)
    longest = max(len(line) for p in paths for line in p.read_bytes().split(b"\n"))
    return paths, longest


@pytest.mark.parametrize("world", WORLDS)
def test_text_lines_are_read_once_each_rank_its_bytes_and_one_line(
    world: int, tmp_path: Path
) -> None:
    paths, longest = _text_files(tmp_path, "urls.txt.")
    inputs = _inputs(paths, format="txt")
    read = _check_slices(inputs, world)
    total = sum(p.stat().st_size for p in paths)
    for rank, got in enumerate(read):
        share = (rank + 1) * total // world - rank * total // world
        # Its bytes; in each file it starts, the rest of the line the slice starts in and
        # ends in, both read 4 KiB at a time.
        files = len(slice_of(inputs.specs, rank, world))
        assert got <= share + files * 2 * (longest + 4096), (rank, got, share)
    assert sum(read) >= total


@pytest.mark.parametrize("world", [2, 7, 31])
def test_csv_slices_read_the_header_and_jsonl_slices_their_lines(
    world: int, tmp_path: Path
) -> None:
    rng = random.Random(4)
    rows = [(f"http://h{rng.randrange(9)}.org/{i}", f"cap {i}") for i in range(700)]
    csv = tmp_path / "in.csv"
    csv.write_text("url,caption\n" + "".join(f"{u},{c}\n" for u, c in rows))
    _check_slices(_inputs([csv], extra_columns=["caption"]), world)
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps({"url": u, "caption": c}) + "\n" for u, c in rows))
    _check_slices(_inputs([jsonl], extra_columns=["caption"]), world)


@pytest.mark.parametrize("world", [1, 3, 8, 50])
def test_parquet_slices_are_row_groups_each_rank_its_share_and_one_group(
    world: int, tmp_path: Path
) -> None:
    paths = []
    for k in range(2):
        n = 3000 + 1000 * k
        table = pa.table(
            {"url": [f"http://h{i % 13}.org/{k}/{i}" for i in range(n)], "other": list(range(n))}
        )
        path = tmp_path / f"in{k}.parquet"
        pq.write_table(table, path, row_group_size=250)
        paths.append(path)
    inputs = _inputs(paths, extra_columns=[])
    read = _check_slices(inputs, world)
    groups = [
        pq.ParquetFile(p).metadata.row_group(g).column(0).total_compressed_size
        for p in paths
        for g in range(pq.ParquetFile(p).metadata.num_row_groups)
    ]
    footers = sum(pq.ParquetFile(p).metadata.serialized_size + 8 for p in paths)
    total = sum(groups)
    for rank, got in enumerate(read):
        share = (rank + 1) * total // world - rank * total // world
        assert got <= share + max(groups) + footers, (rank, got, share)
    # Only the URL column is read: the other column's bytes are not counted.
    assert sum(read) <= total + world * footers


def test_a_compressed_file_is_one_unit_read_by_one_rank(tmp_path: Path) -> None:
    plain = tmp_path / "a.txt"
    plain.write_text("".join(f"http://a.org/{i}\n" for i in range(500)))
    packed = tmp_path / "b.txt.gz"
    packed.write_bytes(gzip.compress("".join(f"http://b.org/{i}\n" for i in range(500)).encode()))
    inputs = _inputs([plain, packed])
    _check_slices(inputs, 5)
    owners = [r for r in range(5) if any(p.file == 1 for p in slice_of(inputs.specs, r, 5))]
    assert len(owners) == 1
