"""One image's work, run by a worker thread or process: bytes in, :class:`ImageResult` out.

``verify`` decodes the image (a JPEG at 1/8 scale, which still decodes every coefficient, so a
truncated or corrupt file fails) and keeps the original bytes. ``resize`` decodes (a JPEG by
libjpeg's DCT scaling straight to the smallest scale at least as large as the target), turns
it upright by its EXIF orientation, composites alpha on the background, brings CMYK, palette,
16-bit and the like to RGB, takes the first frame of an animation, resizes (:mod:`geometry`)
and encodes. Any failure to read the image is the ``decode`` kind; the size and aspect
filters and the decompression-bomb guard give ``filtered``: a row never raises.
"""

from __future__ import annotations

import functools
import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from fetchshard.config import ImagesConfig, background_rgb
from fetchshard.images.geometry import plan_resize

DECODE = "decode"
FILTERED = "filtered"

INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,  # the mean of the source pixels under each target pixel
}
ENCODINGS = ("jpeg", "png", "webp")
_JPEG = ("JPEG", "MPO")  # MPO: a JPEG with extra pictures (phone cameras); the first is read
_ORIENTATION = 0x0112
# EXIF orientation -> the transposition that makes the image upright (as ImageOps does).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_MESSAGE_CHARS = 300
# images.background as RGB: parsed once per colour and process, not per image (the config
# check has refused a colour that is not one).
_background = functools.lru_cache(maxsize=8)(background_rgb)


@dataclass(frozen=True, slots=True)
class ImageResult:
    """What became of one image; ``data`` None with no ``kind``: the original bytes are kept."""

    kind: str | None = None  # DECODE, FILTERED or None
    message: str | None = None
    data: bytes | None = None  # the stored bytes, when they are not the original
    original_width: int | None = None
    original_height: int | None = None
    original_format: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    sha256: str | None = None  # of the stored bytes, when they are not the original
    md5: str | None = None  # of the stored bytes, likewise, when hash is md5
    original_md5: str | None = None  # when hash is md5


class _Filtered(Exception):
    pass


def setup() -> None:
    """Once per process that runs transforms: our own pixel guard instead of Pillow's."""
    Image.MAX_IMAGE_PIXELS = None  # checked against ImagesConfig.max_pixels before decoding
    # Pillow warns of odd EXIF, palettes and the like; the row says what matters.
    warnings.filterwarnings("ignore", module=r"PIL\.")


def process_image(data: bytes, config: ImagesConfig) -> ImageResult:
    """Verify or transform one image as the images section says (``mode`` verify, else
    resize); failures are results, never exceptions."""
    try:
        return _process(data, config)
    except _Filtered as exc:
        return ImageResult(FILTERED, str(exc))
    except Image.DecompressionBombError as exc:
        return ImageResult(FILTERED, str(exc)[:_MESSAGE_CHARS])
    except Exception as exc:  # Pillow raises many types for broken files: all are "decode"
        return ImageResult(DECODE, _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:_MESSAGE_CHARS] if text else type(exc).__name__


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(_ORIENTATION, 1)
    except Exception:  # unreadable EXIF: treat the image as upright
        return 1
    return value if isinstance(value, int) and value in _UPRIGHT else 1


def _process(data: bytes, o: ImagesConfig) -> ImageResult:
    im = Image.open(io.BytesIO(data))
    source = im.format or "unknown"
    fmt = "jpeg" if source in _JPEG else source.lower()
    raw_w, raw_h = im.size
    if raw_w * raw_h > o.max_pixels:
        raise _Filtered(
            f"{raw_w}x{raw_h} is {raw_w * raw_h:,} pixels, above images.max_pixels "
            f"({o.max_pixels:,}): not decoded (decompression-bomb guard)"
        )
    orientation = _orientation(im)
    turned = orientation in (5, 6, 7, 8)
    w, h = (raw_h, raw_w) if turned else (raw_w, raw_h)
    _check_filters(w, h, o)
    md5 = hashlib.md5(data).hexdigest() if o.hash == "md5" else None
    plan = (
        None
        if o.mode == "verify"
        else plan_resize(o.resize_mode, w, h, o.image_size, o.resize_only_if_bigger)
    )
    if plan is None or (
        o.skip_reencode
        and plan.identity
        and orientation == 1
        and fmt == o.encode_format
        and im.mode in ("RGB", "L")
        and not getattr(im, "is_animated", False)
    ):  # verify, or nothing would change: decode to check, keep the original bytes
        _decode_all(im)
        return ImageResult(None, None, None, w, h, fmt, w, h, fmt, original_md5=md5)
    if plan.scaled is not None and source in _JPEG:
        sw, sh = plan.scaled
        need = (sh, sw) if turned else (sw, sh)
        if need[0] < raw_w and need[1] < raw_h:
            im.draft(None, need)  # DCT scaling: the smallest 1/2^k at least ``need``
    im.load()
    pic: Image.Image = im
    if orientation != 1:
        pic = pic.transpose(_UPRIGHT[orientation])
    pic = _to_rgb(pic, _background(o.background))
    if plan.scaled is not None and plan.scaled != pic.size:
        down = plan.scaled[0] * plan.scaled[1] < pic.width * pic.height
        interpolation = o.downscale_interpolation if down else o.upscale_interpolation
        pic = pic.resize(plan.scaled, INTERPOLATIONS[interpolation])
    if plan.crop is not None:
        pic = pic.crop(plan.crop)
    if plan.offset is not None:
        canvas = Image.new("RGB", plan.out, _background(o.background))
        canvas.paste(pic, plan.offset)
        pic = canvas
    stored = _encode(pic, o)
    out_w, out_h = pic.size
    return ImageResult(
        None,
        None,
        stored,
        w,
        h,
        fmt,
        out_w,
        out_h,
        o.encode_format,
        sha256=hashlib.sha256(stored).hexdigest(),
        md5=hashlib.md5(stored).hexdigest() if md5 is not None else None,
        original_md5=md5,
    )


def _check_filters(w: int, h: int, o: ImagesConfig) -> None:
    if min(w, h) < o.min_image_size:
        raise _Filtered(f"{w}x{h} is smaller than images.min_image_size ({o.min_image_size})")
    if o.max_aspect_ratio is not None and max(w, h) / min(w, h) > o.max_aspect_ratio:
        raise _Filtered(
            f"{w}x{h} has an aspect ratio of {max(w, h) / min(w, h):.2f}, above "
            f"images.max_aspect_ratio ({o.max_aspect_ratio:g})"
        )


def _decode_all(im: Image.Image) -> None:
    """Decode every byte of the (first) frame; a JPEG at 1/8 scale (the same coefficients)."""
    if im.format in _JPEG:
        im.draft(None, (max(1, im.width // 8), max(1, im.height // 8)))
    im.load()


def _to_rgb(im: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Three 8-bit channels: alpha composited on ``background``, 16-bit scaled down."""
    mode = im.mode
    if mode in ("P", "RGB", "L") and "transparency" in im.info:  # a palette or colour key
        im, mode = im.convert("RGBA"), "RGBA"
    if mode == "RGB":
        return im
    if mode in _ALPHA_MODES:
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, background)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if mode.startswith("I") or mode == "F":
        return _wide_to_rgb(im)
    return im.convert("RGB")


def _wide_to_rgb(im: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit, or float) single channel as 8-bit grey, by its bit depth."""
    import numpy as np

    pixels = np.asarray(im)
    scaled: Any
    if pixels.dtype.kind == "f":  # floats: 0..1, or scaled by their maximum
        top = float(pixels.max(initial=0.0))
        scaled = pixels * (255.0 / top) if top > 1.0 else pixels * 255.0
    elif im.mode.startswith("I;16"):
        scaled = pixels.astype(np.uint32) >> 8
    else:  # "I": 32-bit, in practice 16-bit values (older PNG readers) or 8-bit ones
        wide = pixels.astype(np.int64)
        top = int(wide.max(initial=0))
        scaled = wide >> 8 if 255 < top < 65536 else (wide * 255 // top if top > 255 else wide)
    grey = np.clip(scaled, 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _encode(im: Image.Image, o: ImagesConfig) -> bytes:
    buf = io.BytesIO()
    if o.encode_format == "png":
        im.save(buf, "PNG")
    else:
        im.save(buf, o.encode_format.upper(), quality=o.encode_quality)
    return buf.getvalue()
