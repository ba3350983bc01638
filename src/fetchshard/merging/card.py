"""The dataset card (``README.md``): the YAML header `datasets` reads, and what a reader needs.

The header names both configs (``default``: the successes, ``errors``: the failures) with
their files, and ``dataset_info`` with each config's features (when every column has one;
`datasets` then casts to them, so they must be complete) and exact example counts (which it
verifies). The prose says what was fetched, from where, when, how and by whom.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import pyarrow as pa
import yaml

from fetchshard.merging.documents import MergeManifest
from fetchshard.merging.plan import DATA, ERRORS, WEBDATASET
from fetchshard.merging.schema import features

DATA_GLOB = "data/train-*"
SHARDS_GLOB = "*.tar"
ERRORS_GLOB = "errors/train-*"


def dataset_card(manifest: MergeManifest, schemas: dict[str, pa.Schema]) -> str:
    return f"---\n{_header(manifest, schemas)}---\n\n{_prose(manifest)}"


def _header(manifest: MergeManifest, schemas: dict[str, pa.Schema]) -> str:
    configs: list[dict[str, Any]] = [
        {
            "config_name": "default",
            "default": True,
            "data_files": [{"split": "train", "path": _data_glob(manifest)}],
        }
    ]
    # `datasets` reads every config of a folder with one loader (its issue #6447): beside
    # the shards the errors, in Parquet, are no config but loaded on their own (the prose)
    if manifest.counts["failed"] and not _shards(manifest):
        configs.append(
            {"config_name": "errors", "data_files": [{"split": "train", "path": ERRORS_GLOB}]}
        )
    info = []
    for config in configs:
        kind = DATA if config["config_name"] == "default" else ERRORS
        files = [f for f in manifest.files if f.kind in _KINDS[kind]]
        entry: dict[str, Any] = {"config_name": config["config_name"]}
        # the shards' features are webdataset's (`jpg`, `json`, ...): `datasets` infers them
        found = None if _shards(manifest) and kind == DATA else features(schemas[kind])
        if found is not None:
            entry["features"] = [_card_feature(name, f) for name, f in found.items()]
        entry["splits"] = [
            {
                "name": "train",
                "num_bytes": sum(f.bytes for f in files),
                "num_examples": sum(f.rows for f in files),
            }
        ]
        entry["download_size"] = sum(f.bytes for f in files)
        info.append(entry)
    doc = {"configs": configs, "dataset_info": info}
    return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))


_KINDS = {DATA: ("data", "shard"), ERRORS: ("errors",)}


def _shards(manifest: MergeManifest) -> bool:
    return manifest.format == WEBDATASET


def _data_glob(manifest: MergeManifest) -> str:
    return SHARDS_GLOB if _shards(manifest) else DATA_GLOB


def _card_feature(name: str, feature: dict[str, Any]) -> dict[str, Any]:
    if feature["_type"] == "Image":
        return {"name": name, "dtype": "image"}
    return {"name": name, "dtype": feature["dtype"]}


def _prose(manifest: MergeManifest) -> str:
    counts = manifest.counts
    run = manifest.run
    settings = run.get("settings") or {}
    fetch = settings.get("fetch") or {}
    lines = ["# Dataset fetched with fetchshard", ""]
    total = counts["ok"] + counts["failed"]
    state = "complete" if manifest.complete else "**partial**"
    lines += [
        f"{counts['planned']:,} URLs were planned; this {state} merge holds {counts['ok']:,} "
        f"successes (config `default`) and {counts['failed']:,} failures (config `errors`), "
        f"{total:,} rows in all, in {_files(manifest)} ({manifest.bytes / 1e6:,.1f} MB).",
        "",
    ]
    if counts.get("duplicates"):
        lines += [
            f"{counts['duplicates']:,} successes repeated the body of another and were left "
            "out (`--dedup content`): `duplicates.parquet` names each, with the item kept.",
            "",
        ]
    if counts["missing"]:
        lines += [
            f"{counts['missing']:,} planned items have no row here: `missing.parquet` lists "
            "them with their rank and why (pending, or in a missing part).",
            "",
        ]
    if _shards(manifest):
        lines += [
            "Successes are webdataset shards (`00000.tar`: `KEY.<ext>` the body, `KEY.json` "
            "the row; `00000.parquet` beside each holds the same rows). The failures are "
            "Parquet files in `errors/`, outside the dataset's configs (`datasets` reads a "
            'folder with one loader): `load_dataset("parquet", '
            'data_files="errors/*.parquet")`.',
            "",
        ]
    elif manifest.body_as == "image":
        lines += ["Successes carry the response body as `image` (`datasets.Image`).", ""]
    else:
        lines += ["Successes carry the response body as `body` (bytes).", ""]
    lines += ["| status | error kind | rows |", "|---|---|---|", f"| ok | | {counts['ok']:,} |"]
    lines += [f"| failed | `{kind}` | {n:,} |" for kind, n in sorted(manifest.errors.items())]
    lines.append("")
    when = run.get("last_completed_at")
    if when:
        stamp = dt.datetime.fromtimestamp(float(when), tz=dt.timezone.utc)
        lines += [
            f"Fetched until {stamp:%Y-%m-%d %H:%M} UTC by {_by(run)}.",
            "",
        ]
    if fetch:
        contact = fetch.get("contact")
        agent = f"contact `{contact}`" if contact else "of fetchshard, without a contact"
        robots = "obeyed" if fetch.get("robots_txt", False) else "not consulted"
        lines += [
            f"Requests were sent with the User-Agent {agent}; per host at most "
            f"{fetch.get('per_host_rate')} requests/s over all ranks, "
            f"{fetch.get('max_attempts')} attempts per URL; robots.txt {robots}.",
            "",
        ]
    command = run.get("command")
    if command:
        lines += ["The command:", "", "    " + " ".join(command), ""]
    inputs = (run.get("fingerprint") or {}).get("input", {}).get("files", [])
    if inputs:
        lines += ["Inputs:", ""]
        lines += [f"- `{f['path']}` ({int(f.get('size', 0)):,} bytes)" for f in inputs]
        lines.append("")
    lines += [
        f"Merged by fetchshard {manifest.fetchshard_version}; `manifest.json` lists every file "
        "with its rows, bytes and sha256, the run's fingerprint and settings.",
        "",
    ]
    return "\n".join(lines)


def _files(manifest: MergeManifest) -> str:
    if not _shards(manifest):
        return f"{len(manifest.files)} Parquet files"
    shards = sum(1 for f in manifest.files if f.kind == "shard")
    rest = sum(1 for f in manifest.files if f.kind == "errors")
    return f"{shards} webdataset shards and {rest} Parquet files of failures"


def _by(run: Mapping[str, Any]) -> str:
    """Who fetched: ``4 ranks``, or over generations ``4, then 3 ranks (2 generations)``."""
    sizes = run.get("generations") or []
    if not isinstance(sizes, list) or len(sizes) < 2:
        return _ranks(run.get("world_size"))
    return f"{', then '.join(str(s) for s in sizes[:-1])}, then {_ranks(sizes[-1])} " + (
        f"({len(sizes)} generations)"
    )


def _ranks(count: object) -> str:
    return "1 rank" if count == 1 else f"{count} ranks"
