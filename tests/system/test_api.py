"""fetchshard from Python: run -> merge -> report as the README's "From Python" shows, checked
before any work, and without changing the caller's process."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import fetchshard
from fetchshard.errors import ConfigError, FetchshardError, UsageError
from server import ServerProcess
from util import assert_exactly_once, rows_by_url

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PORT = 8765  # examples/site.py's

# util.FAST as options: a loopback server need not wait for the embedded 10 req/s.
FAST = {
    "fetch.per_host_rate": 1000,
    "fetch.per_host_burst": 100,
    "fetch.retry_base_delay": 0.01,
    "fetch.final_pass_delay": 0.05,
    "run.progress_interval": 0.2,
}


def _urls(server: ServerProcess, tag: str) -> list[str]:
    images = [server.url(f"/image/{n}?w=32&h=24&t={tag}-{n}", host=n % 2) for n in range(12)]
    return images + [server.url(f"/status/404?t={tag}-404-{i}", host=2) for i in range(3)]


def _recorded(out: Path, rank: int = 0) -> list[str]:
    """The command rank ``rank`` recorded in its stats (the dataset card prints it)."""
    stats = json.loads((out / "stats" / f"rank-{rank:05d}.json").read_text())
    command: list[str] = stats["command"]
    return command


def _process_state() -> tuple[Any, ...]:
    logger = logging.getLogger("fetchshard")
    return (
        [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)],
        list(sys.meta_path),
        gc.get_threshold(),
        list(logger.handlers),
        logger.level,
    )


def test_run_merge_report_from_python(
    server_process: ServerProcess,
    url_file: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    url_file(_urls(server_process, "api"))
    before = _process_state()

    result = fetchshard.run("urls.txt", output="out", options=FAST)

    assert result == fetchshard.RunResult(
        complete=True,
        items=15,
        ok=12,
        failed=3,
        output=Path("out"),
        ranks=(0,),
        world_size=1,
    )
    assert (result.exit_code, result.pending) == (0, 0)
    assert assert_exactly_once(Path("out")) == 15
    assert _process_state() == before, "run() left the caller's process changed"

    merged = fetchshard.merge("out")
    assert merged == fetchshard.MergeResult(
        output=Path("out/merged"),
        finished=True,
        complete=True,
        ok=12,
        failed=3,
        missing=0,
        duplicates=0,
        files=merged.files,
        bytes=merged.bytes,
    )
    assert merged.files == 2 and merged.bytes > 0  # data/ and errors/
    assert "fetchshard.run urls.txt output=out fetch.per_host_rate=1000" in (
        Path("out/merged/README.md").read_text()
    )
    datasets = pytest.importorskip("datasets")
    train = datasets.load_dataset("out/merged", split="train", cache_dir=str(tmp_path / "hf"))
    assert train.num_rows == 12
    fetched = rows_by_url(Path("out"))
    assert {row["url"] for row in train} == {u for u, r in fetched.items() if r["status"] == "ok"}

    report = fetchshard.report("out")
    assert report.state == "done"
    assert (report.totals.planned, report.totals.ok, report.totals.failed) == (15, 12, 3)

    # Again: resumes, nothing to do; the subpackages imported meanwhile (merge/, report/)
    # have not replaced the functions of the same names.
    assert fetchshard.run("urls.txt", output="out", options=FAST).complete
    assert fetchshard.merge("out").ok == 12
    assert fetchshard.report("out").state == "done"


def test_options_as_a_mapping_keywords_and_ranks(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    """Nested sections and dotted keys alike; ranks=2 starts two rank processes, whose
    counts come back summed."""
    src = url_file(_urls(server_process, "api-ranks"))
    out = tmp_path / "out"
    options = {"fetch": {"per_host_rate": 1000, "per_host_burst": 100}, **FAST}
    result = fetchshard.run([src], output=out, ranks=2, options=options, max_in_flight=8)
    assert (result.complete, result.ranks, result.world_size) == (True, (0, 1), 2)
    assert (result.items, result.ok, result.failed) == (15, 12, 3)
    assert assert_exactly_once(out, world_size=2) == 15
    assert fetchshard.report(out).totals.committed == 15
    # each rank process records the call that launched it, not its own command line
    for rank in (0, 1):
        command = _recorded(out, rank)
        assert command[:5] == [
            "fetchshard.run",
            str(src),
            f"output={out}",
            "ranks=2",
            "max_in_flight=8",
        ]
        assert "fetch.per_host_burst=100" in command and "--rank" not in command


def test_inside_a_running_event_loop_the_rank_runs_in_a_child(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    """A notebook's cell runs inside the kernel's event loop, where the rank's own loop
    cannot start: the rank goes to a child process, and the result is the same."""
    src = url_file(_urls(server_process, "api-loop"))
    out = tmp_path / "out"

    async def cell() -> fetchshard.RunResult:
        return fetchshard.run(src, output=out, options=FAST)

    result = asyncio.run(cell())
    assert (result.complete, result.items, result.ok, result.failed) == (True, 15, 12, 3)
    assert assert_exactly_once(out) == 15
    assert _recorded(out)[:3] == ["fetchshard.run", str(src), f"output={out}"]


def test_the_rank_records_the_call_with_its_secrets_hidden(
    server_process: ServerProcess,
    url_file: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """From Python the recorded command is the call, not the caller's sys.argv (pytest's
    here, a notebook kernel's there), and a header's value is never written."""
    monkeypatch.chdir(tmp_path)
    url_file(_urls(server_process, "api-command")[:3])
    options = {**FAST, "fetch": {"headers": {"X-Api-Key": "sekrit-key"}}}
    assert fetchshard.run("urls.txt", output="out", retry_failed=True, options=options).complete
    assert _recorded(Path("out")) == [
        "fetchshard.run",
        "urls.txt",
        "output=out",
        "retry_failed=True",
        "fetch.per_host_rate=1000",
        "fetch.per_host_burst=100",
        "fetch.retry_base_delay=0.01",
        "fetch.final_pass_delay=0.05",
        "run.progress_interval=0.2",
        "fetch.headers=***",
    ]
    assert "sekrit-key" not in Path("out/stats/rank-00000.json").read_text()
    # a command line given is recorded as given, secrets hidden all the same
    given = ["fetchshard", "run", "urls.txt", "--set", "fetch.headers={X-Api-Key: sekrit-key}"]
    fetchshard.run("urls.txt", output="out", options=options, command=given)
    assert _recorded(Path("out")) == [*given[:-1], "fetch.headers=***"]


@pytest.mark.parametrize(
    ("command", "kwargs", "expected"),
    [
        ("run", {"options": {"fetch.per_host_rat": 3}}, "unknown key fetch.per_host_rat"),
        ("run", {"options": {"fetch": {"max_attempts": "x"}}}, "max_attempts: expected an int"),
        ("run", {"per_host_rate": -1}, "fetch.per_host_rate: must be greater than 0"),
        ("run", {"retry_failed": ["timout"]}, "unknown error kind 'timout'"),
        ("run", {"images": "verify", "resize": 64}, "--resize resizes images"),
        ("run", {"ranks": 2, "rank": 1}, "do not combine it with --rank"),
        ("run", {"config": "a.yaml"}, "at most one config file"),  # and b.yaml among the inputs
        ("plan", {"options": {"partition.spread": 4}}, "partition.spread must be auto"),
        ("merge", {"file_size": "lots"}, "expected a size like 500MB"),
        ("merge", {"format": "zip"}, "--format: must be one of"),
    ],
)
def test_a_bad_option_raises_config_error_before_any_work(
    command: str,
    kwargs: dict[str, Any],
    expected: str,
    url_file: Callable[..., Path],
    tmp_path: Path,
) -> None:
    src, out = url_file(["http://127.0.0.1:9/x"]), tmp_path / "out"
    args: tuple[Any, ...] = (out,) if command == "merge" else (src,)
    if "config" in kwargs:
        args += (tmp_path / "b.yaml",)
    if command != "merge":
        kwargs = {"output": out, **kwargs}
    with pytest.raises(ConfigError, match=expected) as raised:
        getattr(fetchshard, command)(*args, **kwargs)
    assert raised.value.exit_code == 2
    assert not out.exists(), "work started despite a bad option"


def test_no_input_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no input"):
        fetchshard.run(output=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_errors_are_of_the_one_tree(tmp_path: Path) -> None:
    with pytest.raises(FetchshardError) as raised:
        fetchshard.report(tmp_path)  # not an output folder
    assert raised.value.exit_code == 2
    with pytest.raises(FetchshardError, match=r"no run\.json"):
        fetchshard.merge(tmp_path)


def test_from_a_thread_a_usage_error(url_file: Callable[..., Path], tmp_path: Path) -> None:
    """The stop signals reach the main thread only, where a rank must handle them."""
    raised: list[BaseException] = []

    def work() -> None:
        try:
            fetchshard.run(url_file(["http://127.0.0.1:9/x"]), output=tmp_path / "out")
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert len(raised) == 1 and isinstance(raised[0], UsageError), raised
    assert raised[0].exit_code == 2 and "main thread" in str(raised[0])
    assert not (tmp_path / "out").exists()


def test_import_is_light() -> None:
    """``import fetchshard`` loads the package alone; a function loads its module when used."""
    code = (
        "import sys; import fetchshard; "
        "print(sorted(m for m in sys.modules if m.startswith('fetchshard') or m == 'typer')); "
        "fetchshard.report; print('fetchshard.api' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split("\n")[:2] == ["['fetchshard']", "True"], done.stdout


def _readme_block(heading: str) -> str:
    """The first indented code block under ``heading`` in the README."""
    lines = (ROOT / "README.md").read_text().split(heading + "\n", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    block = []
    for line in lines[start:]:
        if line.strip() and not line.startswith("    "):
            break
        block.append(line)
    return textwrap.dedent("\n".join(block))


def _port_free() -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", EXAMPLE_PORT)) != 0


@pytest.mark.skipif(not _port_free(), reason=f"port {EXAMPLE_PORT} is in use on this machine")
def test_readme_from_python_as_written(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    code = _readme_block("### From Python")
    assert "fetchshard.run(" in code and "fetchshard.merge(" in code
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    site = subprocess.Popen([sys.executable, str(tmp_path / "examples" / "site.py")])
    try:
        deadline = time.monotonic() + 15
        while _port_free():
            assert time.monotonic() < deadline and site.poll() is None, "site did not start"
            time.sleep(0.05)
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=tmp_path,
            env={**os.environ, "HF_HOME": str(tmp_path / "hf")},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        site.terminate()
        site.wait(timeout=10)
    assert done.returncode == 0, done.stderr
    printed = [line for line in code.splitlines() if line.startswith("# RunResult")]
    assert done.stdout.splitlines() == [printed[0][2:], "done 26 3"]
