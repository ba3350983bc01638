"""ServerProcess: the server CLI in a subprocess, its request log read from the JSON-lines file."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from .loopback import AddressMode
from .state import DEFAULT_ROBOTS_TXT

#: the folder that holds this package; the subprocess runs there
TESTS_DIR = Path(__file__).resolve().parent.parent
#: the package's import name (``server``), run with ``python -m``
SERVER_PACKAGE = __name__.rpartition(".")[0]
_PROXY_VARS = (
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
)


def _no_proxy_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerProcess:
    """Run the server CLI (``python -m server``) in a subprocess (its own event loop).

    Use as a context manager.  ``requests()`` parses the JSON-lines log file, so it
    can be called while the server is running.  On exit the subprocess is
    terminated by PID (``terminate()``, wait 5 s, then ``kill()``).  ``robots_txt``
    is the body of ``/robots.txt`` in the subprocess (None -> 404).
    """

    def __init__(
        self,
        hosts: int = 1,
        log_path: str | os.PathLike[str] | None = None,
        *,
        address_mode: AddressMode = "ports",
        port_base: int = 0,
        startup_timeout: float = 10.0,
        robots_txt: str | None = DEFAULT_ROBOTS_TXT,
    ) -> None:
        self.hosts = hosts
        self.robots_txt = robots_txt
        self.address_mode = address_mode
        self.port_base = port_base
        self.startup_timeout = startup_timeout
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="fetchshard-server-")
            log_path = Path(self._tmpdir.name) / "requests.jsonl"
        self.log_path = Path(log_path)
        self.stderr_path = self.log_path.with_name(self.log_path.name + ".stderr")
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self.ports: list[int] = []
        self.base_urls: list[str] = []

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> ServerProcess:
        if self.proc is not None:
            raise RuntimeError("already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        cmd = self._command()
        env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=env,
            cwd=TESTS_DIR,
        )
        try:
            info = self._read_startup_line()
        except BaseException:
            self.stop()
            raise
        self.ports = [int(p) for p in info["ports"]]
        self.base_urls = [str(u) for u in info["base_urls"]]
        self._started(info)
        return self

    def _command(self) -> list[str]:
        """The subprocess's command line (HubProcess runs another mode)."""
        # -m with the tests folder as the working directory: that folder comes first on the
        # subprocess's sys.path, so ``server`` is this package; the log path goes absolute
        cmd = [
            sys.executable,
            "-m",
            SERVER_PACKAGE,
            "--hosts",
            str(self.hosts),
            "--port-base",
            str(self.port_base),
            "--address-mode",
            self.address_mode,
            "--log",
            str(self.log_path.absolute()),
            "--exit-on-stdin-eof",
        ]
        if self.robots_txt is None:
            cmd.append("--no-robots-txt")
        elif self.robots_txt != DEFAULT_ROBOTS_TXT:
            cmd += ["--robots-txt", self.robots_txt]
        return cmd

    def _started(self, info: dict[str, Any]) -> None:
        """Read what a subclass needs from the startup line."""

    def _read_startup_line(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True)
        reader.start()
        try:
            line = lines.get(timeout=self.startup_timeout)
        except queue.Empty:
            raise RuntimeError(
                f"test server did not start within {self.startup_timeout}s: {self.stderr_text()!r}"
            ) from None
        if not line.strip():
            raise RuntimeError(
                f"test server exited (rc={self.proc.poll()}): {self.stderr_text()!r}"
            )
        info: dict[str, Any] = json.loads(line)
        return info

    def stop(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()  # by PID
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def cleanup(self) -> None:
        self.stop()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # -- queries -------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def url(self, path: str, host: int = 0) -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_urls[host] + path

    def requests(self) -> list[dict[str, Any]]:
        """Parse the log file (only complete lines, so safe while it is written)."""
        try:
            text = self.log_path.read_text()
        except FileNotFoundError:
            return []
        out: list[dict[str, Any]] = []
        for line in text.splitlines(keepends=True):
            if line.endswith("\n") and line.strip():
                out.append(json.loads(line))
        return out

    def clear_requests(self) -> None:
        """Clear the server's log (memory and file) via ``DELETE /requests``."""
        self._send("DELETE", "/requests")

    def set_pace(self, factor: float) -> None:
        """Scale the sleep of every later ``/paced`` request (``PUT /pace/{factor}``)."""
        self._send("PUT", f"/pace/{factor}")

    def set_file_version(self, version: int) -> None:
        """Change every ``/file/`` (new bytes, new ETag): ``PUT /file-version/{v}``."""
        self._send("PUT", f"/file-version/{version}")

    def file_bytes(self) -> dict[str, int]:
        """Body bytes each ``/file/`` path has sent since the log was last cleared."""
        req = urllib.request.Request(self.url("/file-bytes"))
        with _no_proxy_opener().open(req, timeout=10) as resp:
            data: dict[str, int] = json.loads(resp.read())
        return data

    def _send(self, method: str, path: str) -> None:
        req = urllib.request.Request(self.url(path), method=method)
        with _no_proxy_opener().open(req, timeout=10) as resp:
            resp.read()

    def stderr_text(self) -> str:
        if self._stderr is not None:
            self._stderr.flush()
        try:
            return self.stderr_path.read_text()
        except FileNotFoundError:
            return ""
