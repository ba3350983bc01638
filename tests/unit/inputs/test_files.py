"""Which files the inputs are (inputs/files.py): paths, globs and folders resolved, formats
detected, fingerprints."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from fetchshard.config import InputConfig
from fetchshard.errors import InputError
from fetchshard.inputs import (
    FORMATS,
    detect_format,
    fingerprint_files,
    resolve_inputs,
    validate_inputs,
)
from input_files import URLS, all_urls, cfg, read_all, records, touch, write_format


def test_detect_format_table(tmp_path: Path) -> None:
    cases = {
        "a.txt": "txt",
        "a.lst": "txt",
        "a.urls": "txt",
        "urls": "txt",
        "urls.gz": "txt",
        "A.CSV": "csv",
        "a.csv.zst": "csv",
        "a.tsv": "tsv",
        "a.tab.zstd": "tsv",
        "a.jsonl": "jsonl",
        "a.ndjson": "jsonl",
        "a.json.gz": "jsonl",
        "a.parquet": "parquet",
        "a.pq": "parquet",
    }
    for name, fmt in cases.items():
        assert detect_format(tmp_path / name, "auto") == fmt, name
    assert detect_format(tmp_path / "a.xyz", "tsv") == "tsv"
    with pytest.raises(InputError, match=r"a\.xlsx"):
        detect_format(tmp_path / "a.xlsx", "auto")
    assert FORMATS == ("txt", "csv", "tsv", "jsonl", "parquet")


def test_configured_format_overrides_suffix(tmp_path: Path) -> None:
    path = write_format("csv", tmp_path / "data.dat", records())
    with pytest.raises(InputError, match=r"data\.dat"):
        read_all(cfg(path))
    assert all_urls(read_all(cfg(path, format="csv"))) == URLS


def test_folder_resolution(tmp_path: Path) -> None:
    root = tmp_path / "in"
    keep = [
        touch(root / "b.txt"),
        touch(root / "a.csv.gz", gzip.compress(b"url\nhttp://a/1\n")),
        touch(root / "sub" / "c.jsonl", b'{"url": "http://a/1"}\n'),
        touch(root / "sub" / "urls"),
    ]
    touch(root / ".hidden.txt")
    touch(root / "partial.txt.tmp")
    touch(root / "_SUCCESS")
    touch(root / "README.md")
    touch(root / ".git" / "x.txt")
    touch(root / "_temporary" / "y.txt")
    assert resolve_inputs([str(root)]) == sorted(p.resolve() for p in keep)


def test_glob_resolution_sorted_and_deduplicated(tmp_path: Path) -> None:
    a = touch(tmp_path / "a.txt")
    b = touch(tmp_path / "b.txt")
    touch(tmp_path / "c.csv", b"url\nhttp://a/1\n")
    touch(tmp_path / "d.txt.tmp")
    result = resolve_inputs([str(tmp_path / "*.txt"), str(b), str(tmp_path / "?.txt")])
    assert result == [a.resolve(), b.resolve()]
    assert resolve_inputs([str(tmp_path / "[ab].txt")]) == [a.resolve(), b.resolve()]
    assert len(resolve_inputs([str(tmp_path / "*")])) == 3  # .tmp skipped


@pytest.mark.parametrize(
    ("entry", "pattern"),
    [
        ("missing.txt", r"not found: .*missing\.txt"),
        ("*.nothing", r"glob matches no files: .*\*\.nothing"),
        ("emptydir", r"folder holds no input files: .*emptydir"),
    ],
)
def test_resolution_errors(entry: str, pattern: str, tmp_path: Path) -> None:
    (tmp_path / "emptydir").mkdir()
    touch(tmp_path / "emptydir" / "notes.md")
    with pytest.raises(InputError, match=pattern) as info:
        resolve_inputs([str(tmp_path / entry)])
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=pattern):
        read_all(cfg(tmp_path / entry))


def test_no_paths_is_an_error() -> None:
    with pytest.raises(InputError, match="no input paths"):
        resolve_inputs([])
    with pytest.raises(InputError):
        validate_inputs(InputConfig())


def test_fingerprint_files(tmp_path: Path) -> None:
    path = touch(tmp_path / "a.txt", b"http://a/1\nhttp://a/2\n")
    os.utime(path, ns=(1_000_000_000, 1_234_567_890_123))
    relative = Path(os.path.relpath(path))
    assert fingerprint_files([relative]) == [
        {"path": str(path.resolve()), "size": 22, "mtime_ns": 1_234_567_890_123}
    ]
    with pytest.raises(InputError, match="nope"):
        fingerprint_files([tmp_path / "nope.txt"])
