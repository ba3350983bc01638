"""The clients measured against each other: how to run each one and how to count its output.

Every peer is counted from what it left behind (Parquet rows, files on disk, its own JSON
line), never from its exit code alone. Bytes are the corpus sizes of the URLs counted as ok,
i.e. what came over the wire, so MB/s compares alike even for a client that re-encodes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from urllist import UrlList

if TYPE_CHECKING:
    import pyarrow as pa

HERE = Path(__file__).resolve().parent

# Politeness limits that cannot bind on loopback: the point is the client's own cost.
FETCHSHARD_UNLIMITED = [
    "--per-host-rate",
    "1000000",
    "--set",
    "fetch.per_host_burst=1000",
    "--set",
    "fetch.per_host_concurrency=64",
    "--max-in-flight",
    "512",
]


@dataclass
class Counted:
    ok: int
    errors: int
    bytes: int  # corpus bytes of the ok URLs
    detail: dict[str, Any] = field(default_factory=dict)


def url_index(url: str) -> int:
    """k of ``...?u=k``: ties a downloaded item back to its URL and corpus file."""
    return int(parse_qs(urlsplit(url).query)["u"][0])


def count_by_index(urls: UrlList, ok_indices: set[int], detail: dict[str, Any]) -> Counted:
    return Counted(
        ok=len(ok_indices),
        errors=len(urls) - len(ok_indices),
        bytes=sum(urls.sizes[k] for k in ok_indices),
        detail=detail,
    )


@dataclass
class Peer:
    name: str
    description: str
    expected_rate: float  # URLs/s, a low guess: the run's timeout is 10x the expected time
    build: Callable[[UrlList, Path, Path], list[str]]  # (urls, out, work) -> argv
    count: Callable[[UrlList, Path, Path], Counted]  # (urls, out, stdout file) -> counts
    env: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None  # why it cannot run here, reported instead of figures
    version: str = ""
    stdout_to_file: bool = False
    source: dict[str, Any] | None = None  # fetchshard only: a pinned snapshot, if any

    def timeout(self, n: int) -> float:
        return max(300.0, 10.0 * n / self.expected_rate)


def _tool_version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


# --- fetchshard -------------------------------------------------------------------------


# The images stage as a peer runs it: img2dataset's default is a 256 px "border" resize.
IMAGE_FLAGS = {"": [], "resize": ["--resize", "256"], "verify": ["--images", "verify"]}


def _fetchshard_build(ranks: int, images: str = "") -> Callable[[UrlList, Path, Path], list[str]]:
    def build(urls: UrlList, out: Path, work: Path) -> list[str]:
        argv = [sys.executable, "-m", "fetchshard", "run", str(urls.path), "-o", str(out)]
        argv += [*FETCHSHARD_UNLIMITED, "--log-level", "warning", *IMAGE_FLAGS[images]]
        if ranks > 1:
            argv += ["--ranks", str(ranks)]
        return argv

    return build


def count_tables(urls: UrlList, tables: Iterable[pa.Table], parts: int) -> Counted:
    """fetchshard's rows (``url``, ``status``, ``error_kind``) from ``tables``, the ``parts``
    of one run wherever they are (a folder, a bucket): ok URLs, rows, duplicates, missing."""
    ok: set[int] = set()
    rows = 0
    kinds: Counter[str] = Counter()
    seen: Counter[int] = Counter()
    for table in tables:
        for url, status, kind in zip(
            table.column("url").to_pylist(),
            table.column("status").to_pylist(),
            table.column("error_kind").to_pylist(),
            strict=True,
        ):
            rows += 1
            k = url_index(url)
            seen[k] += 1
            if status == "ok":
                ok.add(k)
            else:
                kinds[str(kind)] += 1
    detail = {
        "parts": parts,
        "rows": rows,
        "duplicate_rows": sum(c - 1 for c in seen.values() if c > 1),
        "missing_rows": len(urls) - len(seen),
        "error_kinds": dict(kinds),
    }
    return count_by_index(urls, ok, detail)


def count_fetchshard(urls: UrlList, out: Path, _stdout: Path) -> Counted:
    import pyarrow.parquet as pq

    parts = sorted((out / "shards").glob("**/*.parquet"))
    columns = ["url", "status", "error_kind", "size"]
    tables = (pq.read_table(part, columns=columns) for part in parts)
    return count_tables(urls, tables, len(parts))


def fetchshard_source() -> dict[str, Any]:
    """Which fetchshard code ran: an editable install changes under a benchmark when someone
    edits src/, so each run records the commit and a hash of any uncommitted diff."""
    import hashlib

    import fetchshard

    src = Path(fetchshard.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
        diff = subprocess.run(
            ["git", "-C", str(src), "diff", "HEAD", "--", "."],
            capture_output=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {
        "commit": head or None,
        "uncommitted_diff_sha1": hashlib.sha1(diff).hexdigest()[:12] if diff else None,
    }


def snapshot_fetchshard(rev: str, work: Path) -> tuple[Path, str]:
    """Extract src/ of ``rev`` (git archive) once; its path goes first on PYTHONPATH, ahead of
    the editable install, so edits made to src/ during a benchmark do not change what runs."""
    import io
    import tarfile

    repo = HERE.parent
    sha = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--short=12", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.strip()
    dest = work / f"fetchshard-src-{sha}"
    if not (dest / "src" / "fetchshard" / "__init__.py").exists():
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", "--format=tar", sha, "src"],
            capture_output=True,
            timeout=120,
            check=True,
        ).stdout
        tmp = work / f"fetchshard-src-{sha}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4
                tar.extractall(tmp, filter="data")
            else:  # our own git archive: trusted
                tar.extractall(tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)
    return dest / "src", sha


def fetchshard_peer(ranks: int, snapshot: tuple[Path, str] | None = None, images: str = "") -> Peer:
    import fetchshard

    name = "fetchshard" if ranks == 1 else f"fetchshard-{ranks}"
    name += f"-{images}" if images else ""
    where = f"commit {snapshot[1]}" if snapshot else "the installed (live) source"
    stage = f", images: {' '.join(IMAGE_FLAGS[images])}" if images else ""
    peer = Peer(
        name=name,
        description=f"fetchshard {fetchshard.__version__} ({where}), {ranks} rank(s), "
        f"Parquet with bodies{stage}",
        expected_rate=200.0 if images else 500.0,
        build=_fetchshard_build(ranks, images),
        count=count_fetchshard,
        version=fetchshard.__version__,
    )
    if snapshot is not None:
        path = os.environ.get("PYTHONPATH")
        peer.env["PYTHONPATH"] = f"{snapshot[0]}{os.pathsep}{path}" if path else str(snapshot[0])
        peer.source = {"commit": snapshot[1], "snapshot": str(snapshot[0])}
    return peer


# --- bare aiohttp -----------------------------------------------------------------------


def count_bare(urls: UrlList, _out: Path, stdout: Path) -> Counted:
    lines = [ln for ln in stdout.read_text(errors="replace").splitlines() if ln.startswith("{")]
    if not lines:
        return Counted(0, len(urls), 0, {"error": "no JSON line on stdout"})
    result = json.loads(lines[-1])
    # The client reads every body: its own byte count is what came over the wire.
    return Counted(
        result["ok"],
        len(urls) - result["ok"],
        result["bytes"],
        {"error_kinds": result["error_kinds"], "client_seconds": result["seconds"]},
    )


def bare_peer(processes: int = 1) -> Peer:
    import aiohttp

    return Peer(
        name="bare" if processes == 1 else f"bare-{processes}",
        description=f"aiohttp {aiohttp.__version__} + uvloop, {processes} process(es) side by "
        "side, 512 workers each, bodies read and discarded",
        expected_rate=1000.0,
        build=lambda urls, out, work: [
            sys.executable,
            str(HERE / "bare_aiohttp.py"),
            str(urls.path),
            "--processes",
            str(processes),
        ],
        count=count_bare,
        version=aiohttp.__version__,
        stdout_to_file=True,
    )


# --- curl and aria2c: one file per URL --------------------------------------------------


def count_files(urls: UrlList, out: Path, _stdout: Path) -> Counted:
    ok: set[int] = set()
    wrong_size = 0
    for entry in os.scandir(out):
        stem, _, ext = entry.name.partition(".")
        if ext != "jpg" or not stem.isdigit():
            continue
        k = int(stem)
        if k < len(urls) and entry.stat().st_size == urls.sizes[k]:
            ok.add(k)
        else:
            wrong_size += 1
    return count_by_index(urls, ok, {"wrong_size_files": wrong_size})


def _curl_build(urls: UrlList, out: Path, work: Path) -> list[str]:
    config = work / f"curl-{len(urls)}.conf"
    with open(config, "w", encoding="utf-8") as fh:
        for k, url in enumerate(urls.urls):
            fh.write(f'url = "{url}"\noutput = "{out}/{k}.jpg"\n')
    return [
        "curl",
        "--parallel",
        "--parallel-max",
        "256",
        "-s",
        "-S",
        "--fail",
        "--config",
        str(config),
    ]


def _tool_peer(
    name: str,
    binary: str,
    description: str,
    rate: float,
    build: Callable[[UrlList, Path, Path], list[str]],
) -> Peer:
    """A command-line peer that writes one file per URL, if its binary is installed."""
    found = shutil.which(binary)
    return Peer(
        name=name,
        description=description,
        expected_rate=rate,
        build=build,
        count=count_files,
        unavailable=None if found else f"{binary} not installed",
        version=_tool_version([binary, "--version"]) if found else "",
    )


def curl_peer() -> Peer:
    return _tool_peer(
        "curl",
        "curl",
        "curl --parallel --parallel-max 256 -s -S --fail, one file per URL on disk",
        1000.0,
        _curl_build,
    )


def _aria2_build(urls: UrlList, out: Path, work: Path) -> list[str]:
    listing = work / f"aria2-{len(urls)}.txt"
    with open(listing, "w", encoding="utf-8") as fh:
        for k, url in enumerate(urls.urls):
            fh.write(f"{url}\n  out={k}.jpg\n")
    return [
        "aria2c",
        "-j256",
        "-x1",
        "--auto-save-interval=0",
        # Reads the list as it goes: without it 50,000 URLs cost ~600 MB of RSS up front.
        "--deferred-input=true",
        "--quiet",
        "-i",
        str(listing),
        "-d",
        str(out),
    ]


def aria2_peer() -> Peer:
    return _tool_peer(
        "aria2c",
        "aria2c",
        "aria2c -j256 -x1 --auto-save-interval=0 --deferred-input=true, files on disk",
        300.0,
        _aria2_build,
    )


# --- img2dataset (its own venv) ---------------------------------------------------------

_I2D_ENV = {"NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}


def ensure_img2dataset(work: Path, log: Callable[[str], None]) -> tuple[Path | None, str]:
    """The venv's python and img2dataset's version, or (None, why it is not installable)."""
    venv = work / "venv-img2dataset"
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import importlib.metadata as m; print(m.version('img2dataset'))"]
    if python.exists():
        done = subprocess.run(check, capture_output=True, text=True, timeout=120)
        if done.returncode == 0:
            return python, done.stdout.strip()
    log(f"installing img2dataset into {venv} (once)")
    install_log = work / "img2dataset-install.log"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
        # A venv inside the repository must stay out of git and of ruff's file discovery.
        (venv / ".gitignore").write_text("*\n")
        with open(install_log, "wb") as fh:
            done_install = subprocess.run(
                [str(python), "-m", "pip", "install", "img2dataset"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                timeout=1800,
            )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"not installable: {type(exc).__name__}: {exc}"
    if done_install.returncode != 0:
        tail = install_log.read_text(errors="replace").strip().splitlines()[-1:]
        return None, f"not installable: pip exit {done_install.returncode}: {' '.join(tail)}"
    done = subprocess.run(check, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        return None, f"not installable: import failed: {done.stderr.strip()[-300:]}"
    return python, done.stdout.strip()


def count_img2dataset(urls: UrlList, out: Path, _stdout: Path) -> Counted:
    import pyarrow.parquet as pq

    ok: set[int] = set()
    kinds: Counter[str] = Counter()
    parts = sorted(out.glob("*.parquet"))
    for part in parts:
        table = pq.read_table(part, columns=["url", "status", "error_message"])
        for url, status, message in zip(
            table.column("url").to_pylist(),
            table.column("status").to_pylist(),
            table.column("error_message").to_pylist(),
            strict=True,
        ):
            if status == "success":
                ok.add(url_index(url))
            else:
                kinds[str(message)[:80]] += 1
    return count_by_index(urls, ok, {"parts": len(parts), "error_messages": dict(kinds)})


def _img2dataset_build(python: Path, reencode: bool) -> Callable[[UrlList, Path, Path], list[str]]:
    def build(urls: UrlList, out: Path, work: Path) -> list[str]:
        argv = [
            str(python.parent / "img2dataset"),
            f"--url_list={urls.path}",
            f"--output_folder={out}",
            "--output_format=parquet",
            "--input_format=txt",
            "--processes_count=2",
            "--thread_count=128",
        ]
        if not reencode:
            argv.append("--disable_all_reencoding=True")
        return argv

    return build


def img2dataset_peer(work: Path, reencode: bool, log: Callable[[str], None]) -> Peer:
    name = "img2dataset-default" if reencode else "img2dataset-noreencode"
    what = "default (resize to 256, re-encode)" if reencode else "disable_all_reencoding=True"
    python, version = ensure_img2dataset(work, log)
    peer = Peer(
        name=name,
        description=f"img2dataset, parquet, 2 processes x 128 threads, {what}",
        expected_rate=100.0 if reencode else 300.0,
        build=lambda urls, out, w: [],
        count=count_img2dataset,
        env=dict(_I2D_ENV),
    )
    if python is None:
        peer.unavailable = version
    else:
        peer.version = version
        peer.build = _img2dataset_build(python, reencode)
    return peer


PEER_NAMES = [
    "fetchshard",
    "fetchshard-2",
    "fetchshard-resize",
    "fetchshard-verify",
    "fetchshard-2-resize",
    "bare",
    "bare-2",
    "curl",
    "aria2c",
    "img2dataset-noreencode",
    "img2dataset-default",
]


def make_peer(
    name: str,
    work: Path,
    log: Callable[[str], None],
    snapshot: tuple[Path, str] | None = None,
) -> Peer:
    if name == "fetchshard" or name.startswith("fetchshard-"):
        words = name.split("-")[1:]
        ranks = int(words.pop(0)) if words and words[0].isdigit() else 1
        images = words.pop(0) if words and words[0] in IMAGE_FLAGS else ""
        if not words:
            return fetchshard_peer(ranks, snapshot, images)
    if name == "bare":
        return bare_peer()
    if name == "bare-2":
        return bare_peer(2)
    if name == "curl":
        return curl_peer()
    if name == "aria2c":
        return aria2_peer()
    if name == "img2dataset-noreencode":
        return img2dataset_peer(work, reencode=False, log=log)
    if name == "img2dataset-default":
        return img2dataset_peer(work, reencode=True, log=log)
    raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEER_NAMES)}")
