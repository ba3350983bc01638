"""Every input format (plain and compressed) carries its extra columns into Parquet unchanged."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from server import ServerProcess
from util import FAST, cli, read_rows

N = 12


def _records(server: ServerProcess, tag: str) -> list[dict[str, object]]:
    return [
        {
            "url": server.url(f"/ok/{tag}-{i}", host=i % 4),
            "caption": f'caption {i}, with a comma and "quotes" ünïcode',
            "n": i * 7,
        }
        for i in range(N)
    ]


def _write(fmt: str, path: Path, records: list[dict[str, object]]) -> None:
    opener = gzip.open if path.suffix == ".gz" else open
    if fmt == "txt":
        with opener(path, "wt", encoding="utf-8") as fh:
            fh.writelines(f"{r['url']}\n" for r in records)
    elif fmt in ("csv", "tsv"):
        import csv

        with opener(path, "wt", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(
                fh, fieldnames=["url", "caption", "n"], delimiter="," if fmt == "csv" else "\t"
            )
            writer.writeheader()
            writer.writerows(records)
    elif fmt == "jsonl":
        with opener(path, "wt", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps({**r, "meta": {"i": r["n"], "tags": ["a", "b"]}}) + "\n")
    elif fmt == "parquet":
        table = pa.Table.from_pylist(
            [{**r, "score": float(r["n"]) / 3, "tags": ["x", str(r["n"])]} for r in records]
        )
        pq.write_table(table, path)
    else:  # pragma: no cover
        raise AssertionError(fmt)


CASES = [
    ("txt", "in.txt"),
    ("txt", "in.txt.gz"),
    ("csv", "in.csv"),
    ("csv", "in.csv.gz"),
    ("tsv", "in.tsv"),
    ("tsv", "in.tsv.gz"),
    ("jsonl", "in.jsonl"),
    ("jsonl", "in.jsonl.gz"),
    ("parquet", "in.parquet"),
]


@pytest.mark.parametrize(("fmt", "name"), CASES, ids=[c[1] for c in CASES])
def test_format_extras_arrive_unchanged(
    fmt: str, name: str, server_process: ServerProcess, tmp_path: Path
) -> None:
    tag = name.replace(".", "-")
    records = _records(server_process, tag)
    src = tmp_path / name
    _write(fmt, src, records)
    out = tmp_path / "out"
    result = cli("run", str(src), "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    table = read_rows(out)
    assert table.num_rows == N
    rows = {r["url"]: r for r in table.drop_columns(["body"]).to_pylist()}
    assert all(r["status"] == "ok" for r in rows.values())
    by_url = {r["url"]: r for r in records}
    names = set(table.column_names)
    if fmt == "txt":
        assert not {"caption", "n"} & names
        return
    for url, row in rows.items():
        want = by_url[url]
        assert row["caption"] == want["caption"]
        if fmt in ("csv", "tsv"):
            assert row["n"] == str(want["n"])  # csv extras travel as text, as written
        else:
            assert row["n"] == want["n"]
    if fmt == "jsonl":
        assert table.schema.field("n").type == pa.int64()
        sample = rows[records[3]["url"]]
        assert sample["meta"] == {"i": 21, "tags": ["a", "b"]}
    if fmt == "parquet":
        assert table.schema.field("score").type == pa.float64()
        assert table.schema.field("tags").type == pa.list_(pa.string())
        sample = rows[records[4]["url"]]
        assert sample["score"] == pytest.approx(28 / 3)
        assert sample["tags"] == ["x", "28"]


def test_reserved_names_and_selected_extras(
    server_process: ServerProcess, tmp_path: Path, url_file: Callable[..., Path]
) -> None:
    src = tmp_path / "in.jsonl"
    urls = [server_process.url(f"/ok/reserved-{i}") for i in range(3)]
    src.write_text(
        "".join(
            json.dumps({"url": u, "status": "from input", "keep": i, "drop": "x"}) + "\n"
            for i, u in enumerate(urls)
        )
    )
    out = tmp_path / "out"
    result = cli(
        "run", str(src), "-o", str(out), "--extra-column", "status", "--extra-column", "keep", *FAST
    )
    assert result.exit_code == 0, result.output
    table = read_rows(out)
    assert "drop" not in table.column_names
    assert table.column("input_status").to_pylist() == ["from input"] * 3
    assert sorted(table.column("keep").to_pylist()) == [0, 1, 2]
    assert set(table.column("status").to_pylist()) == {"ok"}
