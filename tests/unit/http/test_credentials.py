"""hop_headers: which configured headers each hop of a redirect chain carries (no network)."""

from __future__ import annotations

import base64

import pytest
from yarl import URL

from fetchshard.config import FetchConfig, HostOverride
from fetchshard.http.credentials import HeaderRules, hop_headers, is_secret

CONFIG = FetchConfig(
    headers={"Accept-Language": "en", "Authorization": "Bearer global", "X-Trace": "t1"},
    hosts={
        "api.example.org": HostOverride(
            headers={"Authorization": "Bearer api", "Cookie": "s=api", "X-Client": "fs"}
        ),
        "files.example.org:8443": HostOverride(headers={"X-Api-Key": "k-files"}),
        "*.cdn.example": HostOverride(headers={"X-Tenant": "secret-tenant"}),
    },
    secret_headers=("X-Tenant",),
)
RULES = HeaderRules.from_config(CONFIG)
PUBLIC = {"Accept-Language": "en", "X-Trace": "t1"}


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _netrc(host: str) -> str | None:
    return {"netrc.example": _basic("n", "pw"), "api.example.org": _basic("na", "npw")}.get(host)


CASES: list[tuple[str, list[str], dict[str, str]]] = [
    # --- fetch.headers: non-secrets everywhere, secrets only to the input URL's origin
    ("first hop", ["https://other.example/a"], {**PUBLIC, "Authorization": "Bearer global"}),
    (
        "same origin",
        ["https://other.example/a", "https://other.example/b"],
        {**PUBLIC, "Authorization": "Bearer global"},
    ),
    (
        "relative Location (joined: same origin)",
        ["https://other.example/a/b", "https://other.example/a/c"],
        {**PUBLIC, "Authorization": "Bearer global"},
    ),
    ("other host", ["https://other.example/a", "https://evil.example/a"], PUBLIC),
    ("other port", ["https://other.example/a", "https://other.example:8443/a"], PUBLIC),
    ("scheme downgrade", ["https://other.example/a", "http://other.example/a"], PUBLIC),
    (
        "upgrade to https on the default ports",
        ["http://other.example/a", "https://other.example/a"],
        {**PUBLIC, "Authorization": "Bearer global"},
    ),
    (
        "upgrade to another port is another origin",
        ["http://other.example/a", "https://other.example:8443/a"],
        PUBLIC,
    ),
    (
        "back at the first origin after another",
        ["https://other.example/a", "https://evil.example/a", "https://other.example/b"],
        {**PUBLIC, "Authorization": "Bearer global"},
    ),
    (
        "http after https on the host, even the input's own origin",
        ["http://other.example/a", "https://other.example/a", "http://other.example/a"],
        PUBLIC,
    ),
    # --- a host's own entry: the host being asked, whoever sent us there
    (
        "host entry, first hop (wins over fetch.headers)",
        ["https://api.example.org/v1"],
        {**PUBLIC, "Authorization": "Bearer api", "Cookie": "s=api", "X-Client": "fs"},
    ),
    (
        "host entry left for another host",
        ["https://api.example.org/v1", "https://cdn.example.net/blob"],
        PUBLIC,
    ),
    (
        "redirected into an entry's host: its own headers, not the input's",
        ["https://other.example/a", "https://api.example.org/v1"],
        {**PUBLIC, "Authorization": "Bearer api", "Cookie": "s=api", "X-Client": "fs"},
    ),
    (
        "entry without a port, redirected to another port: public headers only",
        ["https://api.example.org/v1", "https://api.example.org:9000/v1"],
        {**PUBLIC, "X-Client": "fs"},
    ),
    (
        "entry without a port, the input names the port",
        ["https://api.example.org:9000/v1"],
        {**PUBLIC, "Authorization": "Bearer api", "Cookie": "s=api", "X-Client": "fs"},
    ),
    (
        "entry downgraded to http",
        ["https://api.example.org/v1", "http://api.example.org/v1"],
        {**PUBLIC, "X-Client": "fs"},
    ),
    (
        "entry with a port, at that port",
        ["https://other.example/a", "https://files.example.org:8443/f"],
        {**PUBLIC, "X-Api-Key": "k-files"},
    ),
    (
        "entry with a port, at the default port: not that entry",
        ["https://files.example.org/f"],
        {**PUBLIC, "Authorization": "Bearer global"},
    ),
    (
        "a header the user marked secret (wildcard entry)",
        ["https://x.cdn.example/a", "https://y.cdn.example/a"],
        {**PUBLIC, "X-Tenant": "secret-tenant"},
    ),
    # --- URL userinfo: its own origin only, most specific of all
    (
        "userinfo, first hop",
        ["https://u:p@api.example.org/v1"],
        {**PUBLIC, "Authorization": _basic("u", "p"), "Cookie": "s=api", "X-Client": "fs"},
    ),
    (
        "userinfo kept by a relative redirect",
        ["https://u:p@other.example/a", "https://u:p@other.example/b"],
        {**PUBLIC, "Authorization": _basic("u", "p")},
    ),
    (
        "userinfo to the same origin without it in Location",
        ["https://u:p@other.example/a", "https://other.example/b"],
        {**PUBLIC, "Authorization": _basic("u", "p")},
    ),
    ("userinfo not to another host", ["https://u:p@other.example/a", "https://e.example/"], PUBLIC),
    (
        "userinfo not to another port",
        ["http://u:p@other.example:8080/a", "http://other.example:8081/"],
        PUBLIC,
    ),
    (
        "a Location's own userinfo goes to its own origin",
        ["https://other.example/a", "https://v:q@e.example/"],
        {**PUBLIC, "Authorization": _basic("v", "q")},
    ),
]


@pytest.mark.parametrize(("case", "chain", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hop_headers(case: str, chain: list[str], expected: dict[str, str]) -> None:
    assert hop_headers(RULES, [URL(u) for u in chain]) == expected


NETRC_CASES: list[tuple[str, list[str], str | None]] = [
    ("its host", ["https://netrc.example/a"], _basic("n", "pw")),
    (
        "its host, whoever sent us there",
        ["https://other.example/a", "https://netrc.example/b"],
        _basic("n", "pw"),
    ),
    ("not another host", ["https://netrc.example/a", "https://other.example/a"], None),
    ("not another port", ["https://netrc.example/a", "https://netrc.example:81/a"], None),
    ("not after a downgrade", ["https://netrc.example/a", "http://netrc.example/a"], None),
    ("a host entry wins", ["https://api.example.org/v1"], "Bearer api"),
]


@pytest.mark.parametrize(("case", "chain", "auth"), NETRC_CASES, ids=[c[0] for c in NETRC_CASES])
def test_netrc_by_the_hops_own_host(case: str, chain: list[str], auth: str | None) -> None:
    rules = HeaderRules.from_config(FetchConfig(hosts=CONFIG.hosts))
    assert hop_headers(rules, [URL(u) for u in chain], _netrc).get("Authorization") == auth


def test_names_that_are_secrets() -> None:
    for name in ("Authorization", "proxy-authorization", "Cookie", "X-Api-Key", "X-Auth-Token"):
        assert is_secret(name), name
    for name in ("Accept", "Accept-Language", "X-Trace", "Referer", "User-Agent"):
        assert not is_secret(name), name
    assert is_secret("X-Tenant", frozenset({"x-tenant"}))


def test_header_names_are_not_repeated_in_another_case() -> None:
    rules = HeaderRules.from_config(
        FetchConfig(
            headers={"authorization": "Bearer g"},
            hosts={"a.example": HostOverride(headers={"AUTHORIZATION": "Bearer a"})},
        )
    )
    assert hop_headers(rules, [URL("https://a.example/")]) == {"AUTHORIZATION": "Bearer a"}
