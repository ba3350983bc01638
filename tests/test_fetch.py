"""fetch.Client: proxies and netrc from the environment, read once per host."""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import pytest
from yarl import URL

from fetchshard.config import FetchConfig
from fetchshard.fetch import _PLAIN_URL, fetch, make_client, request_url
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
