"""Which compression a part's columns get: none for bodies that are compressed already."""

from __future__ import annotations

from collections.abc import Sequence

from fetchshard.config import OutputConfig
from fetchshard.output.columns import ResultRow

# Content types whose bytes are compressed already: zstd costs ~2 CPU ms per MB on them and
# saves nothing. SVG and BMP are images that do compress.
_COMPRESSED_TYPES = (
    "image/",
    "video/",
    "audio/",
    "application/zip",
    "application/gzip",
    "application/x-gzip",
    "application/zstd",
    "application/x-xz",
    "application/x-7z",
    "application/x-rar",
    "application/x-bzip2",
    "application/pdf",
    "font/woff",
)


_COMPRESSIBLE_TYPES = ("image/svg", "image/bmp", "image/x-ms-bmp", "image/tiff")


def already_compressed(content_type: str | None) -> bool:
    """Whether bodies of this content type would not shrink under zstd."""
    if not content_type:
        return False
    ct = content_type.lower()
    return ct.startswith(_COMPRESSED_TYPES) and not ct.startswith(_COMPRESSIBLE_TYPES)


def body_codec(config: OutputConfig, rows: Sequence[ResultRow]) -> str:
    """The body column's codec for a part, judged on its first row group when ``auto``."""
    if config.body_compression != "auto":
        return config.body_compression
    typed = [r.content_type for r in rows if r.body]
    if typed and sum(map(already_compressed, typed)) >= 0.9 * len(typed):
        return "none"
    return config.compression
