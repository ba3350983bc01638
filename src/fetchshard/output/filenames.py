"""Where a body's file goes under ``files/``: a pure function of its URL, safe by construction.

A URL becomes ``<host>[_<port>]/<path segments>/<name>``, as ``wget -x`` would name it, when
every part of it is *plain*: 1 to 200 bytes of letters, digits and ``._~!$&'()+,;=@%-``, not
starting with a dot. Anything else is made plain and marked, so two URLs never share a name:

- a segment with other bytes (spaces, control characters, ``\\``, ``:``, non-ASCII), ``.``,
  ``..``, a leading dot, an empty segment (``a//b``) or one over 200 bytes has the other bytes
  replaced by ``_``, is cut to 100 bytes and gets ``~`` and 12 hex digits of its own hash;
- a URL with a query, or whose name had to change, or that ends in ``/`` (named
  ``index.html``), gets ``~`` and 12 hex digits of the whole URL's hash before the name's
  extension: ``/a.jpg?s=1`` is ``a~3f2c9e1b0a4d.jpg``;
- a path over 1,000 bytes becomes ``<host>/.long/<hash of the URL>~<name>``.

No derived name starts with a dot, so ``.clash`` and ``.long`` are ours. The one collision a
pure function cannot see is a file where another URL needs a folder (``/a`` and ``/a/b``);
whichever is placed second goes to :func:`clash_path`, ``<host>/.clash/<hash>~<name>``, and
its row says so. Every path is relative, has no ``..`` and stays inside ``files/``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

import xxhash

_PLAIN = re.compile(r"[A-Za-z0-9._~!$&'()+,;=@%-]{1,200}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._~!$&'()+,;=@%-]")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}$")
_CUT = 100  # bytes kept of a segment that had to change
_MAX_PATH = 1000  # bytes; longer paths go under .long/
INDEX = "index.html"
CLASH_DIR = ".clash"
LONG_DIR = ".long"


def _digest(text: str, digits: int = 12) -> str:
    return xxhash.xxh3_64_hexdigest(text.encode("utf-8", "surrogatepass"))[:digits]


def _plain(segment: str) -> bool:
    return bool(_PLAIN.fullmatch(segment)) and not segment.startswith(".")


def _made_plain(segment: str) -> str:
    """``segment`` with its unsafe bytes replaced, cut, and marked with its hash."""
    cleaned = _UNSAFE.sub("_", segment).lstrip(".")[:_CUT] or "_"
    return f"{cleaned}~{_digest(segment)}"


def _marked(name: str, url: str) -> str:
    """``name`` with the URL's hash before its extension: unique to that URL."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".") or "_"
    ext_match = _EXTENSION.search(cleaned)
    ext = ext_match.group(0) if ext_match and ext_match.start() > 0 else ""
    stem = cleaned[: len(cleaned) - len(ext)][:_CUT]
    return f"{stem}~{_digest(url)}{ext}"


def host_folder(url: str) -> str:
    """The first component: the host, with ``_<port>`` when the URL names a port."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    folder = host if _plain(host) else _made_plain(host) if host else "_"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{folder}_{port}" if port is not None else folder


def file_path(url: str) -> PurePosixPath:
    """The body's file, relative to ``files/`` (see the module's rules)."""
    parts = urlsplit(url)
    segments = parts.path.split("/")[1:] if parts.path.startswith("/") else parts.path.split("/")
    *folders, name = segments or [""]
    marked = bool(parts.query)
    if not name:
        name, marked = INDEX, True
    elif not _plain(name):
        marked = True
    dirs = [s if _plain(s) else _made_plain(s) for s in folders]
    leaf = _marked(name, url) if marked else name
    path = PurePosixPath(host_folder(url), *dirs, leaf)
    if len(str(path).encode()) > _MAX_PATH:
        short = _marked(name[:_CUT], url) if marked else name[:_CUT]
        path = PurePosixPath(host_folder(url), LONG_DIR, f"{_digest(url, 16)}~{short}")
    return path


def clash_path(url: str, path: PurePosixPath) -> PurePosixPath:
    """Where the body goes when ``path`` is taken by a folder (or one of its folders by a
    file): under the host's ``.clash/``, named for the URL."""
    return PurePosixPath(path.parts[0], CLASH_DIR, f"{_digest(url, 16)}~{path.name}")


MAX_SEGMENT_BYTES = 255  # a file name on Linux file systems


def check_relative_path(path: str, reserved: tuple[str, ...] = ()) -> str | None:
    """Why ``path`` (a file's path the input gives, ``a/b.txt``) may not be written under
    the files folder, or None: huggingface_hub's checks of a repo path, and a few more. It
    must be relative under POSIX and Windows rules, without ``..`` (``\\`` counted as a
    separator, as on Windows), ``.`` or empty segments, each at most 255 bytes, and not
    under a ``reserved`` folder (compared without case: a case-insensitive disk)."""
    if not path:
        return "empty path"
    if "\0" in path:
        return "NUL in the path"
    if ".." in path.replace("\\", "/").split("/"):
        return "a '..' segment"
    for pure in (PurePosixPath(path), *(PureWindowsPath(part) for part in path.split("/"))):
        if pure.drive or pure.root:
            return "an absolute, drive or UNC path"
    segments = path.split("/")
    if any(s in ("", ".") for s in segments):
        return "an empty or '.' segment"
    for segment in segments:
        if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            return f"a name over {MAX_SEGMENT_BYTES} bytes"
    folded = path.replace("\\", "/").casefold()
    for folder in reserved:
        if folded == folder or folded.startswith(folder + "/"):
            return f"under {folder}/, the mirror's bookkeeping"
    return None
