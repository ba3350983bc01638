"""Shared pytest fixtures: loopback HTTP test servers, an S3 server and URL-list files."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from server import RunningServer, ServerProcess, running_server  # noqa: E402

if TYPE_CHECKING:
    from server.s3 import MotoS3

_PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY", "all_proxy")


def pytest_configure(config: pytest.Config) -> None:
    # Loopback traffic must never be sent through a proxy (also inherited by subprocesses).
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    for var in _PROXY_VARS:
        os.environ.pop(var, None)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """In-process test server (1 host) running in the test's event loop."""
    async with running_server(hosts=1) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Test server in a subprocess with 4 hosts (ports); log in a temp file."""
    log = tmp_path_factory.mktemp("server-process") / "requests.jsonl"
    with ServerProcess(hosts=4, log_path=log) as proc:
        yield proc


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    """moto's S3 server on 127.0.0.1, one for the session (imported only when a test asks)."""
    from server.s3 import MotoS3

    with MotoS3() as s3:
        yield s3


@pytest.fixture
def s3(
    s3_server: MotoS3, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MotoS3]:
    """The S3 server emptied, and this process's environment (so the commands a test starts)
    set for it: fake keys, no profile, no metadata probe; Python sockets held to loopback."""
    from server.s3 import loopback_only

    s3_server.reset()
    for name, value in s3_server.env(tmp_path_factory.mktemp("aws-home")).items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    with loopback_only():
        yield s3_server


@pytest.fixture
def url_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``url_file(urls, name="urls.txt") -> Path`` writes one URL per line."""

    def _write(urls: Iterable[str], name: str = "urls.txt") -> Path:
        path = tmp_path / name
        path.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
        return path

    return _write
