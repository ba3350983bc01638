"""Tests of the fake Hugging Face Hub (tests/server/hub*.py), huggingface_hub as the oracle.

huggingface_hub reads ``HF_ENDPOINT`` once, at import, so every call of it runs in a
``python -c`` subprocess (:data:`_HH`) with the endpoint and a private ``HF_HOME`` set in its
environment; the switches are checked with plain aiohttp / urllib requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from server import (
    PARQUET_REF,
    SAMPLE_FILES,
    SAMPLE_PARQUET_FILES,
    SAMPLE_TOKEN,
    FakeHub,
    Generated,
    HubControls,
    HubProcess,
    HubRepo,
    git_blob_sha1,
    running_hub,
    sample_repos,
)

pytestmark = pytest.mark.timeout(30)

TOKEN = SAMPLE_TOKEN
WRONG = "hf_wrong_token_9876543210fedcba"

FILES = SAMPLE_FILES
PARQUET_FILES = SAMPLE_PARQUET_FILES
_repos = sample_repos


# ---------------------------------------------------------------- the hh oracle

_HH = r"""
import json, os, sys
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.hf_api import RepoFile

api = HfApi()
out = []
for op in json.loads(sys.argv[1]):
    kind = op.pop("op")
    try:
        if kind == "tree":
            result = [
                {"path": e.path, "type": "file", "size": e.size, "blob_id": e.blob_id,
                 "sha256": e.lfs.sha256 if e.lfs else None}
                if isinstance(e, RepoFile) else {"path": e.path, "type": "directory"}
                for e in api.list_repo_tree(recursive=True, **op)
            ]
        elif kind == "paths_info":
            result = [e.path for e in api.get_paths_info(**op)]
        elif kind == "snapshot":
            result = snapshot_download(**op)
        elif kind == "download":
            result = hf_hub_download(**op)
        elif kind == "verify":
            v = api.verify_repo_checksums(**op)
            result = {"checked": v.checked_count, "mismatches": v.mismatches,
                      "missing": v.missing_paths, "extra": v.extra_paths}
        else:
            raise ValueError(kind)
        out.append({"ok": result})
    except Exception as exc:
        # the most specific kind (2.4.0 raises RemoteEntryNotFoundError, 0.30 EntryNotFoundError)
        names = [c.__name__ for c in type(exc).__mro__]
        kinds = ["GatedRepoError", "RepositoryNotFoundError", "RevisionNotFoundError",
                 "EntryNotFoundError", "HfHubHTTPError"]
        response = getattr(exc, "response", None)
        out.append({"error": next((k for k in kinds if k in names), names[0]),
                    "status": None if response is None else response.status_code})
print(json.dumps(out))
"""


def _hh_env(endpoint: str, home: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("HF_") and k not in ("HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_CACHE")
    }
    env.update(
        HF_ENDPOINT=endpoint,
        HF_HOME=str(home),
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_HUB_ETAG_TIMEOUT="10",
        HF_HUB_DOWNLOAD_TIMEOUT="10",
    )
    return env


async def _hh(hub: HubControls, home: Path, *ops: dict[str, Any]) -> list[dict[str, Any]]:
    """Run huggingface_hub calls against ``hub`` in a subprocess (the loop keeps serving)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _HH,
        json.dumps(list(ops)),
        env=_hh_env(hub.endpoint, home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=25)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, stderr.decode()[-3000:]
    results: list[dict[str, Any]] = json.loads(stdout.decode().strip().splitlines()[-1])
    return results


def _ok(result: dict[str, Any]) -> Any:
    assert "ok" in result, result
    return result["ok"]


def _local_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


def _all_bytes(repo: HubRepo, rev: str = "main") -> dict[str, bytes]:
    return {path: f.data for path, f in repo.files(rev).items()}


# ---------------------------------------------------------------- the repo model


def test_hashes_and_spec_round_trip() -> None:
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # git's empty blob
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    repo = _repos()[0]
    big = repo.file("data/train-00000-of-00002.parquet")
    small = repo.file("README.md")
    assert big.lfs and big.sha256 == hashlib.sha256(big.data).hexdigest()
    assert big.entry()["lfs"] == {"oid": big.sha256, "size": 5000, "pointerSize": 129}
    assert big.oid == git_blob_sha1(big.pointer or b"") != big.git_sha1
    assert not small.lfs and small.sha256 is None and small.oid == small.git_sha1
    assert "lfs" not in small.entry()
    assert len(repo.sha()) == 40 and repo.sha() != repo.sha(PARQUET_REF)
    assert repo.revision(repo.sha(PARQUET_REF)) is repo.revision(PARQUET_REF)
    again = HubRepo.from_spec(json.loads(json.dumps(repo.to_spec())))
    assert again.sha() == repo.sha() and again.sha(PARQUET_REF) == repo.sha(PARQUET_REF)
    forced = HubRepo("a/b", {"main": {"x": b"tiny"}}, lfs=["x"], lfs_threshold=None)
    assert forced.file("x").lfs


# ---------------------------------------------------------------- hh against the fake


async def test_list_repo_tree_paginates(tmp_path: Path) -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        repo = hub.repo("ns/public")
        sha = repo.sha()
        results = await _hh(
            hub,
            tmp_path / "hf",
            {"op": "tree", "repo_id": "ns/public", "repo_type": "dataset"},
            {"op": "tree", "repo_id": "ns/public", "repo_type": "dataset", "revision": PARQUET_REF},
            {"op": "tree", "repo_id": "ns/public", "repo_type": "dataset", "revision": sha},
            {
                "op": "tree",
                "repo_id": "ns/public",
                "repo_type": "dataset",
                "path_in_repo": "data/dir with space",
            },
        )
        main, parquet, pinned, sub = (_ok(r) for r in results)
        files = {e["path"]: e for e in main if e["type"] == "file"}
        assert set(files) == set(FILES)
        for path, f in repo.files().items():
            assert files[path]["size"] == f.size
            assert files[path]["blob_id"] == f.oid
            assert files[path]["sha256"] == f.sha256
        folders = {e["path"] for e in main if e["type"] == "directory"}
        assert folders == {"data", "data/dir with space", "nested", "nested/x", "nested/x/y"}
        assert pinned == main
        assert {e["path"] for e in parquet if e["type"] == "file"} == set(PARQUET_FILES)
        assert {e["path"] for e in sub} == {
            f"data/dir with space/{n}" for n in ("a#b%c.txt", "\u00e9t\u00e9 \u65e5\u672c.bin")
        }

        trees = [e for e in hub.requests("hub") if "/tree/" in e["path"]]
        main_pages = [
            e for e in trees if e["path"].startswith("/api/datasets/ns/public/tree/main?")
        ]
        assert len(main_pages) == 5  # 9 files and 5 folders, 3 a page
        cursors = [e["path"].rpartition("&cursor=")[2] for e in main_pages[1:]]
        assert cursors == ["3", "6", "9", "12"]
        assert any("/tree/refs%2Fconvert%2Fparquet?" in e["path"] for e in trees)
        assert any(f"/tree/{sha}?" in e["path"] for e in trees)
        assert any("/tree/main/data%2Fdir%20with%20space?" in e["path"] for e in trees)
        assert all(e["status"] == 200 for e in trees)
        assert hub.state.errors == []


async def test_snapshot_download_and_verify_with_token(tmp_path: Path) -> None:
    async with running_hub(_repos()) as hub:
        repo = hub.repo("ns/gated")
        out = tmp_path / "out"
        results = await _hh(
            hub,
            tmp_path / "hf",
            {
                "op": "snapshot",
                "repo_id": "ns/gated",
                "repo_type": "dataset",
                "local_dir": str(out),
                "token": TOKEN,
            },
            {
                "op": "verify",
                "repo_id": "ns/gated",
                "repo_type": "dataset",
                "local_dir": str(out),
                "token": TOKEN,
            },
        )
        _ok(results[0])
        verified = _ok(results[1])
        assert verified == {"checked": len(FILES), "mismatches": [], "missing": [], "extra": []}
        assert _local_files(out) == _all_bytes(repo)
        meta = out / ".cache/huggingface/download/data/train-00000-of-00002.parquet.metadata"
        commit, etag, _ = meta.read_text().split("\n", 2)
        assert (commit, etag) == (repo.sha(), repo.file("data/train-00000-of-00002.parquet").sha256)

        hub_log, cdn_log = hub.requests("hub"), hub.requests("cdn")
        revisions = [e for e in hub_log if "/revision/" in e["path"]]
        assert [e["path"] for e in revisions] == ["/api/datasets/ns/gated/revision/main"]
        resolves = [e for e in hub_log if "/resolve/" in e["path"]]
        assert all(f"/resolve/{repo.sha()}/" in e["path"] for e in resolves)
        assert {e["status"] for e in resolves} == {302, 307}
        assert any(e["path"].startswith("/api/resolve-cache/") for e in hub_log)
        # the token went to every hub request hh made with it, never to the CDN
        with_token = [e for e in hub_log if e["path"] != "/api/agent-harnesses"]
        assert with_token and all(e["auth"] == "Bearer hf_r***" for e in with_token)
        n_lfs = sum(f.lfs for f in repo.files().values())
        assert len(cdn_log) == n_lfs and all(e["auth"] is None for e in cdn_log)
        assert TOKEN not in json.dumps(hub.requests())


async def test_snapshot_of_a_ref_and_a_model(tmp_path: Path) -> None:
    async with running_hub(_repos()) as hub:
        public, model = hub.repo("ns/public"), hub.repo("org/model", "model")
        results = await _hh(
            hub,
            tmp_path / "hf",
            {
                "op": "snapshot",
                "repo_id": "ns/public",
                "repo_type": "dataset",
                "revision": PARQUET_REF,
                "local_dir": str(tmp_path / "parquet"),
            },
            {"op": "snapshot", "repo_id": "org/model", "local_dir": str(tmp_path / "model")},
            {
                "op": "paths_info",
                "repo_id": "ns/public",
                "repo_type": "dataset",
                "paths": ["README.md", "data/dir with space", "nope.txt", "q?x.txt"],
            },
        )
        assert all("ok" in r for r in results), results
        assert _local_files(tmp_path / "parquet") == _all_bytes(public, PARQUET_REF)
        assert _local_files(tmp_path / "model") == _all_bytes(model)
        assert sorted(results[2]["ok"]) == ["README.md", "data/dir with space", "q?x.txt"]
        paths = [e["path"] for e in hub.requests("hub")]
        assert "/api/datasets/ns/public/revision/refs%2Fconvert%2Fparquet" in paths
        assert "/api/models/org/model/revision/main" in paths
        assert any(p.startswith(f"/org/model/resolve/{model.sha()}/") for p in paths)


async def test_gated_private_and_missing(tmp_path: Path) -> None:
    async with running_hub(_repos()) as hub:
        gated = {"op": "tree", "repo_id": "ns/gated", "repo_type": "dataset"}
        private = {"op": "tree", "repo_id": "ns/private", "repo_type": "dataset"}
        download = {"op": "download", "repo_id": "ns/gated", "repo_type": "dataset"}
        results = await _hh(
            hub,
            tmp_path / "hf",
            {**gated, "token": False},
            {**gated, "token": WRONG},
            {**gated, "token": TOKEN},
            {**private, "token": False},
            {**private, "token": WRONG},
            {**private, "token": TOKEN},
            {"op": "tree", "repo_id": "ns/none", "repo_type": "dataset", "token": False},
            {**gated, "token": TOKEN, "revision": "no-such-branch"},
            {**download, "token": TOKEN, "filename": "no/such.file", "local_dir": str(tmp_path)},
            {**download, "token": False, "filename": "README.md", "local_dir": str(tmp_path)},
        )
        errors = [(r.get("error"), r.get("status")) for r in results]
        assert errors == [
            ("GatedRepoError", 401),
            ("GatedRepoError", 403),
            (None, None),
            ("RepositoryNotFoundError", 401),
            ("RepositoryNotFoundError", 401),
            (None, None),
            ("RepositoryNotFoundError", 401),
            ("RevisionNotFoundError", 404),
            ("EntryNotFoundError", 404),
            ("GatedRepoError", 401),
        ]
        codes = {(e["status"], e["auth"]) for e in hub.requests("hub") if "/gated/" in e["path"]}
        assert {(401, None), (403, "Bearer hf_w***"), (200, "Bearer hf_r***")} <= codes

        # a Hub that knows its users: an unknown token is "Invalid credentials" everywhere
        hub.state.users = frozenset({TOKEN})
        results = await _hh(
            hub,
            tmp_path / "hf",
            {"op": "tree", "repo_id": "ns/public", "repo_type": "dataset", "token": WRONG},
        )
        assert results == [{"error": "HfHubHTTPError", "status": 401}]


async def test_hh_waits_out_a_rate_limited_resolve(tmp_path: Path) -> None:
    async with running_hub(_repos()) as hub:
        # hh's first HEAD does not retry (it falls back to the local dir); its second does,
        # and sleeps t + 1 = 1 s on a 429 with r=0
        hub.rate_limit(2, reset=0)
        began = time.monotonic()
        results = await _hh(
            hub,
            tmp_path / "hf",
            {
                "op": "download",
                "repo_id": "ns/public",
                "repo_type": "dataset",
                "filename": "data/train-00000-of-00002.parquet",
                "local_dir": str(tmp_path / "out"),
            },
        )
        _ok(results[0])
        assert time.monotonic() - began >= 1.0
        resolves = [e["status"] for e in hub.requests("hub") if "/resolve/" in e["path"]]
        assert resolves == [429, 429, 302]


# ---------------------------------------------------------------- routes and switches


async def _get(
    s: aiohttp.ClientSession, url: str, **kw: Any
) -> tuple[int, Mapping[str, str], bytes]:
    """status, headers (case-insensitive: aiohttp sends "Etag"), body; no redirect followed."""
    async with s.get(yarl.URL(url, encoded=True), allow_redirects=False, **kw) as r:
        return r.status, r.headers, await r.read()


async def _lfs_location(s: aiohttp.ClientSession, hub: FakeHub, path: str) -> str:
    status, headers, _ = await _get(s, hub.resolve_url("ns/public", path))
    assert status == 302, status
    return headers["Location"]


async def test_resolve_answers_and_quoting() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        repo = hub.repo("ns/public")
        for path, f in repo.files().items():
            url = hub.resolve_url("ns/public", path, repo.sha())
            status, headers, _ = await _get(s, url)
            assert headers["X-Repo-Commit"] == repo.sha()
            assert headers["RateLimit-Policy"] == '"fixed window";"resolvers";q=3000;w=300'
            if f.lfs:
                assert status == 302
                assert headers["X-Linked-Etag"] == f'"{f.sha256}"'
                assert headers["X-Linked-Size"] == str(f.size)
                assert headers["Location"].startswith(f"{hub.cdn_url}/blob/{f.sha256}?")
                status, cdn_headers, body = await _get(s, headers["Location"])
                assert "ETag" not in cdn_headers and "Last-Modified" not in cdn_headers
            else:
                assert status == 307
                location = headers["Location"]
                assert location.startswith("/api/resolve-cache/datasets/ns/public/")
                status, cache_headers, body = await _get(s, hub.hub_url + location)
                assert cache_headers["ETag"] == f'"{f.git_sha1}"'
                assert cache_headers["X-Repo-Commit"] == repo.sha()
            assert status == 200 and body == f.data, path
        # the revision by name and as sent with an unencoded "refs/convert/..."
        for raw_rev in ("refs%2Fconvert%2Fparquet", "refs/convert/parquet"):
            raw = f"{hub.hub_url}/datasets/ns/public/resolve/{raw_rev}/default/train/0000.parquet"
            status, headers, _ = await _get(s, raw)
            assert status == 302 and headers["X-Repo-Commit"] == repo.sha(PARQUET_REF)
        status, headers, _ = await _get(s, hub.resolve_url("ns/public", "nope.txt"))
        assert (status, headers["X-Error-Code"]) == (404, "EntryNotFound")
        assert headers["X-Repo-Commit"] == repo.sha()
        status, headers, _ = await _get(s, hub.resolve_url("ns/public", "README.md", "v9"))
        assert (status, headers["X-Error-Code"]) == (404, "RevisionNotFound")
        status, _, _ = await _get(s, hub.hub_url + "/api/agent-harnesses")
        assert status == 404


async def test_cdn_ranges_and_signatures() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        data = hub.repo("ns/public").file("data/train-00000-of-00002.parquet").data
        url = await _lfs_location(s, hub, "data/train-00000-of-00002.parquet")
        status, headers, body = await _get(s, url, headers={"Range": "bytes=10-19"})
        assert (status, headers["Content-Range"], body) == (206, "bytes 10-19/5000", data[10:20])
        status, headers, body = await _get(s, url, headers={"Range": "bytes=4990-"})
        assert (status, headers["Content-Range"], body) == (
            206,
            "bytes 4990-4999/5000",
            data[4990:],
        )
        status, headers, body = await _get(s, url, headers={"Range": "bytes=-7"})
        assert (status, body) == (206, data[-7:])
        status, headers, _ = await _get(s, url, headers={"Range": "bytes=5000-"})
        assert (status, headers["Content-Range"]) == (416, "bytes */5000")
        status, _, body = await _get(s, url.replace("sig=", "sig=0"))
        assert status == 403 and b"AccessDenied" in body
        status, _, _ = await _get(s, url.replace("expires=", "expires=1"))
        assert status == 403
        ranges = [e["range"] for e in hub.requests("cdn")]
        assert ranges[:3] == ["bytes=10-19", "bytes=4990-", "bytes=-7"]


async def test_switch_rate_limit() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        hub.rate_limit(2, reset=7)
        url = hub.resolve_url("ns/public", "README.md")
        for _ in range(2):
            status, headers, _ = await _get(s, url)
            assert status == 429
            assert headers["RateLimit"] == '"resolvers";r=0;t=7'
            assert headers["RateLimit-Policy"] == '"fixed window";"resolvers";q=3000;w=300'
        status, headers, _ = await _get(s, url)
        assert status == 307 and headers["RateLimit"].startswith('"resolvers";r=2999;')
        assert hub.switches()["rate_limited"] == 0


async def test_switch_expired_url() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        hub.expire_next(1)
        path = "data/train-00001-of-00002.parquet"
        expired = await _lfs_location(s, hub, path)
        status, _, body = await _get(s, expired)
        assert status == 403 and b"expired" in body
        fresh = await _lfs_location(s, hub, path)
        status, _, body = await _get(s, fresh)
        assert (status, body) == (200, hub.repo("ns/public").file(path).data)


async def test_switch_cut_body() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        data = hub.repo("ns/public").file("data/train-00000-of-00002.parquet").data
        url = await _lfs_location(s, hub, "data/train-00000-of-00002.parquet")
        hub.cut_next(1, after=1000)
        async with s.get(yarl.URL(url, encoded=True)) as r:
            assert r.status == 200 and r.content_length == 5000
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        # what a resumer does: Range from the cut, no validator needed
        status, _, body = await _get(s, url, headers={"Range": "bytes=1000-"})
        assert status == 206 and data[:1000] + body == data
        assert [e["body"] for e in hub.requests("cdn")] == [1000, 4000]


async def test_switch_corrupt_body() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        data = hub.repo("ns/public").file("data/train-00000-of-00002.parquet").data
        url = await _lfs_location(s, hub, "data/train-00000-of-00002.parquet")
        hub.corrupt_next(1)
        _, _, bad = await _get(s, url)
        assert len(bad) == len(data) and bad != data
        assert sum(a != b for a, b in zip(bad, data, strict=True)) == 1
        _, _, good = await _get(s, url)
        assert good == data


async def test_switch_ignore_range_and_validators() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        data = hub.repo("ns/public").file("data/train-00000-of-00002.parquet").data
        url = await _lfs_location(s, hub, "data/train-00000-of-00002.parquet")
        hub.ignore_range()
        status, headers, body = await _get(s, url, headers={"Range": "bytes=100-"})
        assert (status, body) == (200, data) and "Content-Range" not in headers
        hub.ignore_range(False)
        hub.send_validators()
        status, headers, _ = await _get(s, url, headers={"Range": "bytes=100-"})
        assert status == 206
        assert headers["ETag"] and headers["Last-Modified"]


async def test_switch_bandwidth() -> None:
    repo = HubRepo("ns/big", {"main": {"big.bin": Generated(60_000, 9)}})
    async with running_hub([repo]) as hub, aiohttp.ClientSession() as s:
        status, headers, _ = await _get(s, hub.resolve_url("ns/big", "big.bin"))
        hub.set_bandwidth(200_000)
        began = time.monotonic()
        status, _, body = await _get(s, headers["Location"])
        elapsed = time.monotonic() - began
        assert status == 200 and len(body) == 60_000
        assert 0.25 <= elapsed < 3.0
        hub.set_bandwidth(0)
        began = time.monotonic()
        await _get(s, headers["Location"])
        assert time.monotonic() - began < 0.25


async def test_control_routes() -> None:
    async with running_hub(_repos()) as hub, aiohttp.ClientSession() as s:
        async with s.post(hub.hub_url + "/_fake/switches", json={"corrupt": 2}) as r:
            assert r.status == 200 and (await r.json())["corrupt"] == 2
        async with s.post(hub.cdn_url + "/_fake/switches", json={"nope": 1}) as r:
            assert r.status == 400
        async with s.post(hub.hub_url + "/_fake/switches", json={"cut": -1}) as r:
            assert r.status == 400
        await _get(s, hub.resolve_url("ns/public", "README.md"))
        async with s.get(hub.hub_url + "/_fake/requests?origin=hub") as r:
            assert [e["path"] for e in await r.json()] == [
                "/datasets/ns/public/resolve/main/README.md"
            ]
        async with s.delete(hub.cdn_url + "/_fake/requests") as r:
            assert r.status == 200
        assert hub.requests() == []


# ---------------------------------------------------------------- the subprocess


def _urlopen(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


async def test_hub_process(tmp_path: Path) -> None:
    with HubProcess(_repos(), tmp_path / "log" / "requests.jsonl", page_size=4) as hub:
        assert hub.hub_url != hub.cdn_url and hub.pid is not None
        gated = hub.repo("ns/gated")
        out = tmp_path / "out"
        results = await _hh(
            hub,
            tmp_path / "hf",
            {
                "op": "snapshot",
                "repo_id": "ns/gated",
                "repo_type": "dataset",
                "local_dir": str(out),
                "token": TOKEN,
            },
        )
        _ok(results[0])
        assert _local_files(out) == _all_bytes(gated)
        log = hub.requests()
        assert {e["origin"] for e in log} == {"hub", "cdn"}
        assert all(e["auth"] is None for e in hub.requests("cdn"))
        assert len([e for e in log if "/tree/" in e["path"]]) == -(-(len(FILES) + 5) // 4)
        assert TOKEN not in hub.log_path.read_text()

        hub.clear_requests()
        hub.rate_limit(1, reset=3)
        hub.expire_next(1)
        assert hub.switches()["rate_limited"] == 1
        url = hub.resolve_url("ns/gated", "data/train-00000-of-00002.parquet")
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, headers, _ = _urlopen(url, auth)
        assert (status, headers["RateLimit"]) == (429, '"resolvers";r=0;t=3')
        status, headers, _ = _urlopen(url, auth)
        assert status == 302
        assert _urlopen(headers["Location"])[0] == 403
        status, headers, _ = _urlopen(url, auth)
        assert _urlopen(headers["Location"])[0] == 200
        assert [e["status"] for e in hub.requests()] == [429, 302, 403, 302, 200]
        assert [e["auth"] is not None for e in hub.requests()] == [True, True, False, True, False]
