"""Input files of every format, written for the tests of inputs/ (tests/unit/inputs)."""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from fetchshard.config import InputConfig
from fetchshard.inputs import InputBatch, iter_batches

URLS = [f"http://host{i % 3}.example/page/{i}" for i in range(7)]


def write_bytes(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path``, compressed according to its .gz / .zst suffix."""
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif path.name.endswith((".zst", ".zstd")):
        with pa.output_stream(str(path), compression="zstd") as out:
            out.write(data)
    else:
        path.write_bytes(data)
    return path


def records() -> list[dict[str, Any]]:
    return [{"url": u, "n": i, "caption": f"caption {i}, with comma"} for i, u in enumerate(URLS)]


def write_format(fmt: str, path: Path, rows: list[dict[str, Any]]) -> Path:
    if fmt == "txt":
        return write_bytes(path, "".join(f"{r['url']}\n" for r in rows).encode())
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        writer = csv.DictWriter(
            buf, fieldnames=list(rows[0]), delimiter="," if fmt == "csv" else "\t"
        )
        writer.writeheader()
        writer.writerows(rows)
        return write_bytes(path, buf.getvalue().encode())
    if fmt == "jsonl":
        return write_bytes(path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
        return path
    raise AssertionError(fmt)


def read_all(config: InputConfig) -> list[InputBatch]:
    return list(iter_batches(config))


def all_urls(batches: Sequence[InputBatch]) -> list[str | None]:
    return [u for b in batches for u in b.urls.to_pylist()]


def all_extras(batches: Sequence[InputBatch]) -> pa.Table:
    tables = [b.extras for b in batches if b.extras is not None]
    assert len(tables) == len(batches)
    return pa.concat_tables(tables)


def cfg(*paths: Path | str, **kwargs: Any) -> InputConfig:
    return InputConfig(paths=tuple(str(p) for p in paths), **kwargs)


def touch(path: Path, data: bytes = b"http://a/1\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
