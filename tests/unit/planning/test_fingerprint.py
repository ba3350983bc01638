"""The one comparison of two fingerprints, and what it says differs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from fetchshard.planning.fingerprint import difference

FP: dict[str, Any] = {
    "world_size": 4,
    "partition": {"spread": "auto", "assignment": 1},
    "input": {
        "files": [{"path": "/d/a.txt", "size": 10, "mtime_ns": 1}],
        "format": "txt",
        "url_column": "url",
        "id_column": None,
        "extra_columns": None,
        "max_url_length": 2048,
    },
}


def _changed(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    fp = copy.deepcopy(FP)
    where = fp
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return fp


def test_the_same_fingerprint_has_no_difference() -> None:
    assert difference(FP, copy.deepcopy(FP)) is None


@pytest.mark.parametrize(
    ("new", "said"),
    [
        (_changed(("world_size",), 8), "world size 4 -> 8"),
        ({**FP, "plan": "step"}, "planned with a plan step"),
        (_changed(("partition",), {"spread": 16}), "partition"),
        (_changed(("input", "files"), []), "another input: a different set of input files"),
        (
            _changed(("input", "files"), [{"path": "/d/a.txt", "size": 11, "mtime_ns": 1}]),
            "another input: /d/a.txt has changed",
        ),
        (_changed(("input", "max_url_length"), 100), "another input: different input options"),
        ({**FP, "images": {"mode": "resize"}}, "the images section changed"),
    ],
)
def test_what_differs_is_named(new: dict[str, Any], said: str) -> None:
    got = difference(FP, new)
    assert got is not None and said in got
