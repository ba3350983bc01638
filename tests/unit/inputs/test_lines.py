"""Lines of a text input (inputs/lines.py): blank lines, whitespace, invalid UTF-8, over-long
lines, byte order marks, a jsonl line that is not JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchshard.errors import InputError
from input_files import all_urls, cfg, read_all, write_bytes


def test_txt_blank_lines_and_whitespace(tmp_path: Path) -> None:
    data = b"\n  http://a.example/1  \r\n\t\n\r\nhttp://a.example/2\n   \nhttp://a.example/3"
    path = write_bytes(tmp_path / "in.txt", data)
    batches = read_all(cfg(path))
    assert all_urls(batches) == ["http://a.example/1", "http://a.example/2", "http://a.example/3"]


def test_txt_invalid_utf8_line_is_none(tmp_path: Path) -> None:
    path = write_bytes(
        tmp_path / "in.txt.gz", b"http://a/1\nhttp://a/\xff\xfe\nhttp://a/\xc3\xa9\n"
    )
    assert all_urls(read_all(cfg(path))) == ["http://a/1", None, "http://a/é"]


def test_txt_over_long_line_is_truncated(tmp_path: Path) -> None:
    long_line = b"http://long.example/" + b"x" * 3_000_000  # far more than one read chunk
    path = write_bytes(tmp_path / "in.txt", b"http://a/1\n" + long_line + b"\nhttp://a/2\n")
    urls = all_urls(read_all(cfg(path, max_url_length=100)))
    assert len(urls) == 3
    assert urls[0] == "http://a/1"
    assert urls[1] is not None and len(urls[1]) == 101
    assert urls[1].startswith("http://long.example/xxx")
    assert urls[2] == "http://a/2"


def test_txt_over_long_line_with_spaces_is_not_shortened(tmp_path: Path) -> None:
    # Internal whitespace must not let a cut-off line pass as a short, valid URL.
    line = b"  http://a.example/" + b" " * 1000 + b"tail"
    urls = all_urls(
        read_all(cfg(write_bytes(tmp_path / "in.txt", line + b"\n"), max_url_length=30))
    )
    assert urls[0] is not None and len(urls[0]) == 31
    assert urls[0].startswith("http://a.example/ ")


def test_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    txt = write_bytes(tmp_path / "a.txt.gz", bom + b"http://a/1\nhttp://a/2\n")
    jsonl = write_bytes(tmp_path / "b.jsonl", bom + b'{"url": "http://a/3"}\n')
    csv_file = write_bytes(tmp_path / "c.csv", bom + b"url\nhttp://a/4\n")
    assert all_urls(read_all(cfg(txt))) == ["http://a/1", "http://a/2"]
    assert all_urls(read_all(cfg(jsonl, csv_file))) == ["http://a/3", "http://a/4"]


def test_jsonl_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    path = write_bytes(tmp_path / "in.jsonl", b'{"url": "http://a/1"}\n\n{"url": \n')
    with pytest.raises(InputError, match=r"in\.jsonl line 3"):
        read_all(cfg(path))
