"""Writing one webdataset shard of the plan: ``00000.tar`` and its ``00000.parquet`` sidecar.

A sample is ``KEY.<ext>`` (the body, its extension from the content type), ``KEY.json`` (the
row's metadata, the sidecar's row) and ``KEY.txt`` (the caption column, when one is chosen),
adjacent and in that order, as img2dataset, DataComp and NeMo Curator write them. KEY is the
sample's number in the dataset, zero-padded, with no dot (webdataset splits at the first).
Members carry the row's fetch time and no owner, so every process writes the same bytes. Both
files are sealed as the Parquet files are (writer.seal: fsync, record, rename).
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import mimetypes
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from fetchshard.merging.plan import OutputFile
from fetchshard.merging.schema import BODY, KEY, to_sidecar
from fetchshard.merging.sources import SourcePart
from fetchshard.merging.writer import Written, piece_rows
from fetchshard.runfolder.layout import tmp_of

# What img2dataset and the webdataset decoders expect, where mimetypes says otherwise.
_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/jpg": "jpg",
    "image/pjpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "image/tiff": "tif",
    "image/bmp": "bmp",
    "image/avif": "avif",
    "image/svg+xml": "svg",
    "text/plain": "txt",
    "text/html": "html",
    "application/json": "json",
}
_FALLBACK_EXTENSION = "bin"
KEY_WIDTH = 9  # as img2dataset's keys; wider when a dataset has more samples


def extension(content_type: str | None, *, taken: frozenset[str] = frozenset()) -> str:
    """The member extension (no dot) for a body of ``content_type``; never one in ``taken``."""
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    ext = _EXTENSIONS.get(mime)
    if ext is None and mime:
        guessed = mimetypes.guess_extension(mime, strict=False)
        ext = guessed.lstrip(".").lower() if guessed and "." not in guessed[1:] else None
    if ext is None or ext in taken:
        return _FALLBACK_EXTENSION
    return ext


def sample_key(number: int, width: int) -> str:
    return f"{number:0{width}d}"


def write_shard(
    out: OutputFile,
    parts: list[SourcePart],
    schema: pa.Schema,
    targets: tuple[Path, Path],
    records: tuple[Path, Path],
    names: tuple[str, str],
    *,
    first_key: int,
    key_width: int,
    caption: str | None,
    compression: str,
    dropped: dict[int, np.ndarray],
    advanced: Callable[[int], None] | None = None,
) -> list[Written]:
    """Encode shard ``out`` into tmp files: the tar for ``targets[0]``, the sidecar
    (``schema``) for ``targets[1]``; return them, to be sealed (writer.seal) with their
    records at ``records`` (``names``: their merged-folder paths)."""
    tar_path, sidecar_path = targets
    tar_path.parent.mkdir(parents=True, exist_ok=True)
    tmps = (tmp_of(tar_path), tmp_of(sidecar_path))
    taken = frozenset({"json", "txt"} if caption else {"json"})
    wanted = set(schema.names) | ({caption} if caption else set())
    rows = 0
    sidecar: pq.ParquetWriter | None = None
    try:
        with (
            open(tmps[0], "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            sidecar = pq.ParquetWriter(
                tmps[1], schema, compression=compression, write_page_index=True
            )
            for table in piece_rows(out, parts, wanted, dropped):
                keys = [sample_key(first_key + rows + i, key_width) for i in range(len(table))]
                meta = to_sidecar(table, schema, keys)
                sidecar.write_table(meta, row_group_size=max(meta.num_rows, 1))
                _add_samples(tar, table, meta, caption, taken)
                rows += table.num_rows
                if advanced:
                    advanced(table.num_rows)
            if sidecar is not None and rows == 0:
                sidecar.write_table(schema.empty_table())
            sidecar.close()
            sidecar = None
    except BaseException:
        if sidecar is not None:
            sidecar.close()
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise
    if rows != out.rows:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{tar_path.name}: wrote {rows} samples, the plan has {out.rows}")
    return [
        Written(tmp=tmp, target=target, record=record, name=name, kind=kind, rows=rows)
        for tmp, target, record, name, kind in zip(
            tmps, targets, records, names, ("shard", "sidecar"), strict=True
        )
    ]


def _add_samples(
    tar: tarfile.TarFile,
    table: pa.Table,
    meta: pa.Table,
    caption: str | None,
    taken: frozenset[str],
) -> None:
    bodies = table.column(BODY).to_pylist() if BODY in table.column_names else [None] * len(table)
    types = (
        table.column("content_type").to_pylist()
        if "content_type" in table.column_names
        else [None] * len(table)
    )
    captions = table.column(caption).to_pylist() if caption else None
    for i, row in enumerate(meta.to_pylist()):
        key = row[KEY]
        fetched = row.get("fetched_at")
        mtime = int(fetched.timestamp()) if isinstance(fetched, dt.datetime) else 0
        body = bodies[i]
        if body is not None:
            _add(tar, f"{key}.{extension(types[i], taken=taken)}", body, mtime)
        _add(tar, f"{key}.json", _json(row), mtime)
        if captions is not None:
            text = "" if captions[i] is None else str(captions[i])
            _add(tar, f"{key}.txt", text.encode(), mtime)


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _json(row: dict[str, Any]) -> bytes:
    return json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=_plain).encode()


def _plain(value: Any) -> Any:
    """What json cannot write as it is: times as ISO 8601, bytes as base64."""
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return str(value)
