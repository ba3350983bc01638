"""The fake Hub's own routes, parsed from the raw (still percent-encoded) request path.

=====================================================  =========================================
``GET /api/{type}s/{ns}/{name}[/revision/{rev}]``      ``{"id","sha","siblings",...}``
                                                       (``?blobs=true``: size, blobId, lfs too)
``GET /api/{type}s/{ns}/{name}/tree/{rev}[/{path}]``   a page of entries (``?recursive=true``);
                                                       ``Link: <...&cursor=N>; rel="next"``
``POST /api/{type}s/{ns}/{name}/paths-info/{rev}``     entries of the form's ``paths``
``HEAD|GET /[{type}s/]{ns}/{name}/resolve/{rev}/{p}``  git file: 307 to ``/api/resolve-cache/...``;
                                                       LFS file: 302 to the CDN's signed URL
``HEAD|GET /api/resolve-cache/{type}s/{ns}/{name}/``   200, the bytes, ``ETag: "<git sha1>"``
``{sha}/{path}?...``                                   (``Range`` answered)
``GET /api/agent-harnesses``                           404
=====================================================  =========================================

``{rev}`` is one segment (``refs%2Fconvert%2Fparquet``); ``refs/convert/X`` and ``refs/pr/N``
are also taken unencoded.  A path's segments are percent-decoded one by one (UTF-8).  Every
repo route checks access first: unknown or private repo -> 401 ``RepoNotFound``; gated repo ->
401 ``GatedRepo`` without a token, 403 ``GatedRepo`` with a token not granted; then 404
``RevisionNotFound`` / ``EntryNotFound`` (the latter with ``X-Repo-Commit``).  With
``HubState.users`` set, a token outside it answers 401 "Invalid credentials in Authorization
header" everywhere.  Errors carry ``X-Error-Code``, ``X-Error-Message`` and ``{"error": ...}``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from urllib.parse import quote, unquote, urlencode

from aiohttp import web

from .hub_cdn import send_body
from .hub_repos import HubFile, HubRepo, HubRevision
from .hub_state import RATE_WINDOW, RESOLVER_QUOTA, HubState, bearer_token, hub_state_of

_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_PREFIXES = {"datasets": "dataset", "spaces": "space"}


class HubError(Exception):
    """An error answer of the Hub (caught by :func:`dispatch`)."""

    def __init__(
        self, status: int, code: str | None, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> web.Response:
        headers = dict(self.headers)
        if self.code is not None:
            headers["X-Error-Code"] = self.code
        headers["X-Error-Message"] = self.message.encode("ascii", "backslashreplace").decode()
        return web.json_response({"error": self.message}, status=self.status, headers=headers)


def _decode(segment: str) -> str:
    try:
        return unquote(segment, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise HubError(400, None, f"bad percent-encoding in {segment!r}") from None


def _split_revision(segments: Sequence[str]) -> tuple[str, list[str]]:
    """The revision (one encoded segment, or an unencoded ``refs/x/y``) and the decoded rest."""
    if not segments or not segments[0]:
        raise HubError(400, None, "missing revision")
    first = _decode(segments[0])
    if first == "refs" and len(segments) >= 3 and segments[1] in ("convert", "pr"):
        return f"refs/{segments[1]}/{_decode(segments[2])}", [_decode(s) for s in segments[3:]]
    return first, [_decode(s) for s in segments[1:]]


def _access(state: HubState, request: web.Request, repo_type: str, repo_id: str) -> HubRepo:
    token = bearer_token(request)
    if token is not None and state.users is not None and token not in state.users:
        raise HubError(401, None, "Invalid credentials in Authorization header")
    repo = state.repos.get((repo_type, repo_id))
    if repo is None or (repo.private and not repo.may_read(token)):
        raise HubError(401, "RepoNotFound", "Repository not found")
    if repo.gated and not repo.may_read(token):
        kind = "model" if repo_type == "model" else repo_type
        if token is None:
            raise HubError(
                401,
                "GatedRepo",
                f"Access to {kind} {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
        raise HubError(
            403,
            "GatedRepo",
            f"Access to {kind} {repo_id} is restricted and you are not in the authorized list. "
            f"Visit {state.hub_url}/{repo.prefix}{repo_id} to ask for access.",
        )
    return repo


def _revision(repo: HubRepo, rev: str) -> HubRevision:
    revision = repo.revision(rev)
    if revision is None:
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
    return revision


def _file(revision: HubRevision, path: str) -> HubFile:
    f = revision.files.get(path)
    if f is None:
        raise HubError(
            404, "EntryNotFound", "Entry not found", headers={"X-Repo-Commit": revision.sha}
        )
    return f


def _method(request: web.Request, *allowed: str) -> None:
    if request.method not in allowed:
        raise HubError(405, None, f"method {request.method} not allowed")


async def dispatch(request: web.Request) -> web.StreamResponse:
    """Every hub request: route on the raw path, answer HubErrors as the Hub does."""
    state = hub_state_of(request)
    raw_path = request.raw_path.split("?", 1)[0]
    segments = raw_path.split("/")[1:]
    try:
        if segments[:1] == ["api"]:
            return await _api(state, request, segments[1:])
        return await _resolve(state, request, segments)
    except HubError as err:
        return err.response()


async def _api(state: HubState, request: web.Request, segments: list[str]) -> web.StreamResponse:
    if segments[:1] == ["resolve-cache"]:
        return await _resolve_cache(state, request, segments[1:])
    if len(segments) < 3 or segments[0] not in _TYPES:
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")
    repo_type = _TYPES[segments[0]]
    repo_id = f"{_decode(segments[1])}/{_decode(segments[2])}"
    rest = segments[3:]
    if not rest or rest == [""]:
        _method(request, "GET", "HEAD")
        return _info(state, request, repo_type, repo_id, "main")
    op = rest[0]
    rev, tail = _split_revision(rest[1:])
    if op == "revision":
        _method(request, "GET", "HEAD")
        if tail and tail != [""]:  # an unencoded branch with a "/" in it
            rev = "/".join([rev, *tail])
        return _info(state, request, repo_type, repo_id, rev)
    if op == "tree":
        _method(request, "GET", "HEAD")
        return _tree(state, request, repo_type, repo_id, rev, "/".join(tail))
    if op == "paths-info":
        _method(request, "POST")
        return await _paths_info(state, request, repo_type, repo_id, rev)
    raise HubError(404, None, "Sorry, we can't find the page you are looking for.")


def _info(
    state: HubState, request: web.Request, repo_type: str, repo_id: str, rev: str
) -> web.Response:
    repo = _access(state, request, repo_type, repo_id)
    revision = _revision(repo, rev)
    blobs = request.query.get("blobs", "").lower() in ("1", "true")
    body = {
        "_id": revision.sha[:24],
        "id": repo_id,
        "author": repo_id.split("/")[0],
        "sha": revision.sha,
        "lastModified": "2026-01-01T00:00:00.000Z",
        "createdAt": "2026-01-01T00:00:00.000Z",
        "private": repo.private,
        "gated": "auto" if repo.gated else False,
        "disabled": False,
        "tags": [],
        "siblings": [f.sibling(blobs) for f in revision.files.values()],
        "usedStorage": sum(f.size for f in revision.files.values()),
    }
    return web.json_response(body)


def _tree(
    state: HubState, request: web.Request, repo_type: str, repo_id: str, rev: str, path: str
) -> web.Response:
    repo = _access(state, request, repo_type, repo_id)
    revision = _revision(repo, rev)
    recursive = request.query.get("recursive", "").lower() in ("1", "true")
    entries = revision.tree(path, recursive)
    if entries is None:
        raise HubError(
            404,
            "EntryNotFound",
            f"{path} does not exist on {rev}",
            headers={"X-Repo-Commit": revision.sha},
        )
    cursor_raw = request.query.get("cursor", "0")
    if not cursor_raw.isdigit():
        raise HubError(400, None, f"bad cursor {cursor_raw!r}")
    cursor = int(cursor_raw)
    page = entries[cursor : cursor + state.page_size]
    headers = {}
    if cursor + state.page_size < len(entries):
        query = [(k, v) for k, v in request.query.items() if k != "cursor"]
        query.append(("cursor", str(cursor + state.page_size)))
        base = request.raw_path.split("?", 1)[0]
        headers["Link"] = f'<{state.hub_url}{base}?{urlencode(query)}>; rel="next"'
    return web.json_response(page, headers=headers)


async def _paths_info(
    state: HubState, request: web.Request, repo_type: str, repo_id: str, rev: str
) -> web.Response:
    repo = _access(state, request, repo_type, repo_id)
    revision = _revision(repo, rev)
    form = await request.post()
    out = []
    for path in form.getall("paths", []):
        entry = revision.entry(str(path))
        if entry is not None:
            out.append(entry)
    return web.json_response(out)


def _rate_headers(remaining: int, reset: int) -> dict[str, str]:
    return {
        "RateLimit": f'"resolvers";r={remaining};t={reset}',
        "RateLimit-Policy": f'"fixed window";"resolvers";q={RESOLVER_QUOTA};w={RATE_WINDOW}',
    }


async def _resolve(
    state: HubState, request: web.Request, segments: list[str]
) -> web.StreamResponse:
    """``/[{type}s/]{ns}/{name}/resolve/{rev}/{path}``."""
    typed = segments[:1] and segments[0] in _PREFIXES
    start = 1 if typed else 0
    if len(segments) < start + 5 or segments[start + 2] != "resolve":
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")
    _method(request, "GET", "HEAD")
    repo_type = _PREFIXES[segments[0]] if typed else "model"
    repo_id = f"{_decode(segments[start])}/{_decode(segments[start + 1])}"
    if state.take("rate_limited"):
        reset = state.switches.rate_limit_reset
        raise HubError(
            429,
            None,
            "You have exceeded our hourly quotas for action 'resolve'.",
            headers=_rate_headers(0, reset),
        )
    state.resolves += 1
    repo = _access(state, request, repo_type, repo_id)
    rev, tail = _split_revision(segments[start + 3 :])
    revision = _revision(repo, rev)
    f = _file(revision, "/".join(tail))
    elapsed = int(time.monotonic()) % RATE_WINDOW
    headers = {
        "X-Repo-Commit": revision.sha,
        "Vary": "Origin, Accept",
        **_rate_headers(max(0, RESOLVER_QUOTA - state.resolves), RATE_WINDOW - elapsed),
    }
    if f.sha256 is None:
        raw_rev = quote(rev, safe="")
        raw_file = quote(f.path)
        original = f"/{repo.prefix}{repo_id}/resolve/{raw_rev}/{raw_file}"
        location = (
            f"/api/resolve-cache/{repo.repo_type}s/{repo_id}/{revision.sha}/{raw_file}"
            f"?{quote(original, safe='')}=&etag=%22{f.git_sha1}%22"
        )
        headers["Location"] = location
        text = f"Temporary Redirect. Redirecting to {location}"
        return web.Response(status=307, text=text, headers=headers)
    location = state.cdn_location(f, expired=state.take("expired"))
    headers.update(
        {
            "Location": location,
            "X-Linked-Etag": f'"{f.sha256}"',
            "X-Linked-Size": str(f.size),
        }
    )
    return web.Response(status=302, text=f"Found. Redirecting to {location}", headers=headers)


async def _resolve_cache(
    state: HubState, request: web.Request, segments: list[str]
) -> web.StreamResponse:
    """``/api/resolve-cache/{type}s/{ns}/{name}/{sha}/{path}?...``: a git file's bytes."""
    _method(request, "GET", "HEAD")
    if len(segments) < 5 or segments[0] not in _TYPES:
        raise HubError(404, None, "Sorry, we can't find the page you are looking for.")
    repo_type = _TYPES[segments[0]]
    repo_id = f"{_decode(segments[1])}/{_decode(segments[2])}"
    repo = _access(state, request, repo_type, repo_id)
    revision = _revision(repo, _decode(segments[3]))
    f = _file(revision, "/".join(_decode(s) for s in segments[4:]))
    headers = {
        "ETag": f'"{f.git_sha1}"',
        "X-Repo-Commit": revision.sha,
        "Vary": "Origin, Accept",
    }
    return await send_body(request, f.data, headers)
