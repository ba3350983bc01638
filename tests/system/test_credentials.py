"""Credentials stay with their origin (issue 29): server A redirects to server B, a loopback
host on another port; B never sees A's secrets, A sees them on every request, and no secret
is written anywhere a run, its report, its merge or a retry writes."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from server import ServerProcess
from util import FAST, cli, fetchshard_cmd, rows_by_url

TOKEN = "tok-7f3a9c1e5b"  # unique strings, searched for in every file afterwards
COOKIE = "ck-4d8e2b6a0f"
API_KEY = "key-9b1c7e3d5a"
NETRC_PASSWORD = "npw-2e6a8c4f1b"
URL_PASSWORD = "upw-5c3e1a9d7b"
PROXY_PASSWORD = "ppw-8a2c6e4b0d"
SECRETS = (TOKEN, COOKIE, API_KEY, NETRC_PASSWORD, URL_PASSWORD, PROXY_PASSWORD)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Two loopback hosts on 127.0.0.1, on two ports: A (host 0) and B (host 1)."""
    log = tmp_path_factory.mktemp("pair") / "requests.jsonl"
    with ServerProcess(hosts=2, log_path=log) as proc:
        yield proc


def _origin(server: ServerProcess, host: int) -> str:
    return server.url("/", host=host).rstrip("/")


def _chains(server: ServerProcess, tag: str, a: str | None = None) -> list[str]:
    """From A: a redirect to B, a same-origin redirect chain, a plain fetch."""
    a = a or _origin(server, 0)
    to_b = quote(server.url(f"/ok/b?t={tag}-b", host=1), safe="")
    return [
        f"{a}/redirect-to?url={to_b}&code=302&t={tag}-ab",
        f"{a}/redirect/2?t={tag}-aa",
        f"{a}/ok/a?t={tag}-a",
    ]


def _seen(server: ServerProcess, since: int) -> dict[int, list[dict[str, str]]]:
    """The credential headers of each request since the ``since``-th, by host (0: A, 1: B)."""
    out: dict[int, list[dict[str, str]]] = {0: [], 1: []}
    for r in server.requests()[since:]:
        out[r["host_index"]].append(r["credentials"])
    return out


def _run(tmp_path: Path, name: str, urls: list[str], config: dict[str, Any]) -> Path:
    (tmp_path / f"{name}.txt").write_text("".join(u + "\n" for u in urls))
    out = tmp_path / name
    config = {**config, "input": {"paths": [f"{name}.txt"]}, "output": {"dir": str(out)}}
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(yaml.safe_dump(config))
    result = cli("run", str(cfg), *FAST)
    assert result.exit_code == 0, result.output
    rows = rows_by_url(out)
    assert len(rows) == len(urls) and {r["status"] for r in rows.values()} == {"ok"}, rows
    return out


def _check(
    server: ServerProcess, since: int, at_a: dict[str, str], at_b: dict[str, str] | None = None
) -> None:
    seen = _seen(server, since)
    assert len(seen[0]) == 6 and len(seen[1]) == 1, seen  # A: 1 + 4 (same origin) + 1; B: 1
    for creds in seen[0]:
        assert creds == at_a, creds
    assert seen[1] == [at_b or {}], seen[1]


def test_host_headers_stay_with_their_host(pair: ServerProcess, tmp_path: Path) -> None:
    since = len(pair.requests())
    a_host = _origin(pair, 0).split("//")[1]
    secrets = {"Authorization": f"Bearer {TOKEN}", "Cookie": f"session={COOKIE}"}
    config = {"fetch": {"hosts": {a_host: {"headers": secrets}}}}
    _run(tmp_path, "hosts", _chains(pair, "c1"), config)
    _check(pair, since, secrets)


def test_global_headers_secrets_go_to_the_first_origin_only(
    pair: ServerProcess, tmp_path: Path
) -> None:
    since = len(pair.requests())
    headers = {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY, "X-Trace": "trace-1"}
    _run(tmp_path, "global", _chains(pair, "c2"), {"fetch": {"headers": headers}})
    _check(pair, since, headers, {"X-Trace": "trace-1"})  # not a secret: every hop


def test_netrc_by_the_hops_own_host_and_port(
    pair: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login alice password {NETRC_PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    since = len(pair.requests())
    _run(tmp_path, "by-netrc", _chains(pair, "c3"), {})
    basic = "Basic " + base64.b64encode(f"alice:{NETRC_PASSWORD}".encode()).decode()
    # A and B share the name; B's port is neither a default one nor the input URL's
    _check(pair, since, {"Authorization": basic})


def test_url_userinfo_only_to_its_own_origin(pair: ServerProcess, tmp_path: Path) -> None:
    a = _origin(pair, 0).replace("://", f"://bob:{URL_PASSWORD}@")
    since = len(pair.requests())
    out = _run(tmp_path, "userinfo", _chains(pair, "c4", a), {})
    basic = "Basic " + base64.b64encode(f"bob:{URL_PASSWORD}".encode()).decode()
    _check(pair, since, {"Authorization": basic})
    for url, row in rows_by_url(out).items():  # the rows say which URL, not its password
        assert URL_PASSWORD not in url and URL_PASSWORD not in (row["final_url"] or "")


def _files_under(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        yield from (p for p in folder.rglob("*") if p.is_file())


def _leaks(files: Iterator[Path], secrets: tuple[str, ...], also: str = "") -> list[str]:
    found = []
    for path in files:
        data = path.read_bytes()
        found += [f"{path}: {s}" for s in secrets if s.encode() in data]
    found += [f"output: {s}" for s in secrets if s in also]
    return found


def test_no_secret_is_written_by_a_run_its_report_merge_and_retry(
    pair: ServerProcess, tmp_path: Path
) -> None:
    a_host = _origin(pair, 0).split("//")[1]
    a_userinfo = _origin(pair, 0).replace("://", f"://carol:{URL_PASSWORD}@")
    urls = [
        *_chains(pair, "c5"),
        f"{a_userinfo}/ok/u?t=c5-u",
        f"{a_userinfo}/status/404?t=c5-404",  # failures: messages, samples, the report's hosts
        f"{_origin(pair, 0)}/status/500?t=c5-500",
        f"http://dave:{URL_PASSWORD}@127.0.0.1:1/x?t=c5-refused",
    ]
    (tmp_path / "urls.txt").write_text("".join(u + "\n" for u in urls))
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login alice password {NETRC_PASSWORD}\n")
    netrc.chmod(0o600)
    config = {
        "input": {"paths": ["urls.txt"]},
        "output": {"dir": "out"},
        "fetch": {
            "headers": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY},
            "hosts": {a_host: {"headers": {"Cookie": f"session={COOKIE}"}}},
            "max_attempts": 1,
            "final_pass_attempts": 0,
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out, merged = tmp_path / "out", tmp_path / "merged"
    env = {
        "NETRC": str(netrc),
        "HTTP_PROXY": f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:1",  # bypassed: NO_PROXY
        "NO_PROXY": "127.0.0.1,localhost",
    }
    on_the_command_line = ["--set", f"fetch.headers={{X-Trace: t, X-Api-Key: {API_KEY}}}"]
    printed = ""

    def run(*args: str, code: int = 0) -> None:
        nonlocal printed
        proc = subprocess.run(
            fetchshard_cmd(*args),
            cwd=tmp_path,
            env={**_environ(), **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == code, proc.stderr
        printed += proc.stdout + proc.stderr

    run("run", "config.yaml", *FAST, "--set", "run.log_level=debug")
    rows = rows_by_url(out)
    assert sum(r["status"] == "failed" for r in rows.values()) == 3, rows
    run("report", str(out))
    run("report", str(out), "--json")
    run("report", str(out), "--html", str(tmp_path / "report.html"))
    run("merge", str(out), "-o", str(merged))
    # a rotated token is the same run: the retry resumes it (the fingerprint has no secret)
    rotated = yaml.safe_dump(config).replace(TOKEN, TOKEN + "-rotated")
    (tmp_path / "config.yaml").write_text(rotated)
    run("run", "config.yaml", *FAST, *on_the_command_line, "--retry-failed", "all")
    run("merge", str(out), "-o", str(merged))
    run("report", str(out), "--json")
    stats = json.loads((out / "stats" / "rank-00000.json").read_text())
    assert stats["settings"]["fetch"]["headers"] == {"X-Trace": "***", "X-Api-Key": "***"}
    assert "fetch.headers=***" in stats["command"]

    written = [*_files_under(out, merged), tmp_path / "report.html"]
    # The ledger keeps each input URL as given (it fetches them from it): their userinfo too.
    outside_ledger = [p for p in written if "ledger" not in p.relative_to(tmp_path).parts]
    configured = tuple(s for s in SECRETS if s != URL_PASSWORD)
    assert not _leaks(iter(written), configured, printed)
    assert not _leaks(iter(outside_ledger), (URL_PASSWORD,), printed)
    assert (out / "logs" / "rank-00000.log").stat().st_size > 0
    assert "***@127.0.0.1" in json.dumps(rows_by_url(out), default=str)


def _environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
