"""Each command parses its options, calls its one library function (fetchshard.api) and renders
the answer: no second code path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from fetchshard import api
from fetchshard.errors import ConfigError, RankFailedError
from util import cli

Calls = list[tuple[tuple[Any, ...], dict[str, Any]]]


def _replace(monkeypatch: pytest.MonkeyPatch, name: str, answer: object) -> Calls:
    """``api.<name>`` records its calls and returns (or raises) ``answer``."""
    calls: Calls = []

    def fake(*args: Any, **kwargs: Any) -> object:
        calls.append((args, kwargs))
        if isinstance(answer, BaseException):
            raise answer
        return answer

    monkeypatch.setattr(api, name, fake)
    return calls


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def test_run(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = api.RunResult(
        complete=False, items=3, ok=1, failed=1, output=Path("out"), ranks=(0,), world_size=1
    )
    calls = _replace(monkeypatch, "run", stopped)
    result = cli(
        "run",
        "urls.txt",
        "-o",
        "out",
        "--ranks",
        "2",
        "--per-host-rate",
        "5",
        "--set",
        "fetch.max_attempts=5",
        "--retry-failed",
        "http_5xx",
        "--resize",
        "64",
    )
    assert result.exit_code == 75  # the result's exit_code: interrupted
    [(args, kwargs)] = calls
    assert args == ("urls.txt",)
    assert kwargs["options"] == {"fetch.max_attempts": 5}
    assert (kwargs["output"], kwargs["ranks"], kwargs["per_host_rate"]) == ("out", 2, 5.0)
    assert (kwargs["retry_failed"], kwargs["resize"]) == (["http_5xx"], 64)
    assert kwargs["log_to_stderr"] is True

    calls.clear()
    assert cli("run", "urls.txt", "--retry-failed").exit_code == 75
    assert calls[0][1]["retry_failed"] is True  # no kinds named: the transient ones


def test_run_renders_an_error_as_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    _replace(monkeypatch, "run", ConfigError("fetch.per_host_rate: must be greater than 0"))
    result = cli("run", "urls.txt")
    assert result.exit_code == 2
    assert result.output == "fetchshard: error: fetch.per_host_rate: must be greater than 0\n"
    _replace(monkeypatch, "run", RankFailedError("1 of 2 ranks failed: rank 1 exited 1"))
    assert cli("run", "urls.txt", "--ranks", "2").exit_code == 1


def test_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    done = api.PlanResult(complete=True, output=Path("out"), ranks=(0, 1), world_size=2, slices=())
    calls = _replace(monkeypatch, "plan", done)
    assert cli("plan", "config.yaml", "--ranks", "2", "--set", "input.batch_rows=10").exit_code == 0
    [(args, kwargs)] = calls
    assert args == ("config.yaml",)
    assert (kwargs["ranks"], kwargs["options"]) == (2, {"input.batch_rows": 10})


def test_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    merged = api.MergeResult(
        output=Path("out/merged"),
        finished=True,
        complete=True,
        ok=5,
        failed=1,
        missing=0,
        duplicates=2,
        files=2,
        bytes=1_500_000,
    )
    calls = _replace(monkeypatch, "merge", merged)
    result = cli("merge", "out", "--file-size", "1GB", "--format", "webdataset", "--caption", "c")
    assert result.exit_code == 0
    assert result.output == (
        "out/merged: complete, 5 ok and 1 failed rows in 2 files (1.5 MB); 2 duplicates left out\n"
    )
    [(args, kwargs)] = calls
    assert args == ("out",)
    assert (kwargs["file_size"], kwargs["format"], kwargs["caption"]) == ("1GB", "webdataset", "c")


def test_report(monkeypatch: pytest.MonkeyPatch) -> None:
    document = SimpleNamespace(to_bytes=lambda: b'{"kind": "report"}\n', state="done")
    calls = _replace(monkeypatch, "report", document)
    result = cli("report", "out", "--json")
    assert result.exit_code == 0
    assert result.output == '{"kind": "report"}\n'
    assert calls == [(("out",), {"html": None, "s3_endpoint": None, "s3_region": None})]


def test_a_stop_after_the_command_ended_does_not_kill_the_process() -> None:
    """A --ranks launcher may forward SIGTERM to a rank that has just finished: while Python
    shuts down it puts the default handlers back (simulated here), and the process would die
    of it (-15) instead of exiting with its own code."""
    code = (
        "import os, signal, sys\n"
        "from fetchshard.cli import main\n"
        "sys.argv = ['fetchshard', '--version']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    status = exc.code\n"
        "for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):\n"
        "    signal.signal(sig, signal.SIG_DFL)  # as the interpreter's shutdown does\n"
        "    os.kill(os.getpid(), sig)\n"
        "print('exited with', status)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "exited with 0"
