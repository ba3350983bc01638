"""hub/uri.py: hf:// URIs as huggingface_hub parses them, the Hub's URLs, safe repo paths."""

from __future__ import annotations

import pytest
from huggingface_hub import hf_hub_url
from huggingface_hub.utils import parse_hf_uri as hh_parse_hf_uri

from fetchshard.errors import InputError
from fetchshard.hub.uri import (
    HfUri,
    check_repo_path,
    is_commit,
    is_hf_uri,
    parse_hf_uri,
    paths_info_url,
    resolve_url,
    revision_url,
    tree_url,
)

SHA = "0123456789abcdef0123456789abcdef01234567"

VALID = [
    ("hf://ns/name", HfUri("model", "ns/name")),
    ("hf://models/ns/name", HfUri("model", "ns/name")),
    ("hf://datasets/ns/name", HfUri("dataset", "ns/name")),
    ("hf://spaces/ns/name@main", HfUri("space", "ns/name", "main")),
    ("hf://kernels/ns/k-1_2.x", HfUri("kernel", "ns/k-1_2.x")),
    ("hf://datasets/ns/name/", HfUri("dataset", "ns/name")),
    ("hf://datasets/ns/name/data/train/", HfUri("dataset", "ns/name", None, "data/train")),
    ("hf://datasets/ns/name@v1/a.txt", HfUri("dataset", "ns/name", "v1", "a.txt")),
    (
        "hf://datasets/ns/name@refs/pr/3/train.json",
        HfUri("dataset", "ns/name", "refs/pr/3", "train.json"),
    ),
    ("hf://datasets/ns/name@refs/pr/12", HfUri("dataset", "ns/name", "refs/pr/12")),
    (
        "hf://datasets/ns/name@refs/convert/parquet/default/train",
        HfUri("dataset", "ns/name", "refs/convert/parquet", "default/train"),
    ),
    (
        "hf://datasets/ns/name@refs/convert/duckdb.v1-2",
        HfUri("dataset", "ns/name", "refs/convert/duckdb.v1-2"),
    ),
    ("hf://ns/name@feature%2Ffoo/x", HfUri("model", "ns/name", "feature/foo", "x")),
    (f"hf://ns/name@{SHA}", HfUri("model", "ns/name", SHA)),
    # an "@" after NAMESPACE/NAME is part of the path; a later "@" is literal
    ("hf://ns/name/file@1.txt", HfUri("model", "ns/name", None, "file@1.txt")),
    ("hf://ns/name@v1@x/y", HfUri("model", "ns/name", "v1@x", "y")),
    (
        "hf://datasets/ns/name/dir with space/a#b%c \u00e9t\u00e9.txt",
        HfUri("dataset", "ns/name", None, "dir with space/a#b%c \u00e9t\u00e9.txt"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), VALID)
def test_parse_as_huggingface_hub(text: str, expected: HfUri) -> None:
    uri = parse_hf_uri(text)
    assert uri == expected
    hh = hh_parse_hf_uri(text)
    assert (hh.type, hh.id, hh.revision, hh.path_in_repo or None) == (
        uri.repo_type,
        uri.repo_id,
        uri.revision,
        uri.path,
    )
    # the canonical text parses back to the same URI, and is huggingface_hub's
    assert parse_hf_uri(uri.to_uri()) == uri
    assert str(uri) == uri.describe == uri.to_uri() == hh.to_uri()


def test_canonical_text() -> None:
    assert str(parse_hf_uri("hf://ns/name")) == "hf://models/ns/name"
    uri = HfUri("dataset", "ns/name", "a/b%41", "x y/z")
    assert uri.to_uri() == "hf://datasets/ns/name@a%2Fb%2541/x y/z"
    assert parse_hf_uri(uri.to_uri()) == uri
    assert HfUri("dataset", "ns/n", "refs/pr/7").to_uri() == "hf://datasets/ns/n@refs/pr/7"
    assert uri.api_type == "datasets" and not uri.pinned
    assert HfUri("model", "ns/n", SHA).pinned


def test_is_hf_uri_and_commit() -> None:
    assert is_hf_uri("hf://x") and is_hf_uri("hf://")
    assert not is_hf_uri("https://huggingface.co/ns/n") and not is_hf_uri("HF://ns/n")
    assert is_commit(SHA) and not is_commit(SHA.upper()) and not is_commit(SHA[:-1])
    assert not is_commit(None) and not is_commit("main")


BAD = [
    ("ns/name", "does not start with hf://"),
    ("hf://", "nothing after hf://"),
    ("hf://ns", "NAMESPACE/NAME"),
    ("hf://datasets", "no repo id after datasets/"),
    ("hf://datasets/", "no repo id after datasets/"),
    ("hf://dataset/ns/name", "plural: datasets/"),
    ("hf://model", "plural: models/"),
    ("hf://buckets/ns/bucket", "a bucket is not a repo"),
    ("hf://ns/name@", "empty revision"),
    ("hf://ns/name@/x", "empty revision"),
    ("hf://a@b/c", "NAMESPACE/NAME"),
    ("hf://ns/na--me", "'--'"),
    ("hf://ns/na..me", "'..'"),
    ("hf://ns/name.git", ".git"),
    ("hf://ns/.name", "bad repo id"),
    ("hf://ns/name-", "bad repo id"),
    ("hf://ns/na me", "bad repo id"),
    ("hf://ns/" + "x" * 97, "bad repo id"),
    ("hf://ns/name/a//b", "empty, '.' or '..' segment"),
    ("hf://ns/name/a/../b", "empty, '.' or '..' segment"),
    ("hf://ns/name@main/./b", "empty, '.' or '..' segment"),
    ("hf://ns/name@refs/pr/x", "refs/pr/<N>"),
    ("hf://ns/name@refs/pr/1x/y", "refs/pr/<N>"),
]


@pytest.mark.parametrize(("text", "why"), BAD)
def test_bad_uris(text: str, why: str) -> None:
    with pytest.raises(InputError) as info:
        parse_hf_uri(text)
    message = str(info.value)
    assert repr(text) in message and why in message, message
    assert "\n" not in message and "hf://[TYPE/]NAMESPACE/NAME" in message


def test_bad_uri_message_is_one_line() -> None:
    with pytest.raises(InputError) as info:
        parse_hf_uri("hf://ns/na\nme")
    assert "\n" not in str(info.value) and "'hf://ns/na\\nme'" in str(info.value)


def test_a_repo_id_of_96_characters() -> None:
    assert parse_hf_uri("hf://ns/" + "x" * 96).repo_id == "ns/" + "x" * 96


# ---------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("endpoint", ["https://huggingface.co", "http://127.0.0.1:8080/hf/"])
def test_api_urls(endpoint: str) -> None:
    base = endpoint.rstrip("/")
    assert (
        revision_url(endpoint, "dataset", "ns/n", "refs/convert/parquet")
        == f"{base}/api/datasets/ns/n/revision/refs%2Fconvert%2Fparquet"
    )
    assert (
        revision_url(endpoint, "model", "ns/n", "main") == f"{base}/api/models/ns/n/revision/main"
    )
    assert (
        tree_url(endpoint, "space", "ns/n", SHA)
        == f"{base}/api/spaces/ns/n/tree/{SHA}?recursive=true&expand=false"
    )
    assert (
        tree_url(endpoint, "dataset", "ns/n", "refs/pr/1", "data/dir with space/#%\u00e9")
        == f"{base}/api/datasets/ns/n/tree/refs%2Fpr%2F1/data%2Fdir%20with%20space%2F%23%25%C3%A9"
        "?recursive=true&expand=false"
    )
    assert (
        paths_info_url(endpoint, "kernel", "ns/n", "v 1")
        == f"{base}/api/kernels/ns/n/paths-info/v%201"
    )


@pytest.mark.parametrize("repo_type", ["model", "dataset", "space"])
@pytest.mark.parametrize(
    "path", ["a.txt", "data/dir with space/a#b%c.txt", "\u00e9t\u00e9 \u65e5\u672c.bin", "q?x=1&y"]
)
def test_resolve_url_as_huggingface_hub(repo_type: str, path: str) -> None:
    for endpoint in ("https://huggingface.co", "http://127.0.0.1:9/hf"):
        ours = resolve_url(endpoint, repo_type, "ns/n", SHA, path)
        theirs = hf_hub_url("ns/n", path, repo_type=repo_type, revision=SHA, endpoint=endpoint)
        assert ours == theirs
    assert (
        resolve_url("http://h/", "model", "ns/n", SHA, "a b")
        == f"http://h/ns/n/resolve/{SHA}/a%20b"
    )
    assert resolve_url("http://h", "dataset", "ns/n", SHA, "a/b").startswith("http://h/datasets/")


# ---------------------------------------------------------------------------- local paths


@pytest.mark.parametrize(
    "path",
    [
        "a.txt",
        "data/dir with space/a#b%c.txt",
        "\u00e9t\u00e9/\u65e5\u672c.bin",
        ".gitattributes",
        ".cache/other/x",
        ".cache/huggingfacex",
        "a/.fetchshard/x",
        "x" * 255,
        "\u00e9" * 127,
        "a...b",
        "ab:c",
        "a\\b",
    ],
)
def test_writable_paths(path: str) -> None:
    assert check_repo_path(path) is None


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "empty"),
        ("..", "'..'"),
        ("a/../b", "'..'"),
        ("a\\..\\b", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:\\Windows\\x", "absolute"),
        ("C:x", "absolute"),
        ("a/D:b", "absolute"),
        ("\\\\host\\share\\x", "absolute"),
        ("\\x", "absolute"),
        ("a//b", "empty or '.'"),
        ("a/", "empty or '.'"),
        ("./a", "empty or '.'"),
        ("a\0b", "NUL"),
        ("x" * 256, "255 bytes"),
        ("a/" + "\u00e9" * 128, "255 bytes"),
        (".cache/huggingface/download/a.metadata", ".cache/huggingface/"),
        (".cache/huggingface", ".cache/huggingface/"),
        (".Cache/HuggingFace/x", ".cache/huggingface/"),
        (".fetchshard/run.json", ".fetchshard/"),
        (".fetchshard", ".fetchshard/"),
    ],
)
def test_refused_paths(path: str, why: str) -> None:
    reason = check_repo_path(path)
    assert reason is not None and why in reason, reason
