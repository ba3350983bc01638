"""The merge plan: where the cutter closes files, which rows are current, the survey's weights."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fetchshard.merging.plan import (
    BODY_BINARY,
    BODY_IMAGE,
    DATA,
    ERRORS,
    OutputFile,
    Piece,
    Targets,
    _Cutter,
    _decodable_image,
    _survey,
    make_plan,
    selected,
)
from fetchshard.merging.sources import SourcePart, Sources
from fetchshard.runfolder.documents import RunManifest

# ---------------------------------------------------------------------------- the cutter


def _cut(parts: list[list[float]], targets: Targets, kind: str = DATA) -> list[OutputFile]:
    cutter = _Cutter(kind, targets)
    for source, weights in enumerate(parts):
        cutter.feed(source, np.asarray(weights, dtype=np.float64))
    return list(cutter.files())


def _spans(out: OutputFile) -> list[tuple[int, int, int]]:
    return [(p.source, p.start, p.stop) for p in out.pieces]


def _rows_of(out: OutputFile) -> list[tuple[int, int]]:
    return [(p.source, i) for p in out.pieces for i in range(p.start, p.stop)]


def test_a_file_closes_at_the_row_whose_weight_reaches_the_target_across_parts() -> None:
    files = _cut([[3, 3, 3], [3, 3, 3, 3], [4, 1]], Targets(file_bytes=10))
    # 3+3+3 = 9 < 10, the 4th row (the first of part 1) reaches 12: it is in the first file.
    assert [_spans(f) for f in files] == [
        [(0, 0, 3), (1, 0, 1)],
        [(1, 1, 4), (2, 0, 1)],  # 3+3+3 = 9, then part 2's 4 reaches 13
        [(2, 1, 2)],
    ]
    assert [f.rows for f in files] == [4, 4, 1]
    assert [f.estimated_bytes for f in files] == [12, 13, 1]


def test_reaching_the_target_exactly_closes_the_file() -> None:
    files = _cut([[5, 5, 1]], Targets(file_bytes=10))
    assert [_spans(f) for f in files] == [[(0, 0, 2)], [(0, 2, 3)]]
    assert [f.estimated_bytes for f in files] == [10, 1]


def test_a_file_that_reaches_its_target_at_the_end_of_a_part_does_not_take_the_next_part() -> None:
    files = _cut([[4, 6], [1, 1]], Targets(file_bytes=10))
    assert [_spans(f) for f in files] == [[(0, 0, 2)], [(1, 0, 2)]]


def test_file_rows_cuts_too_across_parts() -> None:
    files = _cut([[1] * 4, [1] * 4], Targets(file_bytes=1000, file_rows=3))
    assert [_spans(f) for f in files] == [[(0, 0, 3)], [(0, 3, 4), (1, 0, 2)], [(1, 2, 4)]]
    assert [f.rows for f in files] == [3, 3, 2]


def test_whichever_target_comes_first_cuts() -> None:
    # bytes first (6+6 >= 10 after 2 rows), then rows (3 rows of 1 byte), then the rest
    files = _cut([[6, 6, 1, 1, 1, 1]], Targets(file_bytes=10, file_rows=3))
    assert [_spans(f) for f in files] == [[(0, 0, 2)], [(0, 2, 5)], [(0, 5, 6)]]
    assert [f.estimated_bytes for f in files] == [12, 3, 1]


def test_a_row_heavier_than_the_target_makes_a_file_alone() -> None:
    files = _cut([[50, 50], [70, 2, 3]], Targets(file_bytes=10))
    assert [_spans(f) for f in files] == [[(0, 0, 1)], [(0, 1, 2)], [(1, 0, 1)], [(1, 1, 3)]]
    assert [f.estimated_bytes for f in files] == [50, 50, 70, 5]


def test_a_heavy_row_after_lighter_ones_joins_their_file_as_the_row_that_reaches_it() -> None:
    files = _cut([[2, 50, 2]], Targets(file_bytes=10))
    assert [_spans(f) for f in files] == [[(0, 0, 2)], [(0, 2, 3)]]
    assert [f.estimated_bytes for f in files] == [52, 2]


def test_files_are_numbered_with_their_count_and_named_by_kind() -> None:
    files = _cut([[4] * 7], Targets(file_bytes=8), kind=ERRORS)
    assert [(f.kind, f.index, f.count) for f in files] == [(ERRORS, i, 4) for i in range(4)]
    assert [f.name for f in files] == [f"errors-{i:05d}" for i in range(4)]


def test_no_rows_give_no_files() -> None:
    assert _cut([], Targets(file_bytes=10)) == []
    assert _cut([[], []], Targets(file_bytes=10)) == []


def test_an_empty_part_adds_no_piece() -> None:
    files = _cut([[1], [], [1]], Targets(file_bytes=10))
    assert [_spans(f) for f in files] == [[(0, 0, 1), (2, 0, 1)]]


def test_estimated_bytes_is_the_rounded_sum_of_the_weights() -> None:
    files = _cut([[0.4, 0.4], [0.4]], Targets(file_bytes=100))
    assert len(files) == 1 and files[0].rows == 3
    assert files[0].estimated_bytes == 1  # round(1.2)
    files = _cut([[0.75, 0.75]], Targets(file_bytes=100))
    assert files[0].estimated_bytes == 2  # round(1.5)


def _reference(
    parts: list[list[int]], file_bytes: int, file_rows: int | None
) -> list[list[tuple[int, int]]]:
    """The rule, one row at a time: a row joins the open file, which closes once it holds
    file_bytes or file_rows."""
    files: list[list[tuple[int, int]]] = []
    rows: list[tuple[int, int]] = []
    weight = 0
    for source, weights in enumerate(parts):
        for i, w in enumerate(weights):
            rows.append((source, i))
            weight += w
            if weight >= file_bytes or (file_rows is not None and len(rows) >= file_rows):
                files.append(rows)
                rows, weight = [], 0
    if rows:
        files.append(rows)
    return files


def test_pieces_cover_every_row_once_in_order_and_cut_as_the_rule_says() -> None:
    rng = np.random.default_rng(20240515)
    for _ in range(300):
        parts = [
            rng.integers(0, 30, size=int(rng.integers(0, 12))).tolist()
            for _ in range(int(rng.integers(1, 6)))
        ]
        file_bytes = int(rng.integers(1, 60))
        file_rows = None if rng.random() < 0.5 else int(rng.integers(1, 8))
        files = _cut([[float(w) for w in p] for p in parts], Targets(file_bytes, file_rows))
        every = [(s, i) for s, p in enumerate(parts) for i in range(len(p))]
        assert [r for f in files for r in _rows_of(f)] == every
        assert [_rows_of(f) for f in files] == _reference(parts, file_bytes, file_rows)
        for f in files:
            assert f.rows == len(_rows_of(f))
            assert f.estimated_bytes == sum(parts[s][i] for s, i in _rows_of(f))
            assert all(p.stop > p.start for p in f.pieces)
        assert [f.index for f in files] == list(range(len(files)))
        assert {f.count for f in files} <= {len(files)}


# ------------------------------------------------------------------------ selected rows


def _status_table(ids: list[int], statuses: list[str]) -> pa.Table:
    return pa.table({"item_id": pa.array(ids, pa.int64()), "status": pa.array(statuses)})


def _part(tmp_path: Path, rows: int, superseded: list[int] | None = None) -> SourcePart:
    return SourcePart(0, 0, tmp_path / "part.parquet", rows, np.asarray(superseded or [], np.int64))


def test_selected_picks_the_rows_of_a_kind(tmp_path: Path) -> None:
    table = _status_table([10, 11, 12, 13, 14], ["ok", "failed", "ok", "failed", "ok"])
    part = _part(tmp_path, 5)
    assert selected(table, part, DATA).tolist() == [0, 2, 4]
    assert selected(table, part, ERRORS).tolist() == [1, 3]


def test_selected_leaves_out_superseded_item_ids_of_either_kind(tmp_path: Path) -> None:
    table = _status_table([10, 11, 12, 13, 14, 15], ["ok", "failed", "ok", "failed", "ok", "ok"])
    part = _part(tmp_path, 6, superseded=[11, 14])
    assert selected(table, part, DATA).tolist() == [0, 2, 5]
    assert selected(table, part, ERRORS).tolist() == [3]


# -------------------------------------------------------------------- decodable images


@pytest.mark.parametrize(
    ("content_type", "decodable"),
    [
        ("image/jpeg", True),
        ("image/png", True),
        ("IMAGE/WebP", True),
        ("image/jpeg; charset=binary", True),
        ("image/svg+xml", False),
        ("Image/SVG+XML", False),
        ("text/html", False),
        ("application/octet-stream", False),
        ("", False),
        (None, False),
    ],
)
def test_decodable_image(content_type: str | None, decodable: bool) -> None:
    assert _decodable_image(content_type) is decodable


# ------------------------------------------------------------ the survey and the plan

_SMALL = pa.schema(
    [
        ("item_id", pa.int64()),
        ("url", pa.string()),
        ("status", pa.string()),
        ("error_kind", pa.string()),
        ("content_type", pa.string()),
        ("size", pa.int64()),
        ("body", pa.binary()),
    ]
)


def _write_part(
    path: Path,
    rows: Sequence[tuple[int, str, str | None, int]],
    row_group_size: int | None = None,
) -> Path:
    """``rows`` of (item_id, status, content_type or error kind, body size)."""
    rng = np.random.default_rng(len(rows))
    columns: dict[str, list[object]] = {name: [] for name in _SMALL.names}
    for item, status, what, size in rows:
        ok = status == "ok"
        body = rng.integers(0, 256, size=size, dtype=np.uint8).tobytes() if ok else None
        columns["item_id"].append(item)
        columns["url"].append(f"http://h{item % 3}.test/{item}")
        columns["status"].append(status)
        columns["error_kind"].append(None if ok else what)
        columns["content_type"].append(what if ok else None)
        columns["size"].append(size if ok else None)
        columns["body"].append(body)
    table = pa.table(columns, schema=_SMALL)
    pq.write_table(table, path, row_group_size=row_group_size, compression="zstd")
    return path


def _sources(parts: list[SourcePart]) -> Sources:
    manifest = RunManifest(fingerprint={"world_size": 1}, fetchshard_version="test")
    return Sources(manifest, parts, [], sum(p.rows for p in parts), 0)


def _source(path: Path, part: int = 0, superseded: list[int] | None = None) -> SourcePart:
    rows = pq.read_metadata(path).num_rows
    return SourcePart(0, part, path, rows, np.asarray(superseded or [], np.int64))


def test_the_survey_spreads_each_row_group_over_its_rows_bodies_by_size(tmp_path: Path) -> None:
    rows = [(1, "ok", "image/png", 100), (2, "ok", "image/png", 300)]
    rows += [(3, "failed", "http_404", 0), (4, "failed", "dns", 0)]
    path = _write_part(tmp_path / "p.parquet", rows, row_group_size=2)
    table, weights = _survey(_source(path))
    meta = pq.read_metadata(path)
    assert table.column("item_id").to_pylist() == [1, 2, 3, 4]
    for g, span in enumerate([slice(0, 2), slice(2, 4)]):
        group = meta.row_group(g)
        total = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        assert weights[span].sum() == pytest.approx(total)
    first = meta.row_group(0)
    body = next(
        first.column(c).total_compressed_size
        for c in range(first.num_columns)
        if first.column(c).path_in_schema == "body"
    )
    assert weights[1] - weights[0] == pytest.approx(body * 200 / 400)
    assert weights[2] == pytest.approx(weights[3])  # no bodies: an even share


def test_make_plan_cuts_the_current_rows_of_every_part(tmp_path: Path) -> None:
    a = _write_part(
        tmp_path / "a.parquet",
        [(1, "ok", "image/jpeg", 2000), (2, "failed", "http_404", 0), (3, "ok", "image/png", 2000)],
    )
    b = _write_part(
        tmp_path / "b.parquet",
        [(4, "ok", "image/jpeg", 2000), (5, "failed", "dns", 0), (6, "failed", "http_404", 0)],
    )
    sources = _sources([_source(a, 0, superseded=[3]), _source(b, 1)])
    plan = make_plan(sources, Targets(file_bytes=10**9, file_rows=1))
    data, errors = plan.of_kind(DATA), plan.of_kind(ERRORS)
    assert [[(p.source, p.start, p.stop) for p in f.pieces] for f in data] == [
        [(0, 0, 1)],
        [(1, 0, 1)],
    ]
    assert [[(p.source, p.start, p.stop) for p in f.pieces] for f in errors] == [
        [(0, 0, 1)],
        [(1, 0, 1)],
        [(1, 1, 2)],
    ]
    assert plan.files == [*data, *errors]
    assert (plan.ok, plan.failed) == (2, 3)
    assert plan.errors == {"dns": 1, "http_404": 2}
    assert plan.body_as == BODY_IMAGE
    _, weights_a = _survey(sources.parts[0])
    _, weights_b = _survey(sources.parts[1])
    assert [f.estimated_bytes for f in data] == [round(weights_a[0]), round(weights_b[0])]


def test_make_plan_estimates_the_parts_bytes(tmp_path: Path) -> None:
    rows = [(i, "ok", "image/jpeg", 500 + 10 * i) for i in range(40)]
    path = _write_part(tmp_path / "p.parquet", rows, row_group_size=10)
    plan = make_plan(_sources([_source(path)]), Targets(file_bytes=4000))
    meta = pq.read_metadata(path)
    total = sum(
        meta.row_group(g).column(c).total_compressed_size
        for g in range(meta.num_row_groups)
        for c in range(meta.num_columns)
    )
    files = plan.of_kind(DATA)
    assert len(files) > 3
    assert sum(f.estimated_bytes for f in files) == pytest.approx(total, abs=len(files))
    assert all(f.estimated_bytes >= 4000 for f in files[:-1])
    assert sum(f.rows for f in files) == plan.ok == 40


@pytest.mark.parametrize(
    ("types", "body_as"),
    [
        (["image/jpeg", "image/png"], BODY_IMAGE),
        (["image/jpeg", "image/svg+xml"], BODY_BINARY),
        (["image/jpeg", "text/html"], BODY_BINARY),
        (["image/jpeg", None], BODY_BINARY),
    ],
)
def test_auto_body_is_an_image_only_when_every_body_decodes(
    tmp_path: Path, types: list[str | None], body_as: str
) -> None:
    rows = [(i, "ok", t, 100) for i, t in enumerate(types)]
    path = _write_part(tmp_path / "p.parquet", rows)
    assert make_plan(_sources([_source(path)]), Targets(10**9)).body_as == body_as


def test_auto_body_ignores_failures_and_empty_bodies(tmp_path: Path) -> None:
    rows = [(1, "ok", "image/jpeg", 100), (2, "ok", "text/html", 0), (3, "failed", "dns", 0)]
    path = _write_part(tmp_path / "p.parquet", rows)
    assert make_plan(_sources([_source(path)]), Targets(10**9)).body_as == BODY_IMAGE
    assert make_plan(_sources([_source(path)]), Targets(10**9), "binary").body_as == BODY_BINARY


def test_a_run_without_successes_plans_one_empty_data_file(tmp_path: Path) -> None:
    path = _write_part(tmp_path / "p.parquet", [(1, "failed", "dns", 0)])
    plan = make_plan(_sources([_source(path)]), Targets(10**9))
    assert plan.of_kind(DATA) == [OutputFile(DATA, 0, 1, (), 0, 0)]
    assert [f.pieces for f in plan.of_kind(ERRORS)] == [(Piece(0, 0, 1),)]
    assert plan.body_as == BODY_BINARY and (plan.ok, plan.failed) == (0, 1)


def test_the_digest_is_the_same_for_the_same_plan_and_differs_for_other_targets(
    tmp_path: Path,
) -> None:
    path = _write_part(tmp_path / "p.parquet", [(i, "ok", "image/png", 300) for i in range(10)])
    sources = _sources([_source(path)])
    first = make_plan(sources, Targets(file_bytes=1000))
    assert len(first.digest) == 16
    assert make_plan(sources, Targets(file_bytes=1000)).digest == first.digest
    assert make_plan(sources, Targets(file_bytes=1000, file_rows=2)).digest != first.digest
    assert make_plan(sources, Targets(file_bytes=1000), "binary").digest != first.digest
