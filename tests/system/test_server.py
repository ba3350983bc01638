"""Tests for the loopback test server itself (the tests/server package)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import aiohttp
import pytest
import yarl
from PIL import Image

from server import (
    DEFAULT_ROBOTS_TXT,
    ResetServer,
    RunningServer,
    ServerProcess,
    closed_port,
    running_server,
)

pytestmark = pytest.mark.timeout(30)


async def _wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_ok_default_and_padded(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url("/ok/abc")) as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            assert await r.text() == "ok abc"
        async with s.get(server.url("/ok/abc?size=1000")) as r:
            body = await r.read()
            assert r.status == 200
            assert len(body) == 1000
            assert r.content_length == 1000
            assert body.startswith(b"ok abc")
        async with s.get(server.url("/ok/abc?size=1000")) as r:
            assert await r.read() == body  # deterministic


async def test_image_is_deterministic_jpeg(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        bodies = {}
        for n in (1, 2, 1):
            async with s.get(server.url(f"/image/{n}")) as r:
                assert r.status == 200
                assert r.content_type == "image/jpeg"
                data = await r.read()
                if n in bodies:
                    assert bodies[n] == data
                bodies[n] = data
        async with s.get(server.url("/image/3?w=40&h=20")) as r:
            sized = await r.read()
    assert bodies[1] != bodies[2]
    img1 = Image.open(io.BytesIO(bodies[1]))
    img2 = Image.open(io.BytesIO(bodies[2]))
    assert img1.format == "JPEG"
    assert img1.size == (32, 32)
    assert img1.convert("RGB").getpixel((20, 5)) != img2.convert("RGB").getpixel((20, 5))
    assert Image.open(io.BytesIO(sized)).size == (40, 20)


@pytest.mark.parametrize("code", [200, 204, 301, 404, 429, 500, 503])
async def test_status_codes(server: RunningServer, code: int) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(server.url(f"/status/{code}"), allow_redirects=False) as r,
    ):
        assert r.status == code
        body = await r.text()
        assert body == ("" if code == 204 else f"status {code}")


async def test_flaky_counts_per_key(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:

        async def statuses(path: str, n: int) -> list[int]:
            out = []
            for _ in range(n):
                async with s.get(server.url(path)) as r:
                    await r.read()
                    out.append(r.status)
            return out

        assert await statuses("/flaky/a/2", 4) == [503, 503, 200, 200]
        assert await statuses("/flaky/b/1?code=429", 3) == [429, 200, 200]
        assert await statuses("/flaky/c/0", 1) == [200]
        async with s.get(server.url("/flaky/d/1")) as r:
            assert r.status == 503
        async with s.get(server.url("/flaky/d/1")) as r:
            assert await r.text() == "ok"
    assert server.state.flaky_counts == {"a": 4, "b": 3, "c": 1, "d": 2}


async def test_retry_after(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url("/retry-after/k1/2")) as r:
            assert r.status == 429
            assert r.headers["Retry-After"] == "2"
        async with s.get(server.url("/retry-after/k1/2")) as r:
            assert r.status == 200
            assert "Retry-After" not in r.headers
            assert await r.text() == "ok"
        async with s.get(server.url("/retry-after/k2/1?code=503")) as r:
            assert r.status == 503
            assert r.headers["Retry-After"] == "1"


async def test_slow(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.get(server.url("/slow/0.3")) as r:
            assert await r.text() == "slow"
        assert time.monotonic() - t0 >= 0.29
        with pytest.raises(asyncio.TimeoutError):
            async with s.get(server.url("/slow/5"), timeout=aiohttp.ClientTimeout(total=0.2)) as r:
                await r.read()


async def test_trickle_is_chunked_and_spaced(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.get(server.url("/trickle?chunks=4&delay=0.1")) as r:
            assert r.status == 200
            assert "Content-Length" not in r.headers
            assert r.headers.get("Transfer-Encoding") == "chunked"
            first = await r.content.readline()
            t_first = time.monotonic() - t0
            rest = await r.read()
        elapsed = time.monotonic() - t0
    assert first == b"chunk 0\n"
    assert rest == b"chunk 1\nchunk 2\nchunk 3\n"
    assert t_first < 0.25
    assert elapsed >= 0.29


async def test_endless_stops_cleanly_on_disconnect(
    server: RunningServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aiohttp")
    state = server.state
    async with aiohttp.ClientSession() as s:
        resp = await s.get(server.url("/endless"))
        assert resp.status == 200
        assert "Content-Length" not in resp.headers
        lines = [await resp.content.readline() for _ in range(3)]
        assert lines == [b"tick 0\n", b"tick 1\n", b"tick 2\n"]
        assert state.in_flight == 1
        resp.close()  # drop the connection mid-stream
    await _wait_for(lambda: state.in_flight == 0 and state.endless_stopped == 1)
    assert state.endless_started == 1
    assert state.errors == []
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert problems == []
    # no server-side task (request handler, connection) survives the disconnect
    me = asyncio.current_task()
    await _wait_for(lambda: all(t is me or t.done() for t in asyncio.all_tasks()))


async def test_big_with_and_without_length(server: RunningServer) -> None:
    n = 300_000
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url(f"/big/{n}")) as r:
            assert r.status == 200
            assert r.content_length == n
            with_len = await r.read()
        async with s.get(server.url(f"/big-nolength/{n}")) as r:
            assert r.status == 200
            assert "Content-Length" not in r.headers
            assert r.headers.get("Transfer-Encoding") == "chunked"
            no_len = await r.read()
        async with s.get(server.url("/big/0")) as r:
            assert r.content_length == 0
            assert await r.read() == b""
    assert len(with_len) == n
    assert with_len == no_len


async def test_redirect_chain_and_loop(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url("/redirect/3")) as r:
            assert r.status == 200
            assert await r.text() == "ok final"
            assert r.url.path == "/ok/final"
            assert [h.status for h in r.history] == [302] * 4
            assert [h.url.path for h in r.history] == [f"/redirect/{i}" for i in (3, 2, 1, 0)]
        async with s.get(server.url("/redirect/1"), allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == "/redirect/0"
        async with s.get(server.url("/redirect-loop"), allow_redirects=False) as r:
            assert r.status == 302
            assert r.headers["Location"] == "/redirect-loop"
        with pytest.raises(aiohttp.TooManyRedirects):
            async with s.get(server.url("/redirect-loop"), max_redirects=5) as r:
                await r.read()


async def test_reset_gives_payload_error(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with s.get(server.url("/reset")) as r:
                assert r.status == 200
                assert r.content_length == 1000
                await r.read()
        # the server keeps serving afterwards
        async with s.get(server.url("/ok/after")) as r:
            assert await r.text() == "ok after"
    assert server.state.errors == []


async def test_echo_headers(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(server.url("/echo-headers"), headers={"X-Test": "hello", "User-Agent": "ua/1"}) as r,
    ):
        assert r.content_type == "application/json"
        data = await r.json()
    assert data["X-Test"] == "hello"
    assert data["User-Agent"] == "ua/1"
    assert data["Host"] == server.base_urls[0].removeprefix("http://")


async def test_request_log(server: RunningServer) -> None:
    port = server.ports[0]
    t0, w0 = time.monotonic(), time.time()
    async with aiohttp.ClientSession(headers={"User-Agent": "logtest/1.0"}) as s:
        for path in ("/ok/one?size=20", "/status/404", "/image/7"):
            async with s.get(server.url(path)) as r:
                await r.read()
        async with s.get(server.url("/requests")) as r:
            served = await r.json()
        log = server.requests()
        assert [e["path"] for e in log] == ["/ok/one?size=20", "/status/404", "/image/7"]
        assert served == log  # /requests itself is not logged
        for e in log:
            assert e["ua"] == "logtest/1.0"
            assert e["host"] == f"127.0.0.1:{port}"
            assert e["port"] == port
            assert e["addr"] == "127.0.0.1"
            assert e["host_index"] == 0
            assert e["method"] == "GET"
            assert t0 <= e["t"] <= time.monotonic()
            assert w0 - 1 <= e["wall"] <= time.time() + 1
        assert [e["t"] for e in log] == sorted(e["t"] for e in log)
        async with s.delete(server.url("/requests")) as r:
            assert r.status == 200
        assert server.requests() == []
        async with s.get(server.url("/ok/two")) as r:
            await r.read()
    assert [e["path"] for e in server.requests()] == ["/ok/two"]


async def test_several_hosts_on_ports() -> None:
    async with running_server(hosts=3) as srv:
        assert srv.address_mode == "ports"
        assert len(set(srv.ports)) == 3
        assert srv.base_urls == [f"http://127.0.0.1:{p}" for p in srv.ports]
        async with aiohttp.ClientSession() as s:
            for i in (2, 0, 1):
                async with s.get(srv.url(f"/ok/h{i}", host=i)) as r:
                    assert await r.text() == f"ok h{i}"
        log = srv.requests()
    assert [(e["host_index"], e["port"]) for e in log] == [
        (2, srv.ports[2]),
        (0, srv.ports[0]),
        (1, srv.ports[1]),
    ]


async def test_several_hosts_on_addresses() -> None:
    async with running_server(hosts=3, address_mode="addresses") as srv:
        if srv.address_mode == "addresses":
            assert len(set(srv.ports)) == 1
            assert [a for a, _ in srv.listeners] == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        else:  # platform without 127/8 loopback: fell back to ports
            assert len(set(srv.ports)) == 3
        async with aiohttp.ClientSession() as s:
            for i in range(3):
                async with s.get(srv.url(f"/ok/a{i}", host=i)) as r:
                    assert r.status == 200
        log = srv.requests()
    assert [e["host_index"] for e in log] == [0, 1, 2]
    assert [e["addr"] for e in log] == [a for a, _ in srv.listeners]


async def test_server_process_subprocess_mode(tmp_path: Path) -> None:
    log_path = tmp_path / "req.jsonl"
    with ServerProcess(hosts=3, log_path=log_path) as sp:
        proc = sp.proc
        assert proc is not None and proc.poll() is None
        assert len(sp.base_urls) == 3
        assert len(set(sp.ports)) == 3
        assert sp.base_urls == [f"http://127.0.0.1:{p}" for p in sp.ports]
        async with aiohttp.ClientSession(headers={"User-Agent": "sub/1"}) as s:
            for i in range(3):
                async with s.get(sp.url(f"/ok/p{i}", host=i)) as r:
                    assert await r.text() == f"ok p{i}"
            # the log is readable while the server runs, and flushed per line
            reqs = sp.requests()
            assert [e["path"] for e in reqs] == ["/ok/p0", "/ok/p1", "/ok/p2"]
            assert [e["port"] for e in reqs] == sp.ports
            assert [e["host_index"] for e in reqs] == [0, 1, 2]
            assert all(e["ua"] == "sub/1" for e in reqs)
            assert all(abs(e["wall"] - time.time()) < 30 for e in reqs)
            # per-key state lives in the subprocess
            async with s.get(sp.url("/flaky/x/1", host=1)) as r:
                assert r.status == 503
            async with s.get(sp.url("/flaky/x/1", host=2)) as r:
                assert r.status == 200
            async with s.get(sp.url("/requests")) as r:
                assert len(await r.json()) == 5
            sp.clear_requests()
            assert sp.requests() == []
            async with s.get(sp.url("/ok/again")) as r:
                await r.read()
            assert [e["path"] for e in sp.requests()] == ["/ok/again"]
        lines = log_path.read_text().splitlines()
        assert [json.loads(line)["path"] for line in lines] == ["/ok/again"]
    assert proc.poll() is not None
    assert proc.returncode == 0
    assert sp.stderr_text() == ""


async def test_paced_sleeps_scaled_by_the_pace_set_from_outside() -> None:
    with ServerProcess(hosts=1) as sp:
        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            async with s.get(sp.url("/paced/0.3")) as r:
                assert await r.text() == "paced"
            assert time.monotonic() - t0 >= 0.29
            sp.set_pace(0)
            t0 = time.monotonic()
            async with s.get(sp.url("/paced/30")) as r:
                assert await r.text() == "paced"
            assert time.monotonic() - t0 < 5
            async with s.put(sp.url("/pace/-1")) as r:
                assert r.status == 400
        # setting the pace is not a request of the workload
        assert [e["path"] for e in sp.requests()] == ["/paced/0.3", "/paced/30"]


def test_server_process_fixture_and_url_file(
    server_process: ServerProcess, url_file: Callable[..., Path]
) -> None:
    import urllib.request

    assert len(server_process.base_urls) == 4
    urls = [server_process.url(f"/ok/u{i}", host=i) for i in range(4)]
    path = url_file(urls)
    assert path.read_text().splitlines() == urls
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    before = len(server_process.requests())
    for u in path.read_text().splitlines():
        with opener.open(u, timeout=5) as r:
            assert r.status == 200
    new = server_process.requests()[before:]
    assert sorted(e["host_index"] for e in new) == [0, 1, 2, 3]


# ------------------------------------------------------------------ fault routes


def _encoded(url: str) -> yarl.URL:
    return yarl.URL(url, encoded=True)


@pytest.mark.parametrize(
    "directive", ["noai", "noimageai, noindex", "otherbot: noai", "fetchshard: noindex"]
)
async def test_optout_header(server: RunningServer, directive: str) -> None:
    url = _encoded(server.url("/optout/" + quote(directive, safe="")))
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        assert r.headers.getall("X-Robots-Tag") == [directive]
        assert await r.text() == f"opt-out {directive}\n"
    assert [e["path"] for e in server.requests()] == [url.raw_path]


async def test_gzip_bomb(server: RunningServer) -> None:
    mb = 64
    inflated = mb * 1024 * 1024
    async with aiohttp.ClientSession(auto_decompress=False) as s:
        for _ in range(2):  # the second response comes from the cache
            async with s.get(server.url(f"/gzip-bomb/{mb}")) as r:
                assert r.status == 200
                assert r.headers["Content-Encoding"] == "gzip"
                length = r.content_length
                assert length is not None and length < inflated // 100
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                received = total = 0
                async for chunk in r.content.iter_chunked(64 * 1024):
                    received += len(chunk)
                    data = d.decompress(chunk, 1024 * 1024)
                    while True:
                        assert data.count(0) == len(data)
                        total += len(data)
                        if not d.unconsumed_tail:
                            break
                        data = d.decompress(d.unconsumed_tail, 1024 * 1024)
                tail = d.flush()
                assert tail.count(0) == len(tail)
                total += len(tail)
                assert d.eof and not d.unused_data
                assert received == length
                assert total == inflated
    # with the client's own decompression
    async with aiohttp.ClientSession() as s, s.get(server.url("/gzip-bomb/1")) as r:
        assert await r.read() == bytes(1024 * 1024)
    async with aiohttp.ClientSession() as s, s.get(server.url("/gzip-bomb/-1")) as r:
        assert r.status == 400
    assert server.state.errors == []


async def test_wrong_length(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        for declared, actual in ((1000, 100), (100, 0), (200_000, 150_000)):
            with pytest.raises(aiohttp.ClientPayloadError):
                async with s.get(server.url(f"/wrong-length/{declared}/{actual}")) as r:
                    assert r.status == 200
                    assert r.content_length == declared
                    await r.read()
        # more than declared: exactly `declared` bytes make up a complete response
        async with s.get(server.url("/wrong-length/100/1000")) as r:
            assert r.content_length == 100
            assert len(await r.read()) == 100
        async with s.get(server.url("/wrong-length/0/0")) as r:
            assert await r.read() == b""
        async with s.get(server.url("/ok/after")) as r:
            assert await r.text() == "ok after"
    assert server.state.errors == []


async def test_slow_first_byte(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        t0 = time.monotonic()
        async with s.get(server.url("/slow-first-byte/0.3")) as r:
            assert time.monotonic() - t0 >= 0.29  # the headers came after the sleep
            assert r.status == 200
            assert await r.text() == "slow"
        with pytest.raises(asyncio.TimeoutError):
            async with s.get(
                server.url("/slow-first-byte/5"), timeout=aiohttp.ClientTimeout(sock_read=0.2)
            ) as r:
                await r.read()


async def test_status_retry_after_every_time(server: RunningServer) -> None:
    http_date = "Wed, 21 Oct 2015 07:28:00 GMT"
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            async with s.get(server.url("/status-retry-after/503/120")) as r:
                assert r.status == 503
                assert r.headers["Retry-After"] == "120"
        url = _encoded(server.url("/status-retry-after/429/" + quote(http_date, safe="")))
        for _ in range(2):
            async with s.get(url) as r:
                assert r.status == 429
                assert r.headers["Retry-After"] == http_date
        async with s.get(server.url("/status-retry-after/200/-5")) as r:
            assert r.status == 200
            assert r.headers["Retry-After"] == "-5"
            assert await r.text() == "status 200"


@pytest.mark.parametrize(
    "target",
    [
        "http://other.example/x?y=1",
        "ftp://example.com/pub/file.bin",
        "http://10.0.0.1/admin",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/a?b=c%20d",
        "/ok/relative",
    ],
)
async def test_redirect_to_verbatim(server: RunningServer, target: str) -> None:
    async with (
        aiohttp.ClientSession() as s,
        s.get(server.url("/redirect-to"), params={"url": target}, allow_redirects=False) as r,
    ):
        assert r.status == 302
        assert r.headers["Location"] == target


async def test_redirect_to_code_and_bad_input(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        target = server.url("/ok/moved")
        async with s.get(server.url("/redirect-to"), params={"url": target, "code": "307"}) as r:
            assert await r.text() == "ok moved"
            assert [h.status for h in r.history] == [307]
        for params in ({}, {"url": target, "code": "200"}):
            async with s.get(server.url("/redirect-to"), params=params) as r:
                assert r.status == 400
    assert server.state.errors == []


async def test_robots_txt_and_private(server: RunningServer) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(server.url("/robots.txt")) as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            assert await r.text() == DEFAULT_ROBOTS_TXT == "User-agent: *\nDisallow: /private/\n"
        async with s.get(server.url("/private/doc.html")) as r:
            assert r.status == 200
            assert await r.text() == "secret"
        server.state.robots_txt = "User-agent: fetchshard\nDisallow: /\n"
        async with s.get(server.url("/robots.txt")) as r:
            assert await r.text() == "User-agent: fetchshard\nDisallow: /\n"
        server.state.robots_txt = None
        async with s.get(server.url("/robots.txt")) as r:
            assert r.status == 404
    assert [e["path"] for e in server.requests()] == [
        "/robots.txt",
        "/private/doc.html",
        "/robots.txt",
        "/robots.txt",
    ]


# --------------------------------------------------------------- raw TCP helpers


async def test_reset_server_counts_connections() -> None:
    with ResetServer() as rs:
        assert rs.url("/x") == f"http://127.0.0.1:{rs.port}/x"
        assert rs.connections == 0
        async with aiohttp.ClientSession() as s:
            for i in range(3):
                # POST: aiohttp retries an idempotent request (GET) once after a reset
                with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)):
                    async with s.post(rs.url(f"/x{i}")) as r:
                        await r.read()
        await _wait_for(lambda: rs.connections == 3)
        await asyncio.sleep(0.1)
        assert rs.connections == 3
        assert rs.running
    assert not rs.running
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", rs.port)):
        pass


async def test_closed_port_refuses() -> None:
    port = closed_port()
    async with aiohttp.ClientSession() as s:
        with pytest.raises(aiohttp.ClientConnectorError):
            async with s.get(f"http://127.0.0.1:{port}/ok/x") as r:
                await r.read()


# ----------------------------------------------------------------- many hosts


async def test_server_process_many_hosts() -> None:
    t0 = time.monotonic()
    with ServerProcess(hosts=50, robots_txt=None) as sp:
        started = time.monotonic() - t0
        assert len(set(sp.ports)) == 50
        async with aiohttp.ClientSession() as s:
            for i in (49, 0, 25):
                async with s.get(sp.url(f"/ok/h{i}", host=i)) as r:
                    assert await r.text() == f"ok h{i}"
            async with s.get(sp.url("/robots.txt", host=7)) as r:
                assert r.status == 404
        reqs = sp.requests()
        assert [(e["host_index"], e["port"]) for e in reqs] == [
            (i, sp.ports[i]) for i in (49, 0, 25, 7)
        ]
    assert started < 3
    assert time.monotonic() - t0 < 5
    assert sp.stderr_text() == ""


async def test_server_process_custom_robots() -> None:
    text = "User-agent: *\nDisallow: /\n"
    with ServerProcess(robots_txt=text) as sp:
        async with aiohttp.ClientSession() as s, s.get(sp.url("/robots.txt")) as r:
            assert await r.text() == text
