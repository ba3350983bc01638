"""The fake Hub's repositories: files, revisions, their hashes, and a JSON spec of them.

A test defines a :class:`HubRepo`: its type and ``ns/name``, one dict ``path -> content`` per
revision (a branch such as ``main``, a ref such as ``refs/convert/parquet``), which files are
LFS (named in ``lfs``, or at least ``lfs_threshold`` bytes long), and who may read it (``gated``
or ``private`` with the valid ``tokens``).  Every revision gets a deterministic 40-hex commit sha,
by which it can be addressed too.  Content is ``bytes``, ``str`` (UTF-8) or
:class:`Generated` (seeded random bytes, kept small in the JSON spec a subprocess reads).

Per file: ``size``, ``git_sha1`` (the git blob sha1 of the bytes, ``sha1(b"blob N\\0" + data)``),
and for an LFS file ``sha256`` and the LFS pointer; ``oid`` is what the Hub's tree calls
``oid``: the git blob sha1 of what git stores, the bytes or, for LFS, the pointer.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

#: repo types as in ``/api/{type}s/``; models have no prefix in resolve URLs
REPO_TYPES = ("model", "dataset", "space")
#: default: files of at least this many bytes are LFS files
LFS_THRESHOLD = 1024


@dataclass(frozen=True)
class Generated:
    """``size`` pseudo-random bytes from ``seed``: large content with a small spec."""

    size: int
    seed: int = 0

    def data(self) -> bytes:
        return random.Random(f"fake-hub:{self.seed}").randbytes(self.size)


Content = bytes | str | Generated


def content_bytes(content: Content) -> bytes:
    if isinstance(content, bytes):
        return content
    if isinstance(content, str):
        return content.encode("utf-8")
    if isinstance(content, Generated):
        return content.data()
    raise TypeError(f"file content must be bytes, str or Generated, not {type(content).__name__}")


def git_blob_sha1(data: bytes) -> str:
    """Git's blob id of ``data``: ``sha1(b"blob <len>\\0" + data)``."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The pointer file git stores in place of an LFS file."""
    text = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    return text.encode()


@dataclass(frozen=True, eq=False)
class HubFile:
    """One file of one revision."""

    path: str
    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @cached_property
    def git_sha1(self) -> str:
        """Git blob sha1 of the bytes (what a check of a git file compares)."""
        return git_blob_sha1(self.data)

    @cached_property
    def sha256(self) -> str | None:
        """sha256 of the bytes, for LFS files only."""
        return hashlib.sha256(self.data).hexdigest() if self.lfs else None

    @cached_property
    def pointer(self) -> bytes | None:
        return lfs_pointer(self.sha256, self.size) if self.sha256 is not None else None

    @cached_property
    def oid(self) -> str:
        """The tree's ``oid``: blob sha1 of the bytes, or of the pointer for an LFS file."""
        return git_blob_sha1(self.pointer) if self.pointer is not None else self.git_sha1

    @property
    def etag(self) -> str:
        """What the Hub's ETag / X-Linked-Etag names: sha256 for LFS, else the git sha1."""
        return self.sha256 if self.sha256 is not None else self.git_sha1

    def entry(self) -> dict[str, Any]:
        """The tree / paths-info entry, as the Hub spells it."""
        out: dict[str, Any] = {"type": "file", "oid": self.oid, "size": self.size}
        out["path"] = self.path
        if self.sha256 is not None and self.pointer is not None:
            out["lfs"] = {"oid": self.sha256, "size": self.size, "pointerSize": len(self.pointer)}
        return out

    def sibling(self, blobs: bool) -> dict[str, Any]:
        """The ``siblings`` item of the revision info (spelled differently from the tree)."""
        out: dict[str, Any] = {"rfilename": self.path}
        if blobs:
            out["size"] = self.size
            out["blobId"] = self.oid
            if self.sha256 is not None and self.pointer is not None:
                out["lfs"] = {
                    "size": self.size,
                    "sha256": self.sha256,
                    "pointerSize": len(self.pointer),
                }
        return out


@dataclass(eq=False)
class HubRevision:
    """The files of one revision (``name`` a branch or ref) at commit ``sha``."""

    name: str
    sha: str
    files: dict[str, HubFile]

    @cached_property
    def folders(self) -> dict[str, str]:
        """Every folder (``""`` the root) -> a deterministic tree oid."""
        children: dict[str, list[str]] = {"": []}
        for path, f in self.files.items():
            parts = path.split("/")
            for depth in range(1, len(parts)):
                children.setdefault("/".join(parts[:depth]), [])
            children["/".join(parts[:-1])].append(f.oid)
        for folder in children:
            if folder:
                children["/".join(folder.split("/")[:-1])].append(folder)
        return {
            folder: hashlib.sha1(
                ("tree\0" + folder + "\0" + ",".join(sorted(items))).encode()
            ).hexdigest()
            for folder, items in children.items()
        }

    def tree(self, folder: str, recursive: bool) -> list[dict[str, Any]] | None:
        """Entries under ``folder`` (sorted by path), or None if it is no folder."""
        folder = folder.strip("/")
        if folder not in self.folders:
            return None
        prefix = folder + "/" if folder else ""
        entries: list[tuple[str, dict[str, Any]]] = []
        for name, oid in self.folders.items():
            if name and name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :]):
                entries.append((name, {"type": "directory", "oid": oid, "path": name}))
        for path, f in self.files.items():
            if path.startswith(prefix) and (recursive or "/" not in path[len(prefix) :]):
                entries.append((path, f.entry()))
        return [entry for _, entry in sorted(entries, key=lambda item: item[0])]

    def entry(self, path: str) -> dict[str, Any] | None:
        """paths-info's entry of a file or folder, or None."""
        path = path.strip("/")
        if path in self.files:
            return self.files[path].entry()
        if path and path in self.folders:
            return {"type": "directory", "oid": self.folders[path], "path": path}
        return None


def _commit_sha(repo_type: str, repo_id: str, name: str, files: Iterable[HubFile]) -> str:
    digest = hashlib.sha1(f"commit\0{repo_type}\0{repo_id}\0{name}".encode())
    for f in files:
        digest.update(f"\0{f.path}\0{f.oid}".encode())
    return digest.hexdigest()


@dataclass(eq=False)
class HubRepo:
    """A repository of the fake Hub (see the module docstring)."""

    repo_id: str
    revisions: Mapping[str, Mapping[str, Content]]
    repo_type: str = "dataset"
    lfs: Collection[str] = ()
    lfs_threshold: int | None = LFS_THRESHOLD
    gated: bool = False
    private: bool = False
    tokens: Collection[str] = ()
    built: dict[str, HubRevision] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.repo_type not in REPO_TYPES:
            raise ValueError(f"repo_type must be one of {REPO_TYPES}, not {self.repo_type!r}")
        parts = self.repo_id.split("/")
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"repo_id must be 'namespace/name', not {self.repo_id!r}")
        if not self.revisions:
            raise ValueError("a repo needs at least one revision")
        self.tokens = frozenset(self.tokens)
        self.lfs = frozenset(self.lfs)
        self.built = {}
        for name, files in self.revisions.items():
            built = {}
            for path in sorted(files):
                data = content_bytes(files[path])
                is_lfs = path in self.lfs or (
                    self.lfs_threshold is not None and len(data) >= self.lfs_threshold
                )
                built[path] = HubFile(path, data, is_lfs)
            sha = _commit_sha(self.repo_type, self.repo_id, name, built.values())
            self.built[name] = HubRevision(name, sha, built)

    @property
    def key(self) -> tuple[str, str]:
        return (self.repo_type, self.repo_id)

    @property
    def prefix(self) -> str:
        """The resolve URL's prefix: ``""`` for models, ``"datasets/"``, ``"spaces/"``."""
        return "" if self.repo_type == "model" else f"{self.repo_type}s/"

    def revision(self, rev: str) -> HubRevision | None:
        """The revision named ``rev`` (branch, ref) or whose commit sha is ``rev``."""
        if rev in self.built:
            return self.built[rev]
        for revision in self.built.values():
            if revision.sha == rev:
                return revision
        return None

    def sha(self, rev: str = "main") -> str:
        revision = self.revision(rev)
        if revision is None:
            raise KeyError(rev)
        return revision.sha

    def file(self, path: str, rev: str = "main") -> HubFile:
        revision = self.revision(rev)
        if revision is None:
            raise KeyError(rev)
        return revision.files[path]

    def files(self, rev: str = "main") -> dict[str, HubFile]:
        revision = self.revision(rev)
        if revision is None:
            raise KeyError(rev)
        return dict(revision.files)

    def may_read(self, token: str | None) -> bool:
        return not (self.gated or self.private) or token in self.tokens

    # -- the JSON spec a subprocess reads ---------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "repo_type": self.repo_type,
            "lfs": sorted(self.lfs),
            "lfs_threshold": self.lfs_threshold,
            "gated": self.gated,
            "private": self.private,
            "tokens": sorted(self.tokens),
            "revisions": {
                name: {path: _content_spec(c) for path, c in files.items()}
                for name, files in self.revisions.items()
            },
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> HubRepo:
        return cls(
            repo_id=spec["repo_id"],
            repo_type=spec.get("repo_type", "dataset"),
            lfs=spec.get("lfs", ()),
            lfs_threshold=spec.get("lfs_threshold", LFS_THRESHOLD),
            gated=spec.get("gated", False),
            private=spec.get("private", False),
            tokens=spec.get("tokens", ()),
            revisions={
                name: {path: _content_from_spec(c) for path, c in files.items()}
                for name, files in spec["revisions"].items()
            },
        )


def _content_spec(content: Content) -> dict[str, Any]:
    if isinstance(content, Generated):
        return {"size": content.size, "seed": content.seed}
    return {"b64": base64.b64encode(content_bytes(content)).decode("ascii")}


def _content_from_spec(spec: Mapping[str, Any]) -> Content:
    if "b64" in spec:
        return base64.b64decode(spec["b64"])
    return Generated(int(spec["size"]), int(spec.get("seed", 0)))


# ---------------------------------------------------------------- sample repos

#: the token the sample gated and private repos accept
SAMPLE_TOKEN = "hf_right_token_0123456789abcdef"
#: paths to round-trip: space, '#', '%', '?', non-ASCII, nested folders; LFS and git files
SAMPLE_FILES: dict[str, Any] = {
    "README.md": "# fake dataset\n",
    ".gitattributes": "*.parquet filter=lfs diff=lfs merge=lfs -text\n",
    "data/train-00000-of-00002.parquet": Generated(5000, 1),
    "data/train-00001-of-00002.parquet": Generated(4096, 2),
    "data/dir with space/a#b%c.txt": b"hash percent space",
    "data/dir with space/\u00e9t\u00e9 \u65e5\u672c.bin": Generated(3000, 3),
    "nested/x/y/z.json": b'{"a": 1}\n',
    "q?x.txt": b"question mark",
    "empty.txt": b"",
}
PARQUET_REF = "refs/convert/parquet"
SAMPLE_PARQUET_FILES: dict[str, Any] = {
    "default/train/0000.parquet": Generated(2048, 4),
    "default/train/0001.parquet": b"small git file",
}


def sample_repos() -> list[HubRepo]:
    """A public dataset (main and refs/convert/parquet), a gated and a private one, a model."""
    return [
        HubRepo("ns/public", {"main": SAMPLE_FILES, PARQUET_REF: SAMPLE_PARQUET_FILES}),
        HubRepo("ns/gated", {"main": SAMPLE_FILES}, gated=True, tokens=[SAMPLE_TOKEN]),
        HubRepo("ns/private", {"main": {"a.txt": b"private"}}, private=True, tokens=[SAMPLE_TOKEN]),
        HubRepo(
            "org/model",
            {"main": {"config.json": b"{}", "model.safetensors": Generated(1500, 5)}},
            repo_type="model",
        ),
    ]
