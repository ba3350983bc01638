"""The dataset card: the YAML header `datasets` reads, and the prose a reader reads."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pyarrow as pa
import yaml

from fetchshard.merging.card import DATA_GLOB, ERRORS_GLOB, dataset_card
from fetchshard.merging.documents import FileRecord, MergeManifest
from fetchshard.merging.plan import BODY_BINARY, BODY_IMAGE, DATA, ERRORS
from fetchshard.merging.schema import data_schema, errors_schema
from fetchshard.output.columns import BASE_COLUMNS

PARTS = BASE_COLUMNS.schema(None)
COMPLETED_AT = dt.datetime(2024, 5, 6, 7, 8, tzinfo=dt.timezone.utc).timestamp()


def _record(kind: str, index: int, count: int, rows: int, size: int) -> FileRecord:
    path = f"{'data' if kind == DATA else 'errors'}/train-{index:05d}-of-{count:05d}.parquet"
    return FileRecord(path=path, kind=kind, rows=rows, bytes=size, sha256=f"{index:064x}")


def _manifest(**changes: Any) -> MergeManifest:
    files = [
        _record(DATA, 0, 2, 600, 1_000_000),
        _record(DATA, 1, 2, 21, 35_000),
        _record(ERRORS, 0, 1, 9, 4_000),
    ]
    manifest = MergeManifest(
        complete=True,
        format="parquet",
        body_as=BODY_IMAGE,
        counts={"planned": 630, "ok": 621, "failed": 9, "missing": 0},
        errors={"http_404": 7, "dns": 2},
        bytes=sum(f.bytes for f in files),
        files=files,
        run={
            "settings": {
                "fetch": {
                    "contact": "mailto:data@example.org",
                    "per_host_rate": 2.5,
                    "max_attempts": 3,
                    "robots_txt": True,
                }
            },
            "command": ["fetchshard", "run", "urls.txt", "-o", "out"],
            "fingerprint": {"input": {"files": [{"path": "urls.txt", "size": 12345}]}},
            "world_size": 4,
            "last_completed_at": COMPLETED_AT,
        },
        fetchshard_version="9.8.7",
    )
    return dataclasses.replace(manifest, **changes)


def _schemas(parts: pa.Schema = PARTS, body_as: str = BODY_IMAGE) -> dict[str, pa.Schema]:
    return {DATA: data_schema(parts, body_as), ERRORS: errors_schema(parts)}


def _split(card: str) -> tuple[dict[str, Any], str]:
    lines = card.split("\n")
    assert lines[0] == "---"
    end = lines.index("---", 1)
    header = yaml.safe_load("\n".join(lines[1:end]))
    assert isinstance(header, dict)
    return header, "\n".join(lines[end + 1 :])


def test_the_header_names_both_configs_with_their_files() -> None:
    header, _ = _split(dataset_card(_manifest(), _schemas()))
    assert header["configs"] == [
        {
            "config_name": "default",
            "default": True,
            "data_files": [{"split": "train", "path": "data/train-*"}],
        },
        {"config_name": "errors", "data_files": [{"split": "train", "path": "errors/train-*"}]},
    ]
    assert (DATA_GLOB, ERRORS_GLOB) == ("data/train-*", "errors/train-*")


def test_the_header_counts_each_configs_rows_and_bytes() -> None:
    header, _ = _split(dataset_card(_manifest(), _schemas()))
    info = {entry["config_name"]: entry for entry in header["dataset_info"]}
    assert list(info) == ["default", "errors"]
    assert info["default"]["splits"] == [
        {"name": "train", "num_bytes": 1_035_000, "num_examples": 621}
    ]
    assert info["default"]["download_size"] == 1_035_000
    assert info["errors"]["splits"] == [{"name": "train", "num_bytes": 4_000, "num_examples": 9}]
    assert info["errors"]["download_size"] == 4_000


def test_the_header_lists_every_column_with_its_feature() -> None:
    schemas = _schemas()
    header, _ = _split(dataset_card(_manifest(), schemas))
    info = {entry["config_name"]: entry for entry in header["dataset_info"]}
    default = {f["name"]: f["dtype"] for f in info["default"]["features"]}
    assert list(default) == schemas[DATA].names
    assert default["image"] == "image"
    assert default["item_id"] == "int64"
    assert default["http_status"] == "int32"
    assert default["fetched_at"] == "timestamp[ms, tz=UTC]"
    assert default["elapsed_ms"] == "float64"
    errors = {f["name"]: f["dtype"] for f in info["errors"]["features"]}
    assert list(errors) == schemas[ERRORS].names
    assert errors["host"] == "string" and errors["error_kind"] == "string"


def test_binary_bodies_are_binary_features() -> None:
    card = dataset_card(_manifest(body_as=BODY_BINARY), _schemas(body_as=BODY_BINARY))
    header, prose = _split(card)
    default = {f["name"]: f["dtype"] for f in header["dataset_info"][0]["features"]}
    assert default["body"] == "binary" and "image" not in default
    assert "Successes carry the response body as `body` (bytes)." in prose


def test_without_failures_there_is_no_errors_config() -> None:
    manifest = _manifest(
        counts={"planned": 621, "ok": 621, "failed": 0, "missing": 0},
        errors={},
        files=[f for f in _manifest().files if f.kind == DATA],
    )
    header, prose = _split(dataset_card(manifest, _schemas()))
    assert [c["config_name"] for c in header["configs"]] == ["default"]
    assert [e["config_name"] for e in header["dataset_info"]] == ["default"]
    assert "| failed |" not in prose


def test_columns_without_a_feature_leave_the_features_out() -> None:
    parts = BASE_COLUMNS.schema(pa.schema([("tags", pa.list_(pa.string()))]))
    header, _ = _split(dataset_card(_manifest(), _schemas(parts)))
    for entry in header["dataset_info"]:
        assert "features" not in entry
        assert entry["splits"][0]["num_examples"] in (621, 9)


def test_the_prose_gives_the_counts_by_error_kind() -> None:
    _, prose = _split(dataset_card(_manifest(), _schemas()))
    assert "630 URLs were planned; this complete merge holds 621 successes" in prose
    assert "9 failures (config `errors`), 630 rows in all, in 3 Parquet files (1.0 MB)" in prose
    table = [line for line in prose.splitlines() if line.startswith("| ")]
    assert table == [
        "| status | error kind | rows |",
        "| ok | | 621 |",
        "| failed | `dns` | 2 |",
        "| failed | `http_404` | 7 |",
    ]
    assert "Successes carry the response body as `image` (`datasets.Image`)." in prose


def test_the_prose_says_how_and_when_the_data_was_fetched() -> None:
    _, prose = _split(dataset_card(_manifest(), _schemas()))
    assert "Fetched until 2024-05-06 07:08 UTC by 4 ranks." in prose
    assert "User-Agent contact `mailto:data@example.org`" in prose
    assert "at most 2.5 requests/s over all ranks, 3 attempts per URL; robots.txt obeyed" in prose
    assert "    fetchshard run urls.txt -o out" in prose
    assert "- `urls.txt` (12,345 bytes)" in prose
    assert "Merged by fetchshard 9.8.7" in prose


def test_a_run_of_several_generations_says_each_world_size() -> None:
    run = {**_manifest().run, "world_size": 7, "generations": [4, 3, 7]}
    _, prose = _split(dataset_card(_manifest(run=run), _schemas()))
    assert "by 4, then 3, then 7 ranks (3 generations)." in prose
    run["generations"] = [4]  # one generation: as before
    _, prose = _split(dataset_card(_manifest(run=run), _schemas()))
    assert "by 7 ranks." in prose


def test_the_prose_without_a_contact_or_robots() -> None:
    run = _manifest().run
    fetch = {"per_host_rate": 1, "max_attempts": 2, "robots_txt": False}
    manifest = _manifest(run={**run, "settings": {"fetch": fetch}, "world_size": 1})
    _, prose = _split(dataset_card(manifest, _schemas()))
    assert "User-Agent of fetchshard, without a contact" in prose
    assert "contact `" not in prose
    assert "robots.txt not consulted" in prose
    assert "by 1 rank." in prose


def test_a_partial_merge_says_so_and_counts_the_missing_items() -> None:
    counts = {"planned": 700, "ok": 621, "failed": 9, "missing": 70}
    _, prose = _split(dataset_card(_manifest(complete=False, counts=counts), _schemas()))
    assert "this **partial** merge" in prose
    assert "70 planned items have no row here: `missing.parquet`" in prose


def test_a_run_without_facts_still_has_a_card() -> None:
    header, prose = _split(dataset_card(_manifest(run={}), _schemas()))
    assert header["dataset_info"][0]["splits"][0]["num_examples"] == 621
    assert "Fetched until" not in prose and "User-Agent" not in prose
    assert "The command:" not in prose and "Inputs:" not in prose
