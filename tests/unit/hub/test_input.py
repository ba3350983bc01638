"""An hf:// input made an ordinary one (hub/input.py), with a lister that counts its calls."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from fetchshard.config import Config, HostOverride, load_config
from fetchshard.errors import ConfigError
from fetchshard.hub.input import ANONYMOUS_RATE, TOKEN_RATE, endpoint_host, prepare
from fetchshard.hub.listing import RepoFile, RepoListing
from fetchshard.hub.uri import HfUri

COMMIT = "ab" * 20
FILES = (
    RepoFile("README.md", 3, "1" * 40),
    RepoFile("data/a b#.parquet", 10, "2" * 40, "c" * 64),
)


class Lister:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, uri: HfUri, **kwargs: Any) -> RepoListing:
        self.calls.append({"uri": uri, **kwargs})
        return RepoListing(kwargs["endpoint"], uri, COMMIT, FILES)


def _config(tmp_path: Path, *paths: str, **options: Any) -> Config:
    overrides = {"input.paths": list(paths), "output.dir": str(tmp_path / "mirror"), **options}
    return load_config(None, environ={}, overrides=overrides)


ENV = {"HF_ENDPOINT": "http://127.0.0.1:8123/", "HF_HOME": "/nonexistent"}


def test_the_run_becomes_a_mirror_over_its_listing(tmp_path: Path) -> None:
    lister = Lister()
    config = prepare(_config(tmp_path, "hf://datasets/ns/x@main"), ENV, lister=lister)
    state = tmp_path / "mirror" / ".fetchshard"
    assert config.output.dir == str(state) and config.output.mode == "files"
    assert config.output.path_column == "path"
    (listing,) = config.input.paths
    assert Path(listing).parent == state / "hub" and COMMIT in Path(listing).name
    rows = pq.read_table(listing).to_pylist()
    assert rows == [
        {
            "url": f"http://127.0.0.1:8123/datasets/ns/x/resolve/{COMMIT}/README.md",
            "path": "README.md",
            "size": 3,
            "checksum": "git-sha1:" + "1" * 40,
            "commit": COMMIT,
        },
        {
            "url": f"http://127.0.0.1:8123/datasets/ns/x/resolve/{COMMIT}/data/a%20b%23.parquet",
            "path": "data/a b#.parquet",
            "size": 10,
            "checksum": "sha256:" + "c" * 64,
            "commit": COMMIT,
        },
    ]
    assert config.input.checksum_algorithm == "auto" and config.input.size_column == "size"
    # anonymous: the Hub's quota for all ranks, no Authorization anywhere
    assert config.fetch.hosts == {"127.0.0.1:8123": HostOverride(rate=ANONYMOUS_RATE)}
    # a rerun (or another rank) reads the listing back and asks the Hub nothing
    again = prepare(_config(tmp_path, "hf://datasets/ns/x@main"), ENV, lister=lister)
    assert again == config and len(lister.calls) == 1
    assert lister.calls[0]["endpoint"] == "http://127.0.0.1:8123"


def test_the_token_goes_to_the_endpoint_s_host_entry_only(tmp_path: Path) -> None:
    env = {**ENV, "HF_TOKEN": "hf_secret"}
    base = _config(tmp_path, "hf://ns/model", **{"fetch.hosts": {"cdn.example": {"rate": 3}}})
    config = prepare(base, env, lister=Lister())
    hosts = config.fetch.hosts
    assert hosts["127.0.0.1:8123"] == HostOverride(
        rate=TOKEN_RATE, headers={"Authorization": "Bearer hf_secret"}
    )
    assert hosts["cdn.example"] == HostOverride(rate=3)  # the user's own, untouched
    assert config.fetch.headers == {}
    assert "hf_secret" not in repr(config.input) + repr(config.output)
    own = _config(tmp_path, "hf://ns/model", **{"hub.rate": 2.5})
    assert prepare(own, env, lister=Lister()).fetch.hosts["127.0.0.1:8123"].rate == 2.5


def test_the_endpoint_s_pattern_names_its_port_unless_default() -> None:
    assert endpoint_host("https://huggingface.co") == "huggingface.co"
    assert endpoint_host("https://HF.example:443/mirror") == "hf.example"
    assert endpoint_host("http://127.0.0.1:8123") == "127.0.0.1:8123"


@pytest.mark.parametrize(
    ("paths", "options", "why"),
    [
        (("hf://ns/x", "urls.txt"), {}, "goes alone"),
        (("hf://ns/x", "hf://ns/y"), {}, "goes alone"),
        (("urls.txt",), {"input.include": ["*.txt"]}, "hf://"),
    ],
)
def test_what_an_hf_input_does_not_go_with(
    tmp_path: Path, paths: tuple[str, ...], options: dict[str, Any], why: str
) -> None:
    lister = Lister()
    with pytest.raises(ConfigError, match=why):
        prepare(_config(tmp_path, *paths, **options), ENV, lister=lister)
    assert lister.calls == []


class SlowLister(Lister):
    """Lists slowly and notes each call in a file: calls from other processes count too."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        self.log = log

    def __call__(self, uri: HfUri, **kwargs: Any) -> RepoListing:
        with self.log.open("a") as fh:
            fh.write("listed\n")
        time.sleep(0.3)  # the others arrive meanwhile and wait on the lock
        return super().__call__(uri, **kwargs)


def _prepare_in_child(config: Config, log: Path, results: Path) -> None:
    prepared = prepare(config, ENV, lister=SlowLister(log))
    with results.open("a") as fh:
        fh.write(prepared.input.paths[0] + "\n")


def test_concurrent_ranks_list_once(tmp_path: Path) -> None:
    """Four processes (srun's tasks): one lists under the lock, the others read its listing."""
    config = _config(tmp_path, "hf://datasets/ns/x", **{"input.include": ["data/"]})
    log, results = tmp_path / "calls", tmp_path / "results"
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_prepare_in_child, args=(config, log, results)) for _ in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=20)
    assert [child.exitcode for child in children] == [0] * 4
    assert log.read_text().splitlines() == ["listed"]
    listed = results.read_text().splitlines()
    assert len(listed) == 4 and len(set(listed)) == 1
