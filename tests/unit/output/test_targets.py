"""What an item's extra columns say of its file before it is fetched (output/targets.py)."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

import pyarrow as pa
import pytest

from fetchshard.config import Config, InputConfig, OutputConfig
from fetchshard.output.files import FileTarget
from fetchshard.output.targets import TargetRule

# as an hf:// input's listing travels: path (renamed: an output column), size, checksum, commit
EXTRAS = pa.schema(
    [
        ("input_path", pa.string()),
        ("input_size", pa.int64()),
        ("checksum", pa.string()),
        ("commit", pa.string()),
    ]
)
CONFIG = Config(
    input=InputConfig(size_column="size", checksum_column="checksum", checksum_algorithm="auto"),
    output=OutputConfig(mode="files", path_column="path"),
)
RULE = TargetRule.of(CONFIG, EXTRAS, (".fetchshard", ".cache/huggingface"))


def _extras(path: object, size: int, checksum: str, commit: str = "c" * 40) -> str:
    return json.dumps([path, size, checksum, commit])


def test_a_lfs_file_and_a_git_file() -> None:
    lfs = RULE.target(_extras("data/a b#.parquet", 10, "sha256:" + "a" * 64))
    assert lfs == FileTarget(
        relative=PurePosixPath("data/a b#.parquet"),
        size=10,
        algorithms=(),
        checked=True,
        etag="a" * 64,
        commit="c" * 40,
    )
    git = RULE.target(_extras("README.md", 3, "git-sha1:" + "B" * 40))
    assert isinstance(git, FileTarget)
    assert git.algorithms == ("git-sha1",) and git.etag == "b" * 40 and git.checked


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../x", "'..'"),
        ("/etc/passwd", "absolute"),
        (".fetchshard/run.json", "bookkeeping"),
        (None, "no file path"),
    ],
)
def test_a_path_that_cannot_be_written_is_the_item_s_failure(path: object, why: str) -> None:
    target = RULE.target(_extras(path, 1, "sha256:" + "0" * 64))
    assert isinstance(target, str) and why in target


def test_without_a_path_column_the_file_is_named_after_its_url() -> None:
    config = Config(input=InputConfig(size_column="size"), output=OutputConfig(mode="files"))
    schema = pa.schema([("size", pa.int64())])
    target = TargetRule.of(config, schema).target(json.dumps([7]))
    assert target == FileTarget(relative=None, size=7, algorithms=(), checked=False)
    assert TargetRule.of(Config(), None).target(None) == FileTarget()
