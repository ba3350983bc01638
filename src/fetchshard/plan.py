"""Planning: check the output folder belongs to this run, then stream the input once and
keep this rank's slice in its ledger (DESIGN.md step 2)."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from fetchshard import __version__
from fetchshard.config import Config
from fetchshard.errors import ErrorKind, RunMismatchError
from fetchshard.faults import crash_point
from fetchshard.inputs import fingerprint_files, iter_batches
from fetchshard.ledger import NO_HOST, Ledger, PlannedItem
from fetchshard.partition import BadUrl, Partitioner, item_id, item_key, normalize_url
from fetchshard.paths import RunPaths, write_atomic
from fetchshard.ranks import RankInfo
from fetchshard.schema import deserialize_schema, encode_extras, serialize_schema

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """Planning was stopped by a signal; the ledger is consistent, rerun to go on."""


@dataclass(frozen=True, slots=True)
class PlanResult:
    rows: int  # input rows read (blank lines are not rows)
    kept: int  # rows of this rank
    new: int  # items new to the ledger (kept minus duplicates)
    bad: int  # kept rows that are not fetchable URLs
    skipped: bool  # the ledger already held a complete plan


def fingerprint(config: Config, files: list[Path], world_size: int) -> dict[str, Any]:
    """What must not change between a run and its resumption."""
    inp = config.input
    return {
        "world_size": world_size,
        "partition": {"spread": config.partition.spread},
        "input": {
            "files": fingerprint_files(files),
            "format": inp.format,
            "url_column": inp.url_column,
            "id_column": inp.id_column,
            "extra_columns": list(inp.extra_columns) if inp.extra_columns is not None else None,
            "max_url_length": inp.max_url_length,
        },
    }


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("world_size") != new.get("world_size"):
        return f"world size {old.get('world_size')} -> {new.get('world_size')}"
    if old.get("partition") != new.get("partition"):
        return f"partition {old.get('partition')} -> {new.get('partition')}"
    old_files = {f["path"]: f for f in old.get("input", {}).get("files", [])}
    new_files = {f["path"]: f for f in new.get("input", {}).get("files", [])}
    if old_files.keys() != new_files.keys():
        return "a different set of input files"
    changed = [p for p in new_files if new_files[p] != old_files[p]]
    if changed:
        return f"input file changed since the run began: {changed[0]}"
    return "different input options"


def prepare_output(paths: RunPaths, fp: dict[str, Any], rank: RankInfo, *, restart: bool) -> None:
    """Refuse a folder of another run (unless ``restart``); write run.json."""
    if restart:
        for path in paths.rank_files(rank.rank):
            _remove(path)
        if rank.rank == 0:
            for other in paths.ranks_present():
                if other >= rank.world_size:
                    for path in paths.rank_files(other):
                        _remove(path)
    elif paths.run_json.exists():
        try:
            old = json.loads(paths.run_json.read_text(encoding="utf-8"))["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunMismatchError(
                f"{paths.run_json} is unreadable ({exc}); rerun with --restart to start over"
            ) from exc
        if old != fp:
            raise RunMismatchError(
                f"{paths.root} holds a different run ({_difference(old, fp)}); rerun with "
                "--restart to discard it and start over, or choose another output folder"
            )
    doc = {"fingerprint": fp, "fetchshard_version": __version__}
    data = json.dumps(doc, indent=2, sort_keys=True).encode() + b"\n"
    current = paths.run_json.read_bytes() if paths.run_json.exists() else None
    if current != data:
        write_atomic(paths.run_json, data, durable=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def extras_schema(ledger: Ledger) -> pa.Schema | None:
    text = ledger.get_meta("extras_schema")
    return deserialize_schema(text) if text else None


def plan(
    ledger: Ledger,
    config: Config,
    rank: RankInfo,
    fp: dict[str, Any],
    *,
    should_stop: Callable[[], bool] = lambda: False,
    on_batch: Callable[[int], None] | None = None,
) -> PlanResult:
    """Stream the input once and insert this rank's slice into the ledger (idempotent)."""
    recorded = ledger.get_meta("fingerprint")
    if recorded is not None and recorded != fp:
        raise RunMismatchError(
            f"{ledger.path} was planned for a different run ({_difference(recorded, fp)}); "
            "rerun with --restart to discard it and start over"
        )
    if ledger.get_meta("planned"):
        return PlanResult(rows=0, kept=0, new=0, bad=0, skipped=True)
    if recorded is None:
        ledger.set_meta("fingerprint", fp)

    inp = config.input
    partitioner = Partitioner(rank.world_size, config.partition.spread)
    me = rank.rank
    rows = kept = new = bad = batches = 0
    schema_seen = ledger.get_meta("extras_schema") is not None
    for batch in iter_batches(inp):
        if should_stop():
            raise Interrupted("planning interrupted")
        meta: dict[str, Any] = {}
        if not schema_seen:
            meta["extras_schema"] = (
                serialize_schema(batch.extras.schema) if batch.extras is not None else ""
            )
            schema_seen = True
        items: list[PlannedItem] = []
        keep_rows: list[int] = []
        ids = batch.ids
        for index, text in enumerate(batch.urls.to_pylist()):
            user_id = ids[index] if ids is not None else None
            row_no = batch.first_row + index
            try:
                if text is None:
                    raise BadUrl("URL is missing or not valid UTF-8")
                if len(text) > inp.max_url_length:
                    raise BadUrl(f"URL longer than input.max_url_length={inp.max_url_length}")
                parsed = normalize_url(text)
            except BadUrl as exc:
                key = item_key(text if text is not None else f"\x00row {row_no}", user_id)
                if partitioner.rank_of("", key) != me:
                    continue
                shown = (text or "")[: inp.max_url_length]
                items.append(
                    PlannedItem(
                        item_id(key),
                        NO_HOST,
                        "",
                        shown,
                        None,
                        ErrorKind.BAD_URL.value,
                        f"input row {row_no}: {exc}",
                    )
                )
                keep_rows.append(index)
                continue
            key = item_key(parsed.url, user_id)
            if partitioner.rank_of(parsed.host, key) != me:
                continue
            # Host ids are hashes too, so no lookup is needed while planning; 0 is reserved.
            items.append(
                PlannedItem(item_id(key), item_id(parsed.host) or 1, parsed.host, text, None)
            )
            keep_rows.append(index)
        rows += len(batch.urls)
        if batch.extras is not None and keep_rows:
            encoded = encode_extras(batch.extras.take(pa.array(keep_rows, type=pa.int64())))
            items = [
                dataclasses.replace(it, extras=extra)
                for it, extra in zip(items, encoded, strict=True)
            ]
        kept += len(items)
        bad += sum(1 for it in items if it.error_kind is not None)
        new += ledger.insert_items(items, meta=meta)
        batches += 1
        crash_point("plan_batch", batches)
        if on_batch is not None:
            on_batch(rows)
    ledger.set_meta("planned", True)
    log.info(
        "planned %d of %d input rows for this rank (%d new, %d duplicates, %d bad URLs)",
        kept,
        rows,
        new,
        kept - new,
        bad,
    )
    return PlanResult(rows=rows, kept=kept, new=new, bad=bad, skipped=False)
