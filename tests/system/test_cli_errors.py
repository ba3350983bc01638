"""Bad configuration and bad input: one clear line, exit 2, before any work starts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from server import ServerProcess
from util import FAST, cli, rows_by_url


def _one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("fetchshard: error: "), output
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "fetch.per_host_rat=3"], "unknown key fetch.per_host_rat"),
        (["--set", "fetch.max_attempts=three"], "fetch.max_attempts: expected an integer"),
        (["--per-host-rate", "-1"], "fetch.per_host_rate: must be greater than 0"),
        (["--set", "nosuch.key=1"], "unknown section 'nosuch'"),
        (["--set", "input.format=xml"], "input.format: must be one of"),
        (["--set", "fetch.headers=5"], "fetch.headers: expected a mapping"),
        (["--set", "run.retry_failed=[nope]"], "run.retry_failed: unknown error kind 'nope'"),
        (["--retry-failed", "timout"], "'timout' is neither an error kind nor an input"),
        (["--resize", "0"], "images.image_size: must be greater than 0"),
        (["--images", "thumbnails"], "images.mode: must be one of off, verify, resize"),
        (["--images", "verify", "--resize", "64"], "--resize resizes images; it does not go"),
        (["--resize", "64", "--resize-mode", "fit"], "images.resize_mode: must be one of no"),
    ],
)
def test_bad_option_is_one_line_and_exit_2(
    args: list[str], expected: str, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = cli("run", str(url_file(["http://127.0.0.1:9/x"])), "-o", str(out), *args)
    assert result.exit_code == 2
    assert expected in _one_error_line(result.output)
    assert not out.exists(), "work started despite a bad option"


def test_bad_environment_variable(url_file: Callable[..., Path], tmp_path: Path) -> None:
    result = cli(
        "run",
        str(url_file(["http://127.0.0.1:9/x"])),
        "-o",
        str(tmp_path / "o"),
        env={"FETCHSHARD_FETCH_PER_HOST_RATE": "fast"},
    )
    assert result.exit_code == 2
    assert "fetch.per_host_rate: expected a number" in _one_error_line(result.output)


def test_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("input:\n  paths: [urls.txt]\nfetch:\n  retries: 3\n")
    result = cli("run", str(config))
    assert result.exit_code == 2
    assert "unknown key fetch.retries" in _one_error_line(result.output)
    config.write_text("fetch: [unclosed\n")
    result = cli("run", str(config))
    assert result.exit_code == 2
    assert "config.yaml line" in _one_error_line(result.output)
    result = cli("run", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2
    assert "config file not found" in _one_error_line(result.output)


def test_missing_input_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = cli("run", str(tmp_path / "nope.txt"), "-o", str(out))
    assert result.exit_code == 2
    assert "nope.txt" in _one_error_line(result.output)
    assert not out.exists()


def test_missing_url_column(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    src.write_text("link,caption\nhttp://127.0.0.1:9/a,x\n")
    result = cli("run", str(src), "-o", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "url" in _one_error_line(result.output)


def test_output_of_another_run_is_refused_until_restart(
    server_process: ServerProcess, url_file: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    first = url_file([server_process.url("/ok/other-run-a")], name="a.txt")
    second = url_file([server_process.url("/ok/other-run-b")], name="b.txt")
    assert cli("run", str(first), "-o", str(out), *FAST).exit_code == 0
    refused = cli("run", str(second), "-o", str(out), *FAST)
    assert refused.exit_code == 2
    line = _one_error_line(refused.output)
    assert "different run" in line and "--restart" in line
    # Another world size is no other run: a new generation (here with nothing left to do).
    world = cli("run", str(first), "-o", str(out), "--rank", "0", "--world-size", "2", *FAST)
    assert world.exit_code == 0, world.output
    assert (out / "gen-0001" / "done" / "rank-00000").exists()
    restarted = cli("run", str(second), "-o", str(out), "--restart", *FAST)
    assert restarted.exit_code == 0, restarted.output
    assert list(rows_by_url(out)) == [server_process.url("/ok/other-run-b")]
    assert not (out / "gen-0001").exists()  # --restart starts over as one generation


def test_rank_flags_must_come_together(url_file: Callable[..., Path], tmp_path: Path) -> None:
    result = cli(
        "run", str(url_file(["http://127.0.0.1:9/x"])), "-o", str(tmp_path / "o"), "--rank", "1"
    )
    assert result.exit_code == 2
    assert "--rank and --world-size" in _one_error_line(result.output)


def test_sbatch_without_srun_is_refused(url_file: Callable[..., Path], tmp_path: Path) -> None:
    result = cli(
        "run",
        str(url_file(["http://127.0.0.1:9/x"])),
        "-o",
        str(tmp_path / "o"),
        env={"SLURM_JOB_ID": "42", "SLURM_NTASKS": "8", "SLURM_PROCID": "0"},
    )
    assert result.exit_code == 2
    assert "srun" in _one_error_line(result.output)


def test_bad_urls_become_failed_rows(server_process: ServerProcess, tmp_path: Path) -> None:
    good = server_process.url("/ok/bad-urls-good")
    src = tmp_path / "urls.txt"
    long_url = "http://127.0.0.1/" + "a" * 5000
    src.write_bytes(
        b"\n".join(
            [
                good.encode(),
                b"http://127.0.0.1:9/\xff\xfe-not-utf8",
                b"javascript:alert(1)",
                b"http://",
                b"http://exa mple.org/",
                long_url.encode(),
                b"",
            ]
        )
    )
    out = tmp_path / "out"
    result = cli("run", str(src), "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    rows = list(rows_by_url(out).values())
    assert len(rows) == 6
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == 5
    assert {r["error_kind"] for r in failed} == {"bad_url"}
    assert all(r["error_message"] for r in failed)
    assert [r["url"] for r in rows if r["status"] == "ok"] == [good]
