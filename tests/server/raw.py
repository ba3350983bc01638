"""Raw TCP helpers: ResetServer (resets every connection) and closed_port (nothing listens)."""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from types import TracebackType

from .loopback import LOOPBACK


def closed_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` with nothing listening (connecting to it is refused).

    Binds port 0, reads the port and closes the socket; the kernel does not hand
    the same ephemeral port out again right away.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_LINGER_RESET = struct.pack("ii", 1, 0)


class LoopbackURLs:
    """The URLs of a raw server listening on ``host``:``port``."""

    host: str
    port: int

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        if not path.startswith("/"):
            path = "/" + path
        return self.base_url + path


class ResetServer(LoopbackURLs):
    """A "host" that accepts every TCP connection and resets it immediately.

    Thread-based (stdlib sockets only), so it works from sync and async tests alike::

        with ResetServer() as rs:
            ...fetch rs.url("/x")...  # ClientOSError / ServerDisconnectedError
            assert rs.connections == 1

    Each accepted connection is closed with ``SO_LINGER {1, 0}``, which sends an RST
    instead of a FIN.  ``connections`` counts accepted connections (thread-safe).
    """

    def __init__(self, host: str = LOOPBACK, *, poll_interval: float = 0.05) -> None:
        self.host = host
        self.port = 0
        self.poll_interval = poll_interval
        self._lock = threading.Lock()
        self._connections = 0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def running(self) -> bool:
        """True while the accept thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> ResetServer:
        if self._sock is not None:
            raise RuntimeError("already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.host, 0))
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.port = int(sock.getsockname()[1])
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name=f"ResetServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self, sock: socket.socket) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ)
            while not self._stop.is_set():
                if not sel.select(self.poll_interval):
                    continue
                while True:  # drain the backlog
                    try:
                        conn, _ = sock.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:  # e.g. ECONNABORTED: the client already left
                        continue
                    with self._lock:
                        self._connections += 1
                    with contextlib.suppress(OSError):
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
                    conn.close()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ResetServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
