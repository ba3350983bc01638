"""A corpus of image files of every awkward kind, made here, deterministic (served at
``/corpus/{name}`` with the Content-Type a file server would give its extension).

Each :class:`Case` says what the images stage must make of it: ``ok`` with the upright size,
or the failure kind (``decode``, ``filtered``; ``bad_content`` for what the fetch's own
content check refuses before any stage). Colour marks let a test see orientation: the
*upright* picture is red at the top and blue at the bottom.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

RED, BLUE, GREEN = (220, 20, 20), (20, 20, 220), (20, 200, 20)


@dataclass(frozen=True)
class Case:
    name: str  # the file name served: its extension gives the Content-Type
    status: str  # "ok" or the error kind the row ends with
    size: tuple[int, int] | None  # upright width, height of an ok image
    source_format: str | None  # the original_format the stage reports


def _picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Red top third, green middle, blue bottom third (upright)."""
    from PIL import Image

    im = Image.new("RGB", (width, height), GREEN)
    im.paste(RED, (0, 0, width, height // 3))
    im.paste(BLUE, (0, height - height // 3, width, height))
    return im.convert(mode) if mode != "RGB" else im


def _save(im: Image.Image, fmt: str, **options: Any) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _rotated_jpeg() -> bytes:
    """Stored as a 200x120 landscape with EXIF orientation 6 (rotate 90 clockwise to view):
    upright it is 120x200, red on top."""
    from PIL import Image

    upright = _picture(120, 200)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(stored, "JPEG", quality=90, exif=exif.tobytes())


def _alpha_png() -> bytes:
    """160x100, transparent left half over which the stage's white background shows."""
    im = _picture(160, 100).convert("RGBA")
    im.paste((0, 0, 0, 0), (0, 0, 80, 100))
    return _save(im, "PNG")


def _png16() -> bytes:
    """A 16-bit greyscale gradient, 128x64: top rows near 0, bottom near 65535."""
    import numpy as np
    from PIL import Image

    rows = np.linspace(0, 65535, 64, dtype=np.uint16)
    pixels = np.repeat(rows[:, None], 128, axis=1)
    return _save(Image.fromarray(pixels), "PNG")


def _animated(fmt: str, size: tuple[int, int]) -> bytes:
    frames = [_picture(*size)] + [_picture(*size).rotate(180) for _ in range(2)]
    if fmt == "GIF":
        frames = [f.convert("P") for f in frames]
    return _save(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def _bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (400 M pixels)."""
    raw = b"".join(b"\x00" + b"\x00" * width for _ in range(8))  # 8 rows: enough to start
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    chunks = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


CASES: tuple[Case, ...] = (
    Case("baseline.jpg", "ok", (320, 240), "jpeg"),
    Case("progressive.jpg", "ok", (300, 180), "jpeg"),
    Case("cmyk.jpg", "ok", (200, 150), "jpeg"),
    Case("rotated.jpg", "ok", (120, 200), "jpeg"),
    Case("alpha.png", "ok", (160, 100), "png"),
    Case("gray16.png", "ok", (128, 64), "png"),
    Case("palette.gif", "ok", (100, 90), "gif"),
    Case("animated.gif", "ok", (80, 60), "gif"),
    Case("animated.webp", "ok", (90, 70), "webp"),
    Case("picture.tif", "ok", (150, 100), "tiff"),
    Case("picture.bmp", "ok", (64, 48), "bmp"),
    Case("truncated.jpg", "decode", None, None),
    Case("page.jpg", "bad_content", None, None),  # an HTML page under a .jpg name
    Case("empty.jpg", "bad_content", None, None),  # a zero-byte body
    Case("bomb.png", "filtered", None, None),  # a decompression bomb: 20000 x 20000
)
BY_NAME = {case.name: case for case in CASES}

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".png": "image/png",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".tif": "image/tiff",
    ".bmp": "image/bmp",
}


@functools.cache
def corpus_bytes(name: str) -> bytes:
    """The bytes of corpus file ``name`` (KeyError for an unknown name)."""
    if name not in BY_NAME:
        raise KeyError(name)
    makers = {
        "baseline.jpg": lambda: _save(_picture(320, 240), "JPEG", quality=90),
        "progressive.jpg": lambda: _save(_picture(300, 180), "JPEG", quality=90, progressive=True),
        "cmyk.jpg": lambda: _save(_picture(200, 150, "CMYK"), "JPEG", quality=90),
        "rotated.jpg": _rotated_jpeg,
        "alpha.png": _alpha_png,
        "gray16.png": _png16,
        "palette.gif": lambda: _save(_picture(100, 90).convert("P"), "GIF"),
        "animated.gif": lambda: _animated("GIF", (80, 60)),
        "animated.webp": lambda: _animated("WEBP", (90, 70)),
        "picture.tif": lambda: _save(_picture(150, 100), "TIFF"),
        "picture.bmp": lambda: _save(_picture(64, 48), "BMP"),
        "truncated.jpg": lambda: _half(corpus_bytes("baseline.jpg")),
        "page.jpg": lambda: b"<!DOCTYPE html><html><body><h1>Not found</h1></body></html>\n",
        "empty.jpg": lambda: b"",
        "bomb.png": _bomb_png,
    }
    return makers[name]()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def content_type(name: str) -> str:
    return CONTENT_TYPES[name[name.rindex(".") :]]


@functools.lru_cache(maxsize=8)
def large_jpeg(px: int) -> bytes:
    """A ``px`` x ``px`` JPEG of smooth noise: costly to decode, like a camera's photo."""
    import random

    from PIL import Image

    rng = random.Random(px)
    small = Image.frombytes("RGB", (px // 8, px // 8), rng.randbytes((px // 8) ** 2 * 3))
    return _save(small.resize((px, px), Image.Resampling.BILINEAR), "JPEG", quality=92)
