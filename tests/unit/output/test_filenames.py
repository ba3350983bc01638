"""Where a body's file goes: named after the URL, unique per URL, never outside files/."""

from __future__ import annotations

import random
import string
from pathlib import PurePosixPath

import pytest

from fetchshard.output.filenames import CLASH_DIR, INDEX, LONG_DIR, clash_path, file_path


@pytest.mark.parametrize(
    ("url", "want"),
    [
        ("http://example.org/data/set/a.csv", "example.org/data/set/a.csv"),
        ("https://Example.ORG/x", "example.org/x"),
        ("http://127.0.0.1:8080/w/model.safetensors", "127.0.0.1_8080/w/model.safetensors"),
        ("http://h/~user/file-1_2.tar.gz", "h/~user/file-1_2.tar.gz"),
        ("http://h/a%20b.txt", "h/a%20b.txt"),  # as curl -O names it: the URL's own bytes
    ],
)
def test_a_plain_url_is_named_as_wget_x_would(url: str, want: str) -> None:
    assert file_path(url) == PurePosixPath(want)


def test_what_is_not_plain_gets_the_url_s_hash_before_the_extension() -> None:
    one, two = file_path("http://h/d/a.jpg?s=1"), file_path("http://h/d/a.jpg?s=2")
    assert one != two and one.parent == two.parent == PurePosixPath("h/d")
    assert one.name.startswith("a~") and one.suffix == ".jpg" and len(one.stem) == 2 + 12
    index = file_path("http://h/d/")
    assert index.parent == PurePosixPath("h/d") and index.name.startswith("index~")
    assert index.suffix == ".html" and index != PurePosixPath("h/d", INDEX)
    assert file_path("http://h/d/") != file_path("http://h/d/index.html")


@pytest.mark.parametrize(
    "path",
    ["/../../etc/passwd", "/a/./b", "/.hidden", "/a//b", "/..", "/a/..", "/con\x01trol", "/x:y\\z"],
)
def test_unsafe_segments_are_made_plain_and_marked(path: str) -> None:
    got = file_path(f"http://h{path}")
    assert got.parts[0] == "h"
    for part in got.parts:
        assert part not in ("", ".", "..") and not part.startswith(".")
        assert "/" not in part and "\\" not in part and ":" not in part
        assert all(c.isprintable() for c in part)
    assert got != file_path("http://h/plain")


def test_overlong_names_and_paths_stay_within_the_filesystem_s_limits() -> None:
    long_name = "n" * 300 + ".bin"
    got = file_path(f"http://h/{long_name}")
    assert all(len(p.encode()) <= 255 for p in got.parts) and got.suffix == ".bin"
    deep = "/".join(["d" * 150] * 10)
    got = file_path(f"http://h/{deep}/f.txt")
    assert got.parts[:2] == ("h", LONG_DIR) and got.name.endswith("~f.txt")
    assert len(str(got).encode()) < 300


def test_names_are_unique_per_url_and_relative_on_random_urls() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "._~-/%?=& :\\\x00\x7f" + "é"
    seen: dict[PurePosixPath, str] = {}
    for _ in range(5000):
        path = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        url = f"http://h{rng.randint(0, 3)}.org/{path}"
        got = file_path(url)
        assert not got.is_absolute() and ".." not in got.parts
        assert all(p and (p == LONG_DIR or not p.startswith(".")) for p in got.parts)
        previous = seen.setdefault(got, url)
        # urlsplit drops a fragment; two URLs alike but for one are the same request
        assert previous.split("#")[0] == url.split("#")[0], (previous, url)


def test_a_clash_goes_under_the_host_s_clash_folder() -> None:
    taken = file_path("http://h/a")
    got = clash_path("http://h/a", taken)
    assert got.parts[:2] == ("h", CLASH_DIR) and got.name.endswith("~a")
    assert clash_path("http://h/b/a", file_path("http://h/b/a")) != got
