"""Shared pytest fixtures: loopback HTTP test servers and URL-list files."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path

import pytest

_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)

from server import RunningServer, ServerProcess, running_server  # noqa: E402

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


@pytest.fixture
def url_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``url_file(urls, name="urls.txt") -> Path`` writes one URL per line."""

    def _write(urls: Iterable[str], name: str = "urls.txt") -> Path:
        path = tmp_path / name
        path.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
        return path

    return _write
