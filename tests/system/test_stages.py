"""The stage hook between fetch and write, through a real rank against a loopback server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from fetchshard.config import Config, load_config
from fetchshard.engine.rank import run_rank
from fetchshard.errors import RunError
from fetchshard.output.columns import Column, ResultRow
from fetchshard.ranks import RankInfo
from server import ServerProcess
from util import assert_exactly_once, read_rows

ONE = RankInfo(0, 1, "test")


class BodyLength:
    """A stage that adds a column, after awaiting (as work in a pool would)."""

    name = "body_length"
    columns = (Column("body_length", pa.int64()),)
    depth = 16

    def __init__(self, fail_on: str | None = None) -> None:
        self.seen: list[str] = []
        self.closed = False
        self._fail_on = fail_on

    async def process(self, row: ResultRow) -> ResultRow:
        await asyncio.sleep(0.005)
        if self._fail_on is not None and self._fail_on in row.url:
            raise ValueError("a bug in the stage")
        self.seen.append(row.url)
        if row.body is not None:
            row.more = {"body_length": len(row.body)}
        return row

    async def aclose(self) -> None:
        self.closed = True


def config_for(src: Path, out: Path) -> Config:
    return load_config(
        None,
        environ={},
        overrides={
            "input.paths": [str(src)],
            "output.dir": str(out),
            "output.part_max_rows": 7,
            "fetch.per_host_rate": 1000,
            "fetch.per_host_burst": 100,
            "fetch.max_attempts": 1,
            "fetch.final_pass_attempts": 0,
        },
    )


def inputs(tmp_path: Path, srv: ServerProcess, n: int) -> Path:
    src = tmp_path / "in.csv"
    lines = ["url,body_length"]
    lines += [f"{srv.url(f'/ok/s{i}?size={100 + i}', host=i % 2)},{i}" for i in range(n)]
    lines += [f"{srv.url('/status/404')},x", "not a url,y"]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def test_a_stage_fills_its_column_and_sees_only_fetched_rows(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    src, out = inputs(tmp_path, server_process, 40), tmp_path / "out"
    stage = BodyLength()
    outcome = run_rank(config_for(src, out), ONE, stages=(stage,))
    assert outcome.complete and stage.closed
    table = read_rows(out)
    assert table.schema.names[-2:] == ["body_length", "body"]
    assert "input_body_length" in table.schema.names  # the input's column, renamed
    rows = {r["url"]: r for r in table.to_pylist()}
    assert len(rows) == 42 and assert_exactly_once(out) == 42
    for url, r in rows.items():
        if r["status"] == "ok":
            assert r["body_length"] == len(r["body"]) == r["size"], url
        else:
            assert r["body_length"] is None
    assert len(stage.seen) == 41  # the 404 went through it, the bad URL did not
    assert rows["not a url"]["error_kind"] == "bad_url"


def test_a_failing_stage_stops_the_rank_and_a_rerun_completes_exactly_once(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    src, out = inputs(tmp_path, server_process, 30), tmp_path / "out"
    with pytest.raises(RunError, match="a bug in the stage"):
        run_rank(config_for(src, out), ONE, stages=(BodyLength(fail_on="/ok/s17"),))
    assert run_rank(config_for(src, out), ONE, stages=(BodyLength(),)).complete
    assert assert_exactly_once(out) == 32
    rows = {r["url"]: r for r in read_rows(out).to_pylist()}
    assert all(r["body_length"] == r["size"] for r in rows.values() if r["status"] == "ok")
