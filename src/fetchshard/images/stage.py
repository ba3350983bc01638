"""The images stage: a fetched row in, the row to store out (stored image, sizes, hashes).

After the stage the row's body columns (``body``, ``content_type``, ``size``, ``sha256``)
describe the *stored* image; what came over the wire is in the ``original_*`` columns. An
image that cannot be read fails as ``decode``, one the filters refuse as ``filtered``; the
body is then dropped. Rows that failed before are passed on unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pyarrow as pa
from PIL import Image

from fetchshard.config import ImagesConfig
from fetchshard.images.pool import ImagePool
from fetchshard.images.transform import DECODE, ImageResult
from fetchshard.output.columns import STATUS_FAILED, STATUS_OK, Column, ResultRow


def image_columns(hash_name: str) -> tuple[Column, ...]:
    """The stage's columns: the original's and the stored image's size and format, and the
    hashes (``sha256``, a base column, is always the stored bytes')."""
    columns = [
        Column("original_width", pa.int32()),
        Column("original_height", pa.int32()),
        Column("original_format", pa.string(), dictionary=True),
        Column("original_size", pa.int64()),
        Column(f"original_{hash_name}", pa.string(), statistics=False),
        Column("width", pa.int32()),
        Column("height", pa.int32()),
        Column("format", pa.string(), dictionary=True),
    ]
    if hash_name != "sha256":
        columns.append(Column(hash_name, pa.string(), statistics=False))
    return tuple(columns)


class ImageStage:
    """Verify or resize each fetched image in a pool of ``workers`` processes."""

    name: str = "images"
    columns: Sequence[Column]
    depth: int

    def __init__(self, config: ImagesConfig, workers: int) -> None:
        self.hash = config.hash
        self.columns = image_columns(config.hash)
        self.workers = workers
        self.depth = max(2, workers * config.queue_per_worker)  # images in the stage at once
        self.pool = ImagePool(config, workers, config.pool)
        if config.mode == "verify":
            what = "verify"
        elif config.resize_mode == "no":
            what = f"re-encode at the original size as {config.encode_format}"
        else:
            what = f"resize to {config.image_size} ({config.resize_mode}) as {config.encode_format}"
        if config.mode == "resize" and config.encode_format != "png":
            what += f" q{config.encode_quality}"
        self.describe = f"{what}, {workers} {config.pool}, hash {config.hash}"

    async def process(self, row: ResultRow) -> ResultRow:
        if row.status != STATUS_OK or row.body is None:
            return row
        return apply(row, await self.pool.run(row.body), self.hash)

    async def aclose(self) -> None:
        await self.pool.aclose()


def apply(row: ResultRow, result: ImageResult, hash_name: str) -> ResultRow:
    """``row`` as stored after ``result``: a failure, or the stored image and its columns."""
    if result.kind is not None:
        message = result.message
        if result.kind == DECODE and row.content_type:  # what it was instead, if it said
            message = f"{message} (Content-Type {row.content_type})"
        return dataclasses.replace(
            row, status=STATUS_FAILED, error_kind=result.kind, error_message=message, body=None
        )
    original_hash = result.original_md5 if hash_name == "md5" else row.sha256
    more = {
        **(row.more or {}),
        "original_width": result.original_width,
        "original_height": result.original_height,
        "original_format": result.original_format,
        "original_size": row.size,
        f"original_{hash_name}": original_hash,
        "width": result.width,
        "height": result.height,
        "format": result.format,
    }
    if result.data is None:  # the original bytes are stored
        if hash_name != "sha256":
            more[hash_name] = original_hash
        return dataclasses.replace(row, more=more, content_type=_mime(result) or row.content_type)
    if hash_name != "sha256":
        more[hash_name] = result.md5
    return dataclasses.replace(
        row,
        body=result.data,
        size=len(result.data),
        sha256=result.sha256,
        content_type=_mime(result),
        more=more,
    )


def _mime(result: ImageResult) -> str | None:
    """The media type of the stored image's format (Pillow's table)."""
    Image.init()  # the table fills as plugins load: with worker processes, never here else
    return Image.MIME.get((result.format or "").upper())
