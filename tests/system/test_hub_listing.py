"""hub/listing.py against the fake Hub (tests/server/hub*.py): revision, tree pages, errors,
retries, and where the token goes.

``list_repo`` is synchronous and the fake Hub runs in the test's event loop, so every listing
runs in a thread (:func:`_list`). A few cases put a small aiohttp "front" before the Hub
(:class:`Front`): another origin whose answers a test scripts (429s, redirects, not JSON), and
which forwards the rest to the Hub without the token, so that the Hub's own log shows only the
requests the client sent it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
import yarl
from aiohttp import web

from fetchshard.errors import HubError
from fetchshard.hub.auth import HubToken
from fetchshard.hub.listing import RepoFile, RepoListing, list_repo, selected
from fetchshard.hub.uri import parse_hf_uri
from server import (
    LOOPBACK,
    PARQUET_REF,
    SAMPLE_FILES,
    SAMPLE_PARQUET_FILES,
    SAMPLE_TOKEN,
    FakeHub,
    ResetServer,
    closed_port,
    running_hub,
    sample_repos,
)

pytestmark = pytest.mark.timeout(20)

TOKEN = SAMPLE_TOKEN
WRONG = "hf_wrong_token_9876543210fedcba"

FILES = SAMPLE_FILES
PARQUET_FILES = SAMPLE_PARQUET_FILES
_repos = sample_repos


class Sleeps(list[float]):
    """A sleep that records instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


async def _list(
    text: str, endpoint: str, token: str | HubToken | None = None, **options: Any
) -> RepoListing:
    options.setdefault("sleep", Sleeps())
    options.setdefault("trust_env", False)
    options.setdefault("timeout", 5.0)
    return await asyncio.to_thread(
        list_repo, parse_hf_uri(text), endpoint=endpoint, token=token, **options
    )


async def _refused(
    text: str, endpoint: str, token: str | HubToken | None = None, **options: Any
) -> str:
    """The message of the HubError a listing ends with (checked to be one line, token-free)."""
    with pytest.raises(HubError) as info:
        await _list(text, endpoint, token, **options)
    message = str(info.value)
    assert "\n" not in message and TOKEN not in message and WRONG not in message
    assert message.startswith(str(parse_hf_uri(text)) + ": "), message
    assert info.value.exit_code == 2
    return message


def _expected(hub: FakeHub, repo_id: str, rev: str = "main", under: str = "") -> list[RepoFile]:
    return [
        RepoFile(f.path, f.size, f.oid, f.sha256)
        for path, f in sorted(hub.repo(repo_id).files(rev).items())
        if path.startswith(under)
    ]


def _paths(hub: FakeHub, part: str) -> list[str]:
    return [e["path"] for e in hub.requests("hub") if part in e["path"]]


# ---------------------------------------------------------------- listing


async def test_every_page_as_huggingface_hub_lists_it() -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        repo = hub.repo("ns/public")
        listing = await _list("hf://datasets/ns/public", hub.endpoint)
        assert listing.commit == repo.sha()
        assert listing.endpoint == hub.endpoint
        assert listing.files == tuple(_expected(hub, "ns/public"))
        assert listing.total_size == sum(f.size for f in repo.files().values())
        for f in listing.files:
            hub_file = repo.file(f.path)
            assert f.etag == (hub_file.sha256 if hub_file.lfs else hub_file.git_sha1)
            assert f.is_lfs == hub_file.lfs
        # one revision call, then the tree at the commit: 9 files + 5 folders, 3 a page
        assert _paths(hub, "/revision/") == ["/api/datasets/ns/public/revision/main"]
        trees = _paths(hub, "/tree/")
        assert len(trees) == 5
        assert trees[0] == f"/api/datasets/ns/public/tree/{repo.sha()}?recursive=true&expand=false"
        assert all(p.startswith(f"/api/datasets/ns/public/tree/{repo.sha()}?") for p in trees)

        from huggingface_hub import HfApi

        api = HfApi(endpoint=hub.endpoint, token=False)
        theirs = await asyncio.to_thread(api.list_repo_files, "ns/public", repo_type="dataset")
        assert sorted(theirs) == [f.path for f in listing.files]
        theirs = await asyncio.to_thread(api.list_repo_files, "org/model")
        model = await _list("hf://org/model", hub.endpoint)
        assert sorted(theirs) == [f.path for f in model.files]
        assert _paths(hub, "/revision/")[-1] == "/api/models/org/model/revision/main"


async def test_revisions_ref_and_commit() -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        repo = hub.repo("ns/public")
        listing = await _list(f"hf://datasets/ns/public@{PARQUET_REF}", hub.endpoint)
        assert listing.commit == repo.sha(PARQUET_REF)
        assert listing.files == tuple(_expected(hub, "ns/public", PARQUET_REF))
        assert _paths(hub, "/revision/") == [
            "/api/datasets/ns/public/revision/refs%2Fconvert%2Fparquet"
        ]
        assert listing.resolve_url(listing.files[0]) == (
            f"{hub.endpoint}/datasets/ns/public/resolve/{listing.commit}/default/train/0000.parquet"
        )

        # a commit: no revision call at all
        hub.clear_requests()
        sha = repo.sha()
        listing = await _list(f"hf://datasets/ns/public@{sha}", hub.endpoint)
        assert listing.commit == sha and listing.files == tuple(_expected(hub, "ns/public"))
        assert _paths(hub, "/revision/") == []
        assert {e["path"].split("?")[0] for e in hub.requests("hub")} == {
            f"/api/datasets/ns/public/tree/{sha}"
        }


async def test_paths_quoted_and_fetched() -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        listing = await _list("hf://datasets/ns/public", hub.endpoint)
        assert {"data/dir with space/a#b%c.txt", "q?x.txt"} <= {f.path for f in listing.files}
        # every file's resolve URL is one the Hub answers, pinned to the commit
        async with aiohttp.ClientSession() as s:
            for f in listing.files:
                url = yarl.URL(listing.resolve_url(f), encoded=True)
                async with s.get(url, allow_redirects=False) as r:
                    assert r.status in (302, 307), f.path
                    assert r.headers["X-Repo-Commit"] == listing.commit


async def test_a_sub_folder() -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        sha = hub.repo("ns/public").sha()
        listing = await _list("hf://datasets/ns/public/data/dir with space/", hub.endpoint)
        assert [f.path for f in listing.files] == [
            "data/dir with space/a#b%c.txt",
            "data/dir with space/\u00e9t\u00e9 \u65e5\u672c.bin",
        ]
        assert listing.uri.path == "data/dir with space"
        assert _paths(hub, "/tree/") == [
            f"/api/datasets/ns/public/tree/{sha}/data%2Fdir%20with%20space"
            "?recursive=true&expand=false"
        ]
        listing = await _list("hf://datasets/ns/public/data", hub.endpoint)
        assert listing.files == tuple(_expected(hub, "ns/public", under="data/"))
        assert len(_paths(hub, "/tree/")) == 1 + 2  # 4 files and a folder, 3 a page


@pytest.mark.parametrize(
    "path", ["data/dir with space/a#b%c.txt", "data/dir with space/\u00e9t\u00e9 \u65e5\u672c.bin"]
)
async def test_a_single_file(path: str) -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        listing = await _list(f"hf://datasets/ns/public/{path}", hub.endpoint, TOKEN)
        assert listing.files == tuple(f for f in _expected(hub, "ns/public") if f.path == path)
        posts = [e for e in hub.requests("hub") if e["method"] == "POST"]
        assert [e["path"] for e in posts] == [
            f"/api/datasets/ns/public/paths-info/{listing.commit}"
        ]
        assert all(e["auth"] == "Bearer hf_r***" for e in hub.requests("hub"))


async def test_include_exclude_as_huggingface_hub() -> None:
    from huggingface_hub.utils import filter_repo_objects

    cases = [
        (["data/"], ["*.bin"]),
        (["*.parquet", "README.md"], []),
        ([], ["data/*", ".*"]),
        (["nested\\x/"], []),
        (["*"], ["*"]),
    ]
    async with running_hub(_repos(), page_size=50) as hub:
        everything = _expected(hub, "ns/public")
        for include, exclude in cases:
            listing = await _list(
                "hf://datasets/ns/public", hub.endpoint, include=include, exclude=exclude
            )
            theirs = filter_repo_objects(
                [f.path for f in everything],
                allow_patterns=include or None,
                ignore_patterns=exclude or None,
            )
            assert [f.path for f in listing.files] == list(theirs), (include, exclude)
    assert selected("a/b.txt") and not selected("a/b.txt", exclude=["a/"])


# ---------------------------------------------------------------- access and errors


async def test_gated_repo_and_tokens() -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        message = await _refused("hf://datasets/ns/gated", hub.endpoint)
        assert "gated" in message and "HF_TOKEN" in message and "hf auth login" in message
        message = await _refused("hf://datasets/ns/gated", hub.endpoint, WRONG)
        assert "gated" in message and "not granted access" in message
        assert f"{hub.endpoint}/datasets/ns/gated" in message
        assert "[Hub: Access to dataset ns/gated is restricted" in message
        hub.clear_requests()

        token = HubToken(TOKEN, "HF_TOKEN")
        listing = await _list("hf://datasets/ns/gated", hub.endpoint, token)
        assert listing.files == tuple(_expected(hub, "ns/gated"))
        log = hub.requests("hub")
        assert len(log) == 6 and all(e["auth"] == "Bearer hf_r***" for e in log)

        # private: the same "not found" as a repo that does not exist, until the token sees it
        message = await _refused("hf://datasets/ns/private", hub.endpoint)
        assert "repo not found, or private" in message and "HF_TOKEN" in message
        message = await _refused("hf://datasets/ns/private", hub.endpoint, WRONG)
        assert "not found, or private and the token cannot see it" in message
        assert (await _list("hf://datasets/ns/private", hub.endpoint, TOKEN)).files

        # a Hub that knows its users: a token it does not know is refused everywhere
        hub.state.users = frozenset({TOKEN})
        message = await _refused(
            "hf://datasets/ns/public", hub.endpoint, HubToken(WRONG, "HF_TOKEN")
        )
        assert "refused the token (HF_TOKEN): invalid credentials" in message


async def test_unknown_repo_revision_and_path() -> None:
    async with running_hub(_repos(), page_size=3) as hub:
        message = await _refused("hf://datasets/ns/nothing", hub.endpoint)
        assert "repo not found" in message
        message = await _refused("hf://datasets/ns/public", "http://127.0.0.1:1/")
        assert "cannot reach http://127.0.0.1:1" in message
        message = await _refused("hf://datasets/ns/public@no-such-branch", hub.endpoint)
        assert "revision 'no-such-branch' not found" in message
        message = await _refused("hf://datasets/ns/public@" + "ab" * 20, hub.endpoint)
        assert "revision '" + "ab" * 20 + "' not found" in message
        message = await _refused("hf://datasets/ns/public/no/such/thing", hub.endpoint)
        assert "no file or folder 'no/such/thing' at revision 'main'" in message
        message = await _refused("hf://models/ns/public", hub.endpoint)  # a dataset, not a model
        assert "repo not found" in message


async def test_unreachable_endpoint() -> None:
    sleeps = Sleeps()
    endpoint = f"http://{LOOPBACK}:{closed_port()}"
    message = await _refused("hf://ns/n", endpoint, TOKEN, sleep=sleeps, max_retries=2)
    assert f"cannot reach {endpoint}: " in message and "refused" in message
    assert sleeps == [1.0, 2.0]


async def test_a_token_no_header_can_carry() -> None:
    message = await _refused("hf://ns/n", "http://127.0.0.1:1", "hf_\u00e9t\u00e9")
    assert "the token holds characters an HTTP header cannot carry" in message
    assert "\u00e9" not in message


async def test_connections_reset() -> None:
    sleeps = Sleeps()
    with ResetServer() as reset:
        endpoint = f"http://{LOOPBACK}:{reset.port}"
        message = await _refused("hf://ns/n", endpoint, sleep=sleeps, max_retries=3)
        assert f"cannot reach {endpoint}: " in message
        assert sleeps == [1.0, 2.0, 4.0] and reset.connections == 4


# ---------------------------------------------------------------- a scripted front


@dataclass
class Front:
    """Another origin before the Hub: scripted answers first, then the Hub's (forwarded
    without the token, redirects and ``Link`` headers untouched)."""

    hub_url: str
    url: str = ""
    #: (path prefix, status, headers, body), used once each, first match first
    script: list[tuple[str, int, dict[str, str], str]] = field(default_factory=list)
    #: (method, raw path, Authorization or None) of every request it got
    log: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.log.append((request.method, request.raw_path, request.headers.get("Authorization")))
        for i, (prefix, status, headers, body) in enumerate(self.script):
            if request.raw_path.startswith(prefix):
                del self.script[i]
                return web.Response(status=status, headers=headers, text=body)
        async with aiohttp.ClientSession() as s:
            url = yarl.URL(self.hub_url + request.raw_path, encoded=True)
            async with s.request(
                request.method, url, data=await request.read(), allow_redirects=False
            ) as r:
                headers = {
                    k: v
                    for k, v in r.headers.items()
                    if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
                }
                return web.Response(status=r.status, headers=headers, body=await r.read())


@contextlib.asynccontextmanager
async def running_front(hub: FakeHub) -> AsyncIterator[Front]:
    front = Front(hub.hub_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", front.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, LOOPBACK, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        front.url = f"http://{LOOPBACK}:{port}"
        yield front
    finally:
        await runner.cleanup()


async def test_rate_limited_then_listed() -> None:
    async with running_hub(_repos(), page_size=3) as hub, running_front(hub) as front:
        limited = {
            "RateLimit": '"api";r=0;t=3',
            "RateLimit-Policy": '"fixed window";"api";q=500;w=300',
        }
        front.script = [
            ("/api/datasets/ns/public/revision/", 429, limited, "slow down"),
            ("/api/datasets/ns/public/tree/", 503, {"Retry-After": "7"}, "busy"),
            ("/api/datasets/ns/public/tree/", 502, {}, "bad gateway"),
        ]
        sleeps = Sleeps()
        listing = await _list("hf://datasets/ns/public", front.url, TOKEN, sleep=sleeps)
        assert listing.files == tuple(_expected(hub, "ns/public"))
        # RateLimit r=0;t=3: 3 + 1 s; Retry-After: 7 s; then the backoff's second step
        assert sleeps == [4.0, 7.0, 2.0]
        assert [status for status in (e["status"] for e in hub.requests("hub"))].count(200) == 6

        # still failing: given up after the retries, with the Hub's words
        front.script = [
            ("/api/datasets/ns/public/revision/", 500, {"X-Error-Message": "down"}, "")
        ] * 3
        sleeps = Sleeps()
        message = await _refused(
            "hf://datasets/ns/public", front.url, TOKEN, sleep=sleeps, max_retries=2
        )
        assert message.endswith(
            "answered HTTP 500 to the revision request after 3 tries [Hub: down]"
        )
        assert sleeps == [1.0, 2.0]

        # a wait beyond what the listing may wait: no sleep, a clear refusal
        front.script = [("/api/", 429, {"RateLimit": '"api";r=0;t=299'}, "")]
        sleeps = Sleeps()
        message = await _refused("hf://datasets/ns/public", front.url, sleep=sleeps, max_wait=60.0)
        assert "HTTP 429" in message and "300 s" in message and "retry later" in message
        assert sleeps == []
        front.script = [("/api/", 429, {}, "")] * 2
        message = await _refused("hf://datasets/ns/public", front.url, max_retries=1)
        assert "rate limited by" in message


async def test_token_stays_on_the_endpoints_origin() -> None:
    async with running_hub(_repos(), page_size=3) as hub, running_front(hub) as front:
        # the Hub's Link headers name its own origin, not the front's: pages 2.. go there
        listing = await _list("hf://datasets/ns/public", front.url, TOKEN)
        assert listing.files == tuple(_expected(hub, "ns/public"))
        assert [(m, p.split("/")[5]) for m, p, _ in front.log] == [
            ("GET", "revision"),
            ("GET", "tree"),
        ]
        assert all(auth == f"Bearer {TOKEN}" for _, _, auth in front.log)
        direct = hub.requests("hub")
        assert len(direct) == 2 + 4  # forwarded by the front (no token), then pages 2 to 5
        assert all(e["auth"] is None for e in direct)

        # a redirect to another origin loses the token; one on the same origin keeps it
        front.log.clear()
        hub.clear_requests()
        sha = hub.repo("ns/public").sha()
        front.script = [
            (
                "/api/datasets/ns/old/revision/main",
                307,
                {"Location": "/api/datasets/ns/public/revision/main"},
                "",
            ),
            (
                f"/api/datasets/ns/old/tree/{sha}",
                302,
                {"Location": f"{hub.hub_url}/api/datasets/ns/public/tree/{sha}?recursive=true"},
                "",
            ),
        ]
        listing = await _list("hf://datasets/ns/old", front.url, TOKEN)
        assert listing.commit == sha and listing.files == tuple(_expected(hub, "ns/public"))
        assert [auth is not None for _, _, auth in front.log] == [True, True, True]
        assert [p.split("/")[4] for _, p, _ in front.log] == ["old", "public", "old"]
        assert all(e["auth"] is None for e in hub.requests("hub"))


async def test_not_a_hub() -> None:
    async with running_hub(_repos(), page_size=3) as hub, running_front(hub) as front:
        front.script = [("/api/", 200, {"Content-Type": "text/html"}, "<html>hello</html>")]
        message = await _refused("hf://datasets/ns/public", front.url)
        assert "is not JSON: is " + front.url + " a Hugging Face Hub?" in message
        front.script = [("/api/", 200, {}, '{"sha": "main"}')]
        message = await _refused("hf://datasets/ns/public", front.url)
        assert "no commit sha" in message
        front.script = [
            ("/api/datasets/ns/public/tree/", 200, {}, '[{"type": "file", "path": "a"}]')
        ]
        message = await _refused("hf://datasets/ns/public", front.url)
        assert "malformed tree entry" in message
        loop = f'<{front.url}/api/datasets/ns/public/tree/x>; rel="next"'
        front.script = [
            ("/api/datasets/ns/public/tree/", 200, {"Link": loop}, "[]"),
            ("/api/datasets/ns/public/tree/x", 200, {"Link": loop}, "[]"),
        ]
        message = await _refused("hf://datasets/ns/public", front.url)
        assert "loop back" in message
