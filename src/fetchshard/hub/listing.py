"""An ``hf://`` input's files: the revision resolved to a commit and the tree listed, once.

Synchronous (urllib), run before any event loop: one revision call (none when the URI names a
commit), then the recursive tree at that commit, page after page (``Link: rel="next"``,
followed verbatim). A URI naming one file rather than a folder is answered by ``paths-info``.

The token goes as ``Authorization: Bearer`` only to the endpoint's origin (scheme, host,
port): not to a next page on another origin, not across a redirect (redirects are followed
here, hop by hop, never by urllib). 408, 429, 5xx and dropped connections are retried
(the wait a 429 asks for, else 1, 2, 4, 8, 8 s), a bounded number of times within a bounded
total wait; every other failure is one :class:`~fetchshard.errors.HubError`, whose message
names the URI and never holds the token. Nothing here writes a file.
"""

from __future__ import annotations

import errno
import http.client
import json
import logging
import re
import socket
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.message import Message
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

from fetchshard.errors import HubError
from fetchshard.http.client import user_agent as default_user_agent
from fetchshard.http.headers import wait_asked
from fetchshard.hub.auth import HubToken
from fetchshard.hub.uri import (
    DEFAULT_REVISION,
    HfUri,
    is_commit,
    paths_info_url,
    resolve_url,
    revision_url,
    tree_url,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})  # huggingface_hub's http_backoff
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
MAX_RETRIES = 5
MAX_WAIT = 360.0  # the Hub's rate window is 5 minutes: one full wait fits
# A revision answer lists every file ("siblings"): some 50 MB for 800,000 files.
MAX_BODY = 256 * 1024 * 1024
_BACKOFF = (1.0, 2.0, 4.0, 8.0)
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_LINK = re.compile(r"<([^>]*)>([^,<]*)")
_REL = re.compile(r';\s*rel\s*=\s*"?([^";]*)"?', re.IGNORECASE)
_LOGIN = "set HF_TOKEN or log in with `hf auth login`"


@dataclass(frozen=True)
class RepoFile:
    """One file of the listing, as the tree entry gives it."""

    path: str
    size: int
    blob_id: str  # git blob sha1 (the entry's "oid")
    sha256: str | None = None  # lfs.oid, None for a git file

    @property
    def is_lfs(self) -> bool:
        return self.sha256 is not None

    @property
    def etag(self) -> str:
        """What the Hub's ETag is, and huggingface_hub writes into ``.metadata``."""
        return self.sha256 if self.sha256 is not None else self.blob_id


@dataclass(frozen=True)
class RepoListing:
    """A repo's files at one commit (sorted by path), after include/exclude."""

    endpoint: str
    uri: HfUri
    commit: str
    files: tuple[RepoFile, ...]

    def resolve_url(self, file: RepoFile | str) -> str:
        """The download URL of ``file`` pinned to the listing's commit."""
        path = file.path if isinstance(file, RepoFile) else file
        return resolve_url(self.endpoint, self.uri.repo_type, self.uri.repo_id, self.commit, path)

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


def selected(path: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """huggingface_hub's filter_repo_objects on one repo path (fnmatchcase, ``*`` crossing
    ``/``, a pattern ending in ``/`` a whole folder), except that no include means all."""
    path = path.replace("\\", "/")
    if include and not any(fnmatchcase(path, _pattern(p)) for p in include):
        return False
    return not any(fnmatchcase(path, _pattern(p)) for p in exclude)


def _pattern(pattern: str) -> str:
    pattern = pattern.replace("\\", "/")
    return pattern + "*" if pattern.endswith("/") else pattern


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    if port is None:
        port = {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _same_origin(url: str, origin: tuple[str, str, int | None]) -> bool:
    """Whether ``url`` is on ``origin``, or its upgrade from http to https on the default
    ports (as http/credentials.py and httpx allow: the channel only gets safer)."""
    there = _origin(url)
    if there == origin:
        return True
    upgrade = origin[0] == "http" and origin[2] == 80 and there[0] == "https" and there[2] == 443
    return upgrade and there[1] == origin[1]


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ssl_context(verify: bool | str) -> ssl.SSLContext:
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if verify is True:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=verify)
    except (OSError, ssl.SSLError) as exc:
        raise HubError(f"cannot read the CA bundle {verify}: {exc}") from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hand every 3xx back: redirects are followed by :meth:`_Session._follow`, hop by hop."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: Message
    body: bytes
    url: str

    @property
    def code(self) -> str | None:
        return self.headers.get("X-Error-Code")

    def hub_message(self) -> str | None:
        """The Hub's own words: ``X-Error-Message``, else a JSON body's ``error``."""
        message = self.headers.get("X-Error-Message")
        if not message:
            try:
                data = json.loads(self.body)
            except ValueError:
                return None
            error = data.get("error") if isinstance(data, dict) else None
            message = error if isinstance(error, str) else None
        return _one_line(message) if message else None


class _Unreachable(Exception):
    """No answer at all: ``transient`` ones (refused, reset, timed out) are retried."""

    def __init__(self, reason: str, transient: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient


def _unreachable(exc: BaseException) -> _Unreachable:
    reason: object = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, str):  # urllib's own refusals: no host, unknown scheme
        return _Unreachable(_one_line(reason), False)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return _Unreachable(f"TLS certificate not trusted ({reason.verify_message})", False)
    if isinstance(reason, socket.gaierror):
        # a name that does not exist stays so; a resolver that failed may not
        transient = reason.errno == socket.EAI_AGAIN
        return _Unreachable(f"name not resolved ({reason.strerror})", transient)
    if isinstance(reason, http.client.InvalidURL):
        return _Unreachable(_one_line(str(reason)), False)
    if isinstance(reason, OSError) and reason.strerror:
        return _Unreachable(reason.strerror, reason.errno != errno.EACCES)
    return _Unreachable(_one_line(str(reason) or type(reason).__name__), True)


class _Session:
    """The HTTP side of one listing: headers per origin, redirects, retries, errors."""

    def __init__(
        self,
        uri: HfUri,
        endpoint: str,
        token: HubToken | None,
        *,
        verify: bool | str,
        timeout: float,
        user_agent: str,
        sleep: Callable[[float], None],
        max_retries: int,
        max_wait: float,
        trust_env: bool,
    ) -> None:
        self.uri = uri
        self.endpoint = endpoint
        self.token = token
        self.origin = _origin(endpoint)
        self.timeout = timeout
        self.user_agent = user_agent
        self.sleep = sleep
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.waited = 0.0
        handlers: list[urllib.request.BaseHandler] = [
            _NoRedirects(),
            urllib.request.HTTPSHandler(context=_ssl_context(verify)),
        ]
        if not trust_env:
            handlers.append(urllib.request.ProxyHandler({}))
        self.opener = urllib.request.build_opener(*handlers)

    # -- errors ------------------------------------------------------------------------
    @property
    def repo_page(self) -> str:
        prefix = "" if self.uri.repo_type == "model" else f"{self.uri.repo_type}s/"
        return f"{self.endpoint}/{prefix}{self.uri.repo_id}"

    def error(self, text: str) -> HubError:
        """A HubError about the URI; the token scrubbed, should any text have echoed it."""
        message = f"{self.uri}: {text}"
        if self.token is not None:
            message = message.replace(self.token.value, "***")
        return HubError(message)

    def answer_error(self, answer: _Answer, what: str, tries: int = 1) -> HubError:
        """What an error answer means, in one line."""
        status, code = answer.status, answer.code
        said = answer.hub_message()
        hub = f" [Hub: {said}]" if said else ""
        token = self.token
        named = f" ({token.source})" if token is not None and token.source else ""
        if code == "GatedRepo":
            if token is None:
                return self.error(
                    f"the repo is gated: {_LOGIN}, with an account granted access{hub}"
                )
            return self.error(
                f"the repo is gated and the token{named} is not granted access: ask "
                f"for access at {self.repo_page}{hub}"
            )
        if code == "RepoNotFound":
            if token is None:
                return self.error(
                    f"repo not found, or private (if it is yours or shared with you, {_LOGIN}){hub}"
                )
            return self.error(f"repo not found, or private and the token{named} cannot see it{hub}")
        if code == "RevisionNotFound":
            revision = self.uri.revision or DEFAULT_REVISION
            return self.error(f"revision {revision!r} not found in the repo{hub}")
        if code == "EntryNotFound":
            revision = self.uri.revision or DEFAULT_REVISION
            return self.error(f"no file or folder {self.uri.path!r} at revision {revision!r}{hub}")
        if status == 401:
            if token is not None:
                return self.error(
                    f"the Hub refused the token{named}: invalid credentials; check "
                    f"it, or log in again with `hf auth login`{hub}"
                )
            return self.error(f"{self.endpoint} asks for a token (HTTP 401): {_LOGIN}{hub}")
        if status == 429:
            return self.error(
                f"rate limited by {self.endpoint} (HTTP 429, {tries} tries): retry later; a "
                f"token has a larger quota than anonymous calls{hub}"
            )
        after = f" after {tries} tries" if tries > 1 else ""
        return self.error(f"{self.endpoint} answered HTTP {status} to the {what}{after}{hub}")

    # -- one request -------------------------------------------------------------------
    def headers_for(self, url: str) -> dict[str, str]:
        headers = {"User-Agent": self.user_agent, "Accept": "application/json"}
        # the token only to the endpoint's own origin, never a CDN's or another host's
        if self.token is not None and _same_origin(url, self.origin):
            headers["Authorization"] = f"Bearer {self.token.value}"
        return headers

    def send(self, method: str, url: str, data: bytes | None) -> _Answer:
        """One HTTP exchange, no redirect followed; _Unreachable if there is no answer."""
        headers = self.headers_for(url)
        if data is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return _Answer(response.status, response.headers, self.read(response), url)
        except urllib.error.HTTPError as err:
            try:
                body = self.read(err)
            except (OSError, http.client.HTTPException):
                body = b""
            finally:
                err.close()
            return _Answer(err.code, err.headers, body, url)
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise _unreachable(exc) from None
        except ValueError as exc:  # a URL or header urllib refuses to send
            raise _Unreachable(_one_line(str(exc)), False) from None

    def read(self, response: Any) -> bytes:
        body: bytes = response.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            raise self.error(f"{self.endpoint} answered more than {MAX_BODY} bytes")
        return body

    def follow(self, method: str, url: str, data: bytes | None) -> _Answer:
        """One request and its redirects, each hop's headers chosen for its own origin."""
        for _ in range(MAX_REDIRECTS + 1):
            answer = self.send(method, url, data)
            location = answer.headers.get("Location")
            if answer.status not in _REDIRECTS or not location:
                return answer
            url = urljoin(url, location.strip())
            if urlsplit(url).scheme not in ("http", "https"):
                raise self.error(f"{self.endpoint} redirected to a non-HTTP URL")
            if answer.status == 303 or (answer.status in (301, 302) and method == "POST"):
                method, data = "GET", None
        raise self.error(f"more than {MAX_REDIRECTS} redirects from {self.endpoint}")

    def request(self, method: str, url: str, what: str, data: bytes | None = None) -> _Answer:
        """``follow`` retried on 408, 429, 5xx and lost connections; the last answer else."""
        for attempt in range(self.max_retries + 1):
            try:
                answer = self.follow(method, url, data)
            except _Unreachable as exc:
                if not exc.transient or attempt == self.max_retries:
                    raise self.error(f"cannot reach {self.endpoint}: {exc.reason}") from None
                delay = _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                why = exc.reason
            else:
                if answer.status not in RETRY_STATUSES:
                    return answer
                if attempt == self.max_retries:
                    raise self.answer_error(answer, what, attempt + 1)
                asked = wait_asked(_rate_headers(answer.headers))
                delay = asked if asked is not None else _BACKOFF[min(attempt, len(_BACKOFF) - 1)]
                why = f"HTTP {answer.status}"
            if self.waited + delay > self.max_wait:
                raise self.error(
                    f"{self.endpoint} still failing ({why}); waiting {delay:.0f} s more would "
                    f"pass the {self.max_wait:.0f} s this listing may wait in all: retry later"
                )
            log.warning("%s: %s on the %s, retrying in %.0f s", self.uri, why, what, delay)
            self.sleep(delay)
            self.waited += delay
        raise AssertionError("unreachable")  # the loop returns or raises

    def json(self, answer: _Answer, what: str) -> Any:
        try:
            return json.loads(answer.body)
        except ValueError:
            raise self.error(
                f"the {what} answer is not JSON: is {self.endpoint} a Hugging Face Hub?"
            ) from None


def _rate_headers(headers: Message) -> dict[str, str]:
    """The headers :func:`wait_asked` reads, out of a case-insensitive Message."""
    return {
        name: value
        for name in ("Retry-After", "RateLimit")
        if (value := headers.get(name)) is not None
    }


def _next_link(headers: Message, base: str) -> str | None:
    """The ``rel="next"`` URL of the ``Link`` headers, as given (joined if relative)."""
    for value in headers.get_all("Link") or ():
        for match in _LINK.finditer(str(value)):
            rel = _REL.search(match.group(2))
            if rel is not None and "next" in rel.group(1).lower().split():
                return urljoin(base, str(match.group(1)).strip())
    return None


def _file(session: _Session, entry: Any) -> RepoFile | None:
    """The RepoFile of a tree entry, None for a folder; HubError if it is malformed."""
    if not isinstance(entry, dict):
        raise session.error(f"a tree entry is not an object: {_one_line(repr(entry), 80)}")
    if entry.get("type") != "file":
        return None
    path, size, oid, lfs = entry.get("path"), entry.get("size"), entry.get("oid"), entry.get("lfs")
    sha256 = lfs.get("oid") if isinstance(lfs, dict) else None
    if (
        not isinstance(path, str)
        or not path
        or not isinstance(size, int)
        or isinstance(size, bool)
        or size < 0
        or not isinstance(oid, str)
        or _HEX40.fullmatch(oid) is None
        or (lfs is not None and (not isinstance(sha256, str) or _HEX64.fullmatch(sha256) is None))
    ):
        raise session.error(f"a malformed tree entry: {_one_line(repr(entry), 200)}")
    return RepoFile(path, size, oid, sha256)


def _resolve_commit(session: _Session) -> str:
    uri = session.uri
    if is_commit(uri.revision):
        assert uri.revision is not None
        return uri.revision
    revision = uri.revision or DEFAULT_REVISION
    url = revision_url(session.endpoint, uri.repo_type, uri.repo_id, revision)
    answer = session.request("GET", url, "revision request")
    if answer.status != 200:
        raise session.answer_error(answer, "revision request")
    data = session.json(answer, "revision")
    sha = data.get("sha") if isinstance(data, dict) else None
    if not isinstance(sha, str) or _HEX40.fullmatch(sha) is None:
        raise session.error(f"the revision answer of {session.endpoint} has no commit sha")
    return sha


def _single_file(session: _Session, commit: str, not_found: _Answer) -> list[Any]:
    """The entry of the file the URI's path names (the tree said it is no folder)."""
    uri = session.uri
    assert uri.path is not None
    url = paths_info_url(session.endpoint, uri.repo_type, uri.repo_id, commit)
    form = urlencode([("paths", uri.path), ("expand", "false")]).encode("ascii")
    answer = session.request("POST", url, "paths-info request", form)
    if answer.status != 200:
        raise session.answer_error(answer, "paths-info request")
    entries = session.json(answer, "paths-info")
    if not isinstance(entries, list):
        raise session.error(f"the paths-info answer of {session.endpoint} is not a list")
    found = [e for e in entries if isinstance(e, dict) and e.get("path") == uri.path]
    if not any(e.get("type") == "file" for e in found):
        raise session.answer_error(not_found, "tree request")
    return found


def _entries(
    session: _Session, commit: str, on_page: Callable[[int, int], None] | None
) -> list[Any]:
    """Every entry of the tree at ``commit`` (under the URI's path), all pages."""
    uri = session.uri
    url: str | None = tree_url(session.endpoint, uri.repo_type, uri.repo_id, commit, uri.path)
    entries: list[Any] = []
    seen: set[str] = set()
    pages = 0
    while url is not None:
        if url in seen:
            raise session.error(f"the tree pages of {session.endpoint} loop back to {url}")
        seen.add(url)
        answer = session.request("GET", url, "tree request")
        if answer.status != 200:
            # the URI's path may be a file: the tree of a file is no tree
            if (
                pages == 0
                and uri.path
                and answer.status in (400, 404)
                and answer.code in (None, "EntryNotFound")
            ):
                return _single_file(session, commit, answer)
            raise session.answer_error(answer, "tree request")
        page = session.json(answer, "tree")
        if not isinstance(page, list):
            raise session.error(f"a tree page of {session.endpoint} is not a list")
        entries.extend(page)
        pages += 1
        if on_page is not None:
            on_page(pages, len(entries))
        url = _next_link(answer.headers, answer.url)
        if url is not None and urlsplit(url).scheme not in ("http", "https"):
            raise session.error(f"the next tree page is not an HTTP URL: {_one_line(url, 120)}")
    return entries


def list_repo(
    uri: HfUri,
    *,
    endpoint: str,
    token: str | HubToken | None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    verify: bool | str = True,
    timeout: float = 30.0,
    user_agent: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_retries: int = MAX_RETRIES,
    max_wait: float = MAX_WAIT,
    trust_env: bool = True,
    on_page: Callable[[int, int], None] | None = None,
) -> RepoListing:
    """Resolve ``uri``'s revision to a commit and list its files there, filtered by the
    include/exclude patterns (on the full repo path); HubError if the Hub says no.

    ``token``: a :class:`HubToken` (messages then name where it came from) or the bare
    token. ``verify``: True, a CA bundle's path, or False. ``trust_env``: take proxies from
    the environment. ``on_page(pages, entries)`` after each tree page (a big repo has
    hundreds).
    """
    endpoint = endpoint.rstrip("/")
    if isinstance(token, str):
        token = HubToken(token, "")
    if token is not None and not (token.value.isascii() and token.value.isprintable()):
        raise HubError(f"{uri}: the token holds characters an HTTP header cannot carry")
    session = _Session(
        uri,
        endpoint,
        token,
        verify=verify,
        timeout=timeout,
        user_agent=user_agent or default_user_agent(None),
        sleep=sleep,
        max_retries=max_retries,
        max_wait=max_wait,
        trust_env=trust_env,
    )
    commit = _resolve_commit(session)
    files = _files(session, _entries(session, commit, on_page))
    kept = tuple(f for f in files if selected(f.path, include, exclude))
    log.info(
        "%s: commit %s, %d files (%d listed before include/exclude)",
        uri,
        commit,
        len(kept),
        len(files),
    )
    return RepoListing(endpoint, uri, commit, kept)


def _files(session: _Session, entries: Iterable[Any]) -> list[RepoFile]:
    """The files among ``entries``, sorted by path (the Hub does not promise an order)."""
    by_path: dict[str, RepoFile] = {}
    for entry in entries:
        f = _file(session, entry)
        if f is None:
            continue
        known = by_path.setdefault(f.path, f)
        if known != f:
            raise session.error(f"the tree lists {f.path!r} twice, differently")
    return sorted(by_path.values(), key=lambda f: f.path)
