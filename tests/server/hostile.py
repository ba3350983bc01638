"""CannedServer: a raw TCP "host" that answers each request path with canned bytes.

For what the aiohttp test server cannot send: a 10 MB header, a body longer than its
Content-Length, bytes after the response on a kept-alive connection. Thread-based (stdlib
sockets only), like :class:`ResetServer`, so it serves sync tests and subprocess runs alike::

    canned = {"/long": Canned.response(b"0123456789", extra=b"x" * 100_000)}
    with CannedServer(canned) as cs:
        ...fetch cs.url("/long")...
        assert cs.requests() == [("/long", 0)]   # (path, connection number)

Connections are kept alive (several requests in turn on one) until a canned answer says
``close`` or the client leaves; a path with no canned answer gets a 404. Each connection has
its own thread, so a client that stops reading a huge answer holds up only its own.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import urlsplit

from .loopback import LOOPBACK
from .raw import LoopbackURLs

_MAX_REQUEST_HEAD = 64 * 1024
_NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nnot found"
)


@dataclass(frozen=True)
class Canned:
    """What to send: ``parts`` in turn, a number among them a pause in seconds; then close the
    connection if ``close``, else wait for the next request on it."""

    parts: Sequence[bytes | float]
    close: bool = False

    @classmethod
    def response(
        cls,
        body: bytes,
        *,
        status: str = "200 OK",
        headers: Mapping[str, str] | None = None,
        content_length: int | None = None,
        extra: bytes = b"",
        pause: float = 0.0,
        close: bool = False,
    ) -> Canned:
        """A response whose ``Content-Length`` is ``content_length`` (default: the body's), with
        ``extra`` bytes sent right after the body (after ``pause`` seconds, if any)."""
        fields = {"Content-Type": "application/octet-stream", **(headers or {})}
        fields["Content-Length"] = str(len(body) if content_length is None else content_length)
        if close:
            fields["Connection"] = "close"
        head = f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
        first = head.encode("latin-1") + b"\r\n" + body
        if not extra:
            return cls((first,), close=close)
        if not pause:  # one write: the client reads the excess with the end of the body
            return cls((first + extra,), close=close)
        return cls((first, pause, extra), close=close)


class CannedServer(LoopbackURLs):
    """A loopback listener that answers each request path with its :class:`Canned` bytes.

    ``requests()`` lists ``(path, connection number)`` of every request read, in order;
    ``connections`` counts accepted connections.
    """

    def __init__(
        self,
        canned: Mapping[str, Canned],
        host: str = LOOPBACK,
        *,
        send_timeout: float = 10.0,
    ) -> None:
        self.canned = dict(canned)
        self.host = host
        self.port = 0
        self.send_timeout = send_timeout
        self._lock = threading.Lock()
        self._requests: list[tuple[str, int]] = []
        self._connections = 0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._open: list[socket.socket] = []

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    def requests(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(self._requests)

    def start(self) -> CannedServer:
        if self._sock is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, 0))
            sock.listen(128)
            sock.settimeout(0.05)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._accept, args=(sock,), name=f"CannedServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _accept(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:  # closed by stop(), or the client already left
                if self._stop.is_set():
                    return
                continue
            with self._lock:
                number = self._connections
                self._connections += 1
                self._open.append(conn)
            worker = threading.Thread(
                target=self._serve, args=(conn, number), name=f"Canned:{number}", daemon=True
            )
            self._workers.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(self.send_timeout)
            pending = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in pending:
                    data = conn.recv(65536)
                    if not data or len(pending) > _MAX_REQUEST_HEAD:
                        return
                    pending += data
                head, _, pending = pending.partition(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                path = line[1] if len(line) > 1 else "/"
                if "://" in path:  # absolute form
                    path = urlsplit(path).path or "/"
                with self._lock:
                    self._requests.append((path, number))
                answer = self.canned.get(path)
                if answer is None:
                    conn.sendall(_NOT_FOUND)
                    continue
                for part in answer.parts:
                    if isinstance(part, bytes):
                        conn.sendall(part)
                    else:
                        time.sleep(part)
                if answer.close:
                    conn.shutdown(socket.SHUT_WR)
                    return

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            conns, self._open = self._open, []
        for conn in conns:  # wakes a worker waiting for the next request
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for worker in self._workers:
            worker.join(timeout)
        self._workers.clear()

    def __enter__(self) -> CannedServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
