"""``hf://`` URIs: parsing, the canonical text, the Hub's URLs, and which repo paths may be written.

The grammar is huggingface_hub's (``utils/_hf_uris.py``), for repos only::

    hf://[<TYPE>/]<NAMESPACE>/<NAME>[@<REVISION>][/<PATH>]

``TYPE`` is plural (``models/``, ``datasets/``, ``spaces/``, ``kernels/``; none: a model).
``refs/pr/N`` and ``refs/convert/<name>`` are taken whole as the revision; any other ``/`` in a
revision is written ``%2F`` (the revision is unquoted after parsing); an ``@`` after the repo id
is an ordinary character of the path.

Pure: nothing here reads the environment or the network.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from fetchshard.errors import InputError
from fetchshard.hub.localdir import CACHE
from fetchshard.output.filenames import check_relative_path
from fetchshard.runfolder.layout import MIRROR_STATE

SCHEME = "hf://"
REPO_TYPES = ("model", "dataset", "space", "kernel")
DEFAULT_REVISION = "main"
_PREFIX_TYPES = {f"{t}s": t for t in REPO_TYPES}
_GRAMMAR = "hf://[TYPE/]NAMESPACE/NAME[@REVISION][/PATH]"
# huggingface_hub's special refs, which hold "/" and are matched before the path is split off
_SPECIAL_REF = re.compile(r"refs/(?:convert/[\w.-]+|pr/\d+)")
# huggingface_hub's validate_repo_id, for one part: 1-96 of [\w.-], a word character at each end
_NAME = re.compile(r"\w(?:[\w.-]{0,94}\w)?")
_COMMIT = re.compile(r"[0-9a-f]{40}")
# Folders of the local mirror that are bookkeeping, not the repo's files: huggingface_hub's
# metadata (.cache/huggingface/) and fetchshard's own (.fetchshard/).
BOOKKEEPING_FOLDERS = (str(CACHE), MIRROR_STATE)


@dataclass(frozen=True)
class HfUri:
    """A parsed ``hf://`` URI: which repo, at which revision, which folder or file in it."""

    repo_type: str  # "model" | "dataset" | "space" | "kernel"
    repo_id: str  # "namespace/name"
    revision: str | None = None  # None: the default branch ("main")
    path: str | None = None  # a sub-folder or file inside the repo, no leading/trailing "/"

    def to_uri(self) -> str:
        """The canonical text: the type always spelled, the revision quoted where it must be."""
        text = f"{SCHEME}{self.repo_type}s/{self.repo_id}"
        if self.revision is not None:
            revision = self.revision.replace("%", "%25")
            if "/" in revision and _SPECIAL_REF.fullmatch(revision) is None:
                revision = revision.replace("/", "%2F")
            text += f"@{revision}"
        if self.path:
            text += f"/{self.path}"
        return text

    @property
    def describe(self) -> str:
        """The canonical text, for messages."""
        return self.to_uri()

    def __str__(self) -> str:
        return self.to_uri()

    @property
    def api_type(self) -> str:
        """The type as the API's path spells it: ``models``, ``datasets``..."""
        return f"{self.repo_type}s"

    @property
    def pinned(self) -> bool:
        """Whether the revision is already a commit (no revision call needed)."""
        return is_commit(self.revision)


def is_hf_uri(text: str) -> bool:
    """Whether ``text`` is meant as an ``hf://`` URI (valid or not)."""
    return text.startswith(SCHEME)


def is_commit(revision: str | None) -> bool:
    """Whether ``revision`` is a full commit sha (40 lowercase hex digits, as huggingface_hub)."""
    return revision is not None and _COMMIT.fullmatch(revision) is not None


def _bad(text: str, what: str) -> InputError:
    return InputError(f"bad hf:// URI {text!r}: {what} (expected {_GRAMMAR})")


def parse_hf_uri(text: str) -> HfUri:
    """Parse ``hf://[TYPE/]NAMESPACE/NAME[@REVISION][/PATH]``; InputError if it is not one."""
    if not is_hf_uri(text):
        raise _bad(text, "it does not start with hf://")
    body = text[len(SCHEME) :]
    if not body:
        raise _bad(text, "nothing after hf://")
    repo_type, location = _split_type(text, body)
    location = location.strip("/")
    if not location:
        raise _bad(text, "no repo id")
    at = location.find("@")
    revision: str | None = None
    # An "@" is the revision's only right after NAMESPACE/NAME; deeper, it is part of a name.
    if at == -1 or location[:at].count("/") > 1:
        parts = location.split("/", 2)
        if len(parts) < 2:
            raise _bad(text, f"the repo id must be NAMESPACE/NAME, not {location!r}")
        repo_id = f"{parts[0]}/{parts[1]}"
        path = parts[2] if len(parts) > 2 else ""
    else:
        repo_id, rest = location[:at], location[at + 1 :]
        if repo_id.count("/") != 1:
            raise _bad(text, f"the repo id must be NAMESPACE/NAME, not {repo_id!r}")
        special = _SPECIAL_REF.match(rest)
        if special is not None and rest[special.end() : special.end() + 1] in ("", "/"):
            revision, path = special.group(), rest[special.end() + 1 :]
        elif rest.startswith(("refs/pr/", "refs/convert/")):
            raise _bad(text, "a refs/ revision must be refs/pr/<N> or refs/convert/<name>")
        else:
            raw_revision, _, path = rest.partition("/")
            revision = unquote(raw_revision)
        if not revision:
            raise _bad(text, "empty revision after '@'")
    _check_repo_id(text, repo_id)
    if path:
        segments = path.split("/")
        if any(s in ("", ".", "..") for s in segments):
            raise _bad(text, f"the path {path!r} has an empty, '.' or '..' segment")
    return HfUri(repo_type, repo_id, revision, path or None)


def _split_type(text: str, body: str) -> tuple[str, str]:
    """The repo type the body's first segment names (none: a model) and the rest."""
    first, slash, rest = body.partition("/")
    if first == "buckets":
        raise _bad(text, "a bucket is not a repo: only models, datasets, spaces and kernels")
    if first in _PREFIX_TYPES:
        if not slash or not rest.strip("/"):
            raise _bad(text, f"no repo id after {first}/")
        return _PREFIX_TYPES[first], rest
    if first in REPO_TYPES or first == "bucket":
        # as huggingface_hub: "dataset/..." is a mistake for "datasets/...", not a namespace
        raise _bad(text, f"the type prefix is plural: {first}s/, not {first}/")
    return "model", body


def _check_repo_id(text: str, repo_id: str) -> None:
    """huggingface_hub's validate_repo_id, for NAMESPACE/NAME."""
    if not all(_NAME.fullmatch(part) for part in repo_id.split("/")):
        raise _bad(
            text,
            f"bad repo id {repo_id!r}: letters, digits, '-', '_' and '.' only, "
            "at most 96 each side, not starting or ending with '-' or '.'",
        )
    if "--" in repo_id or ".." in repo_id:
        raise _bad(text, f"bad repo id {repo_id!r}: '--' and '..' are not allowed")
    if repo_id.endswith(".git"):
        raise _bad(text, f"bad repo id {repo_id!r}: it cannot end in '.git'")


# ---------------------------------------------------------------------------- URLs
# Built by concatenation: an endpoint may carry a path (http://host:8080/hf).


def _api_base(endpoint: str, repo_type: str, repo_id: str) -> str:
    return f"{endpoint.rstrip('/')}/api/{repo_type}s/{repo_id}"


def revision_url(endpoint: str, repo_type: str, repo_id: str, revision: str) -> str:
    """The API URL that answers a revision's commit (``sha``)."""
    return f"{_api_base(endpoint, repo_type, repo_id)}/revision/{quote(revision, safe='')}"


def tree_url(
    endpoint: str, repo_type: str, repo_id: str, revision: str, path: str | None = None
) -> str:
    """The first page of the recursive tree at ``revision``, under ``path`` if given."""
    url = f"{_api_base(endpoint, repo_type, repo_id)}/tree/{quote(revision, safe='')}"
    if path:
        url += f"/{quote(path, safe='')}"
    return url + "?recursive=true&expand=false"


def paths_info_url(endpoint: str, repo_type: str, repo_id: str, revision: str) -> str:
    """The API URL a form of ``paths`` is POSTed to, for those paths' entries."""
    return f"{_api_base(endpoint, repo_type, repo_id)}/paths-info/{quote(revision, safe='')}"


def resolve_url(endpoint: str, repo_type: str, repo_id: str, commit: str, path: str) -> str:
    """A file's download URL, pinned to ``commit`` (models have no type prefix)."""
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    return (
        f"{endpoint.rstrip('/')}/{prefix}{repo_id}/resolve/{quote(commit, safe='')}/{quote(path)}"
    )


# ---------------------------------------------------------------------------- local paths


def check_repo_path(path: str) -> str | None:
    """Why ``path`` (a file's path in the repo) may not be written in a mirror, or None."""
    return check_relative_path(path, BOOKKEEPING_FOLDERS)
