"""redact.py: which options hold secrets, and a command line fit to write."""

from __future__ import annotations

import pytest

from fetchshard.redact import REDACTED, redact_command, secret_option


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("fetch.headers", True),
        (" fetch.hosts ", True),
        ("fetch.headers.Authorization", True),
        ("fetch.headers_extra", False),
        ("fetch.per_host_rate", False),
        ("headers", False),
    ],
)
def test_secret_options(name: str, secret: bool) -> None:
    assert secret_option(name) is secret


def test_a_command_line_keeps_all_but_its_secrets() -> None:
    argv = [
        "fetchshard",
        "run",
        "https://user:pw@host/urls.txt",
        "--set",
        "fetch.headers={Authorization: Bearer t}",
        "--set=fetch.hosts=[{pattern: a, headers: {X: y}}]",
        "--set",
        "fetch.per_host_rate=5",
    ]
    assert redact_command(argv) == [
        "fetchshard",
        "run",
        f"https://{REDACTED}@host/urls.txt",
        "--set",
        f"fetch.headers={REDACTED}",
        f"--set=fetch.hosts={REDACTED}",
        "--set",
        "fetch.per_host_rate=5",
    ]
    assert redact_command(redact_command(argv)) == redact_command(argv)


def test_a_hub_token_never_stays_on_a_command_line() -> None:
    argv = ["fetchshard", "run", "hf://ns/x", "--token", "hf_secret", "--token=hf_other"]
    argv += ["--set", "hub.token=hf_third"]
    shown = redact_command(argv)
    assert shown == [
        "fetchshard",
        "run",
        "hf://ns/x",
        "--token",
        REDACTED,
        f"--token={REDACTED}",
        "--set",
        f"hub.token={REDACTED}",
    ]
    assert redact_command(shown) == shown


def test_a_hub_token_in_the_settings_is_hidden() -> None:
    from fetchshard.config import Config, HubConfig, to_plain

    plain = to_plain(Config(hub=HubConfig(token="hf_secret", endpoint="http://h")))
    assert plain["hub"] == {"endpoint": "http://h", "token": REDACTED, "rate": None}
