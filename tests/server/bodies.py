"""Deterministic response bodies: the byte pattern, small JPEGs, gzip of zeros (cached)."""

from __future__ import annotations

import functools
import io
import threading
import zlib

CHUNK = 64 * 1024
PATTERN = (bytes(range(256)) * (CHUNK // 256))[:CHUNK]
MIB = 1024 * 1024


def pattern_chunks(n: int, chunk: int = CHUNK) -> list[int]:
    """Sizes of the ``PATTERN`` slices that make up ``n`` bytes."""
    sizes = [chunk] * (n // chunk)
    if n % chunk:
        sizes.append(n % chunk)
    return sizes


@functools.lru_cache(maxsize=256)
def jpeg_bytes(n: int, width: int = 32, height: int = 32) -> bytes:
    """Deterministic small JPEG whose colour depends on ``n`` (cached)."""
    from PIL import Image

    colour = ((n * 67) % 256, (n * 131 + 40) % 256, (n * 199 + 80) % 256)
    img = Image.new("RGB", (width, height), colour)
    # a diagonal stripe so that the image is not a single flat block
    for i in range(min(width, height)):
        img.putpixel((i, i), (255 - colour[0], 255 - colour[1], 255 - colour[2]))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


_gzip_cache: dict[int, bytes] = {}
_gzip_lock = threading.Lock()


def gzip_zeros(mb: int) -> bytes:
    """gzip (one member) of ``mb`` MiB of zero bytes, cached per ``mb``.

    Built incrementally with ``zlib.compressobj`` (Z_RLE: ~1:1000, ~2 s per GiB), so
    memory stays at ~1 MiB of input plus the compressed output.  Thread-safe; the
    server calls it in the default executor so the event loop keeps running.
    """
    if mb < 0:
        raise ValueError("mb must be >= 0")
    with _gzip_lock:
        cached = _gzip_cache.get(mb)
        if cached is None:
            comp = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS, 9, zlib.Z_RLE)
            zeros = bytes(MIB)
            parts = [comp.compress(zeros) for _ in range(mb)]
            parts.append(comp.flush())
            cached = _gzip_cache[mb] = b"".join(parts)
    return cached


def cached_gzip_zeros(mb: int) -> bytes | None:
    """``gzip_zeros(mb)`` if it was built already, else None (never builds, never blocks)."""
    return _gzip_cache.get(mb)
