"""``run``'s argument handling: kinds after --retry-failed, told apart from inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchshard.cli.run import split_kinds
from fetchshard.errors import ConfigError


def test_kind_words_are_taken_from_the_inputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("urls.txt").write_text("http://127.0.0.1:9/x\n")
    assert split_kinds(["urls.txt", "http_5xx", "timeout"]) == (
        ["http_5xx", "timeout"],
        ["urls.txt"],
    )
    assert split_kinds(["urls.txt"]) == ([], ["urls.txt"])
    # A path that is missing stays an input (its own error comes later, with its name).
    assert split_kinds(["missing/urls.txt"]) == ([], ["missing/urls.txt"])


def test_a_word_that_is_a_kind_and_a_file_or_neither_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("timeout").write_text("http://127.0.0.1:9/x\n")
    with pytest.raises(ConfigError, match=r"'timeout' is both an error kind and a file"):
        split_kinds(["timeout"])
    assert split_kinds(["./timeout"]) == ([], ["./timeout"])
    with pytest.raises(ConfigError, match=r"'http5xx' is neither an error kind nor an input"):
        split_kinds(["http5xx"])
