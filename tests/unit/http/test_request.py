"""fetch: proxies and netrc from the environment, URL quoting, and the deadlines' guard."""

from __future__ import annotations

import asyncio
import json
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from yarl import URL

from fetchshard.config import FetchConfig
from fetchshard.errors import ErrorKind
from fetchshard.http.client import make_client
from fetchshard.http.deadlines import Guard as _Guard
from fetchshard.http.request import _PLAIN_URL, fetch, request_url
from server import RunningServer

CONFIG = FetchConfig(total_timeout=5.0)


async def test_http_proxy_from_the_environment_carries_the_request(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server is the proxy: a host that does not resolve can only be reached through it.
    monkeypatch.setenv("HTTP_PROXY", server.url("/").rstrip("/"))
    monkeypatch.setenv("NO_PROXY", "bypassed.invalid")
    async with make_client(CONFIG) as client:
        proxied = await fetch(client, "http://proxied.invalid/ok/p", CONFIG)
        bypassed = await fetch(client, "http://bypassed.invalid/ok/p", CONFIG)
    assert proxied.ok, proxied.error_message
    assert bypassed.error_kind is not None and bypassed.error_kind.value == "dns"


async def test_trust_env_off_ignores_the_proxy(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", server.url("/").rstrip("/"))
    monkeypatch.setenv("NO_PROXY", "")
    config = FetchConfig(total_timeout=5.0, trust_env=False)
    async with make_client(config) as client:
        result = await fetch(client, "http://proxied.invalid/ok/p", config)
    assert result.error_kind is not None and result.error_kind.value == "dns"


async def test_netrc_credentials_unless_a_header_says_otherwise(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    url = server.url("/echo-headers")
    explicit_config = FetchConfig(total_timeout=5.0, headers={"Authorization": "Bearer t"})
    async with make_client(CONFIG) as client:
        plain = await fetch(client, url, CONFIG)
    async with make_client(explicit_config) as client:
        explicit = await fetch(client, url, explicit_config)
    assert plain.body is not None and explicit.body is not None
    # base64("alice:s3cret")
    assert json.loads(plain.body)["Authorization"] == "Basic YWxpY2U6czNjcmV0"
    assert json.loads(explicit.body)["Authorization"] == "Bearer t"


def _yarl_view(make: Callable[[], URL]) -> tuple[str, ...] | str:
    try:
        url = make()
        return (str(url), url.raw_path_qs, url.raw_host or "", str(url.port), url.scheme)
    except ValueError as exc:
        return f"ValueError: {exc}"


def test_request_url_skips_requoting_only_where_it_changes_nothing() -> None:
    rng = random.Random(5)
    alphabet = string.ascii_letters + string.digits + "._~/=&-?.%+ :@!$'()*,;é"
    fixed = [
        "http://127.0.0.2:8080/img/0001.jpg?u=5",
        "https://example.org/a/b/../c",
        "https://example.org/a/./c",
        "http://example.org/x?a=b&c=d",
        "http://example.org/%7Euser/a%2fb",
        "http://example.org/sp ace",
        "http://example.org:99999/",
        "http://example.org/?",
        "http://example.org/a?b?c=/d",
    ]
    generated = [
        f"{rng.choice(['http', 'https'])}://{rng.choice(['h.example', 'a-b.c', '10.0.0.1'])}"
        f"{rng.choice(['', ':8080', ':1', ':65535', ':65536', ':99999'])}/"
        + "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        for _ in range(5000)
    ]
    plain = 0
    for text in fixed + generated:
        expected = _yarl_view(lambda: URL(text, encoded=False))  # noqa: B023 - called at once
        assert _yarl_view(lambda: request_url(text)) == expected, text  # noqa: B023
        plain += bool(_PLAIN_URL.fullmatch(text)) and "/." not in text
    assert plain > 500  # the fast path was exercised


class _Closable:
    """Stands in for a response (narrow unit test of the guard): records its close()."""

    closed = False

    def close(self) -> None:
        self.closed = True


def _guard(**limits: float) -> tuple[_Guard, asyncio.Future[None]]:
    # A bare future stands in for the request's task: the guard only calls cancel() on it.
    task: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    config = FetchConfig(**limits)  # type: ignore[arg-type]
    return _Guard(config, 1.0, 100.0, task), task  # type: ignore[arg-type]


async def test_guard_total_deadline_cancels_a_request_without_a_response() -> None:
    guard, task = _guard(total_timeout=3.0, connect_timeout=10.0, read_timeout=10.0)
    guard.check(102.9)
    assert guard.tripped is None and not task.cancelled()
    guard.check(103.0)
    assert guard.tripped is ErrorKind.TIMEOUT and task.cancelled()
    assert "3s" in guard.message()


async def test_guard_silence_before_the_first_response_allows_connect_plus_read() -> None:
    guard, task = _guard(connect_timeout=1.0, read_timeout=2.0, min_speed=1000)
    guard.check(102.9)  # no response yet, no speed judged: 2.9 s of silence is allowed
    assert guard.tripped is None
    guard.check(103.0)
    assert guard.tripped is ErrorKind.READ_TIMEOUT and task.cancelled()


async def test_guard_silence_after_the_response_closes_it() -> None:
    guard, task = _guard(read_timeout=2.0, min_speed=0)
    resp = _Closable()
    guard.watch(resp)  # type: ignore[arg-type]
    guard.check(100.5)  # the response is progress
    for now, size in ((101.0, 10), (102.0, 20), (104.0, 30)):
        guard.bytes = size
        guard.check(now)  # bytes arriving keep it alive, however slow
    guard.check(105.9)
    assert guard.tripped is None
    guard.check(106.0)  # 2 s since the tick that last saw bytes
    assert guard.tripped is ErrorKind.READ_TIMEOUT
    assert resp.closed and not task.cancelled()


async def test_guard_minimum_speed_is_measured_from_the_first_response() -> None:
    guard, _ = _guard(min_speed=100, min_speed_window=2.0, read_timeout=30.0)
    guard.check(101.0)
    guard.check(105.0)  # 5 s without a response: read_timeout's business, not min_speed's
    assert guard.tripped is None
    guard.watch(_Closable())  # type: ignore[arg-type]
    guard.check(105.5)  # the window opens here
    guard.bytes = 250
    guard.check(107.5)  # 250 bytes in 2 s >= 200: fine, next window
    assert guard.tripped is None
    guard.bytes = 300
    guard.check(109.5)  # 50 bytes in 2 s < 200
    assert guard.tripped is ErrorKind.TOO_SLOW


async def test_deadlines_end_real_requests_and_leave_the_task_usable(
    server: RunningServer,
) -> None:
    config = FetchConfig(connect_timeout=0.5, read_timeout=0.5, total_timeout=1.5)
    async with make_client(config) as client:
        started = time.monotonic()
        silent = await fetch(client, server.url("/slow-first-byte/5"), config)
        silent_s = time.monotonic() - started
        started = time.monotonic()
        endless = await fetch(client, server.url("/endless"), config)
        endless_s = time.monotonic() - started
        after = await fetch(client, server.url("/ok/after"), config)
        task = asyncio.current_task()
        if sys.version_info >= (3, 11):
            assert task is not None and task.cancelling() == 0  # the guard took its cancel back
    assert silent.error_kind is ErrorKind.READ_TIMEOUT, silent.error_message
    assert endless.error_kind is ErrorKind.TIMEOUT, endless.error_message
    # connect + read = 1 s, total 1.5 s; a tick (0.25 s) late at most, plus a loaded machine
    assert 0.9 <= silent_s < 2.5 and 1.4 <= endless_s < 3.0, (silent_s, endless_s)
    assert after.ok, after.error_message


async def test_a_cancel_from_outside_still_propagates(server: RunningServer) -> None:
    config = FetchConfig(connect_timeout=5.0, read_timeout=5.0, total_timeout=10.0)
    async with make_client(config) as client:
        task = asyncio.create_task(fetch(client, server.url("/slow-first-byte/5"), config))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.mark.skipif(sys.version_info < (3, 11), reason="Task.uncancel() is Python 3.11+")
async def test_a_cancel_from_outside_in_the_same_tick_as_a_deadline_propagates(
    server: RunningServer,
) -> None:
    config = FetchConfig(connect_timeout=5.0, read_timeout=5.0, total_timeout=10.0)
    async with make_client(config) as client:
        task = asyncio.create_task(fetch(client, server.url("/slow-first-byte/5"), config))
        await asyncio.sleep(0.2)
        (guard,) = client.watch._guards
        guard._trip(ErrorKind.TIMEOUT)  # the guard cancels the task...
        task.cancel()  # ...and so does the rank, stopping
        with pytest.raises(asyncio.CancelledError):
            await task
