"""The HTTP server the clients download from: nginx on 64 loopback addresses, or aiohttp.

The server runs in the foreground (nginx ``daemon off;``) as our own child, so it is stopped
by its PID and never outlives the harness."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

HERE = Path(__file__).resolve().parent

_NGINX_CONF = """\
# Written by benchmarks/servers.py; every path is inside the work folder.
{user}worker_processes 1;
worker_rlimit_nofile 16384;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
daemon off;
events {{
    worker_connections 8192;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65s;
    types {{ image/jpeg jpg; }}
    default_type application/octet-stream;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    server {{
{listens}
        root {root};
        location /img/ {{ }}
    }}
}}
"""


def host_addresses(count: int) -> list[str]:
    """127.0.0.2, 127.0.0.3, ...: Linux routes all of 127/8 to lo, no setup needed."""
    if not 1 <= count <= 250:
        raise ValueError("between 1 and 250 loopback hosts")
    return [f"127.0.0.{2 + i}" for i in range(count)]


def free_port(addresses: list[str], attempts: int = 20) -> int:
    """A port that is free on every address (checked by binding all of them)."""
    for _ in range(attempts):
        probe = socket.socket()
        probe.bind((addresses[0], 0))
        port = int(probe.getsockname()[1])
        probe.close()
        held: list[socket.socket] = []
        try:
            for address in addresses:
                s = socket.socket()
                held.append(s)
                s.bind((address, port))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError(f"no port free on all {len(addresses)} addresses")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM a process started in a session of its own (``start_new_session=True``), then
    SIGKILL its process group after ``timeout`` s: only this PID and the group we created
    (nginx's workers, say). Nothing if it has already exited."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


@dataclass
class Server:
    kind: str  # "nginx" or "aiohttp"
    addresses: list[str]
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    version: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, address: str, path: str) -> str:
        return f"http://{address}:{self.port}{path}"

    def describe(self) -> dict[str, Any]:
        """The server as a result document records it."""
        return {
            "kind": self.kind,
            "version": self.version,
            "hosts": len(self.addresses),
            "notes": self.notes,
        }

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; only this PID (and its process group)."""
        stop_process(self.proc, timeout)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    for candidate in ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _start_nginx(binary: str, root: Path, work: Path, addresses: list[str]) -> Server:
    port = free_port(addresses)
    (work / "nginx-tmp").mkdir(parents=True, exist_ok=True)
    # As root nginx's worker would switch to "nobody", who may not read a private temp folder.
    user = "user root;\n" if os.geteuid() == 0 else ""
    listens = "\n".join(f"        listen {a}:{port};" for a in addresses)
    conf = work / "nginx.conf"
    conf.write_text(
        _NGINX_CONF.format(user=user, work=work, root=root, listens=listens), encoding="utf-8"
    )
    log_path = work / "nginx-stderr.log"
    version = subprocess.run(
        [binary, "-v"], capture_output=True, text=True, timeout=30
    ).stderr.strip()
    with open(log_path, "wb") as log:
        # -e: nginx opens its compiled-in error log before reading the config otherwise.
        proc = subprocess.Popen(
            [binary, "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server("nginx", addresses, port, proc, log_path, version=version)


def _start_aiohttp(root: Path, work: Path, addresses: list[str]) -> Server:
    import aiohttp

    port = free_port(addresses)
    log_path = work / "static-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "static_server.py"),
                "--root",
                str(root),
                "--port",
                str(port),
                "--addresses",
                ",".join(addresses),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Server(
        "aiohttp", addresses, port, proc, log_path, version=f"aiohttp {aiohttp.__version__}"
    )


def wait_ready(server: Server, probe_path: str, expected_size: int, timeout: float = 20.0) -> None:
    """Every address must serve the probe file in full before anything is measured."""
    deadline = time.monotonic() + timeout
    pending = list(server.addresses)
    # A proxy from the environment must never see loopback traffic.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    last_error = ""
    while pending and time.monotonic() < deadline:
        if server.proc.poll() is not None:
            break
        address = pending[0]
        try:
            with opener.open(server.url(address, probe_path), timeout=5) as resp:
                body = resp.read()
            if len(body) != expected_size:
                raise RuntimeError(f"{len(body)} bytes instead of {expected_size}")
            pending.pop(0)
        except Exception as exc:  # the server is starting: retry until the deadline
            last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.1)
    if pending:
        log = (
            server.log_path.read_text(errors="replace")[-2000:] if server.log_path.exists() else ""
        )
        raise RuntimeError(
            f"{server.kind} server not answering on {pending[0]}:{server.port} "
            f"(exit code {server.proc.poll()}, last error {last_error!r}); log:\n{log}"
        )


def start_server(
    kind: str, root: Path, work: Path, hosts: int, probe_path: str, probe_size: int
) -> Server:
    """``kind``: "auto" (nginx when installed, else aiohttp), "nginx" or "aiohttp"."""
    addresses = host_addresses(hosts)
    notes: list[str] = []
    binary = nginx_binary() if kind in ("auto", "nginx") else None
    if kind == "nginx" and binary is None:
        raise RuntimeError("nginx requested but not installed")
    server: Server | None = None
    if binary is not None:
        server = _start_nginx(binary, root, work, addresses)
        try:
            wait_ready(server, probe_path, probe_size)
        except RuntimeError as exc:
            server.stop()
            if kind == "nginx":
                raise
            notes.append(f"nginx failed to start, fell back to aiohttp: {exc}")
            server = None
        except BaseException:
            server.stop()
            raise
    elif kind == "auto":
        notes.append("nginx not installed: aiohttp fallback server")
    if server is None:
        server = _start_aiohttp(root, work, addresses)
        try:
            wait_ready(server, probe_path, probe_size)
        except BaseException:
            server.stop()
            raise
    server.notes.extend(notes)
    return server
