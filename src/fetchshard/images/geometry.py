"""What size an image becomes under each resize mode: pure arithmetic, no pixels.

=====================  ================================================================
mode                   the stored image
=====================  ================================================================
``no``                 the original size
``keep_ratio``         the smaller side is ``size``, the aspect ratio kept
``keep_ratio_largest`` the larger side is ``size``, the aspect ratio kept
``center_crop``        the smaller side scaled to ``size``, then the centre ``size`` x ``size``
``border``             the larger side scaled to ``size``, then centred on a ``size`` x
                       ``size`` canvas of the background colour
=====================  ================================================================

With ``only_if_bigger`` an image is never scaled up: one whose scaled side is already at most
``size`` keeps its pixels; ``border`` still centres it on the ``size`` x ``size`` canvas, and
``center_crop`` cuts each side to at most ``size``.
"""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")


@dataclass(frozen=True, slots=True)
class Resize:
    """How one image becomes the stored one: scale to ``scaled`` (None: keep), then cut to
    ``crop`` (left, top, right, bottom) or paste at ``offset`` on a canvas of ``out``."""

    scaled: tuple[int, int] | None
    out: tuple[int, int]
    crop: tuple[int, int, int, int] | None = None
    offset: tuple[int, int] | None = None  # on a canvas of ``out`` (border)

    @property
    def identity(self) -> bool:
        return self.scaled is None and self.crop is None and self.offset is None


def _scaled(width: int, height: int, side: int, by_smaller: bool) -> tuple[int, int]:
    """(width, height) with the smaller (or larger) side made ``side``, ratio kept."""
    ref = min(width, height) if by_smaller else max(width, height)
    if width == ref:
        return side, max(1, round(height * side / width))
    return max(1, round(width * side / height)), side


def plan_resize(mode: str, width: int, height: int, size: int, only_if_bigger: bool) -> Resize:
    """The :class:`Resize` of a ``width`` x ``height`` image (already upright) in ``mode``."""
    if width < 1 or height < 1:
        raise ValueError(f"an image of {width}x{height} has no pixels")
    if mode == "no":
        return Resize(None, (width, height))
    by_smaller = mode in ("keep_ratio", "center_crop")
    ref = min(width, height) if by_smaller else max(width, height)
    scaled: tuple[int, int] | None
    if ref == size or (only_if_bigger and ref < size):
        scaled, (w, h) = None, (width, height)
    else:
        scaled = w, h = _scaled(width, height, size, by_smaller)
    if mode in ("keep_ratio", "keep_ratio_largest"):
        return Resize(scaled, (w, h))
    if mode == "center_crop":
        cw, ch = min(w, size), min(h, size)
        if (cw, ch) == (w, h):
            return Resize(scaled, (w, h))
        left, top = (w - cw) // 2, (h - ch) // 2
        return Resize(scaled, (cw, ch), crop=(left, top, left + cw, top + ch))
    if mode == "border":
        if (w, h) == (size, size):
            return Resize(scaled, (w, h))
        return Resize(scaled, (size, size), offset=((size - w) // 2, (size - h) // 2))
    raise ValueError(f"unknown resize mode {mode!r} (known: {', '.join(MODES)})")
