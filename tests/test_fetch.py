"""fetch.Client: proxies and netrc from the environment, read once per host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fetchshard.config import FetchConfig
from fetchshard.fetch import fetch, make_client
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
    async with make_client(CONFIG) as client:
        plain = await fetch(client, url, CONFIG)
        explicit = await fetch(client, url, CONFIG, headers={"Authorization": "Bearer t"})
    assert plain.body is not None and explicit.body is not None
    # base64("alice:s3cret")
    assert json.loads(plain.body)["Authorization"] == "Basic YWxpY2U6czNjcmV0"
    assert json.loads(explicit.body)["Authorization"] == "Bearer t"
