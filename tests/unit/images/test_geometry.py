"""images/geometry.py: the size each resize mode promises, and how it gets there."""

from __future__ import annotations

import itertools

import pytest

from fetchshard.images.geometry import MODES, Resize, plan_resize

# Landscape, portrait, square, tiny (1 x N), near-square and very elongated images.
DIMS: tuple[tuple[int, int], ...] = (
    (320, 240),
    (240, 320),
    (256, 256),
    (100, 100),
    (1, 1),
    (1, 2),
    (2, 1),
    (1, 500),
    (500, 1),
    (3, 1000),
    (1000, 999),
    (999, 1000),
    (257, 256),
    (255, 256),
    (100, 50),
    (50, 100),
    (4000, 3),
    (7, 13),
    (2000, 1500),
)
SIZES: tuple[int, ...] = (1, 64, 256, 512)
GRID = [(w, h, size, oib) for (w, h), size, oib in itertools.product(DIMS, SIZES, (False, True))]
GRID_IDS = [f"{w}x{h}-to{size}-{'oib' if oib else 'any'}" for w, h, size, oib in GRID]
RESIZING_MODES = tuple(m for m in MODES if m != "no")


def _kept_side(mode: str, width: int, height: int) -> int:
    """The side a mode measures against ``size``: the smaller or the larger one."""
    if mode in ("keep_ratio", "center_crop"):
        return min(width, height)
    return max(width, height)


def _keeps_pixels(mode: str, width: int, height: int, size: int, only_if_bigger: bool) -> bool:
    """Whether the image keeps its own pixels (no scaling) under the plan."""
    side = _kept_side(mode, width, height)
    return side == size or (only_if_bigger and side < size)


def _assert_ratio_kept(width: int, height: int, scaled: tuple[int, int], mode: str) -> None:
    """``scaled`` has the aspect ratio of ``width`` x ``height`` within one pixel."""
    sw, sh = scaled
    assert sw >= 1 and sh >= 1
    if width == _kept_side(mode, width, height):  # width was set, height follows it
        assert abs(sh - height * sw / width) <= 1
    else:
        assert abs(sw - width * sh / height) <= 1


def test_modes_are_the_documented_five() -> None:
    assert MODES == ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border")


@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_no_keeps_everything(width: int, height: int, size: int, only_if_bigger: bool) -> None:
    plan = plan_resize("no", width, height, size, only_if_bigger)
    assert plan == Resize(None, (width, height))
    assert plan.identity


@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_keep_ratio_makes_the_smaller_side_size(
    width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize("keep_ratio", width, height, size, only_if_bigger)
    assert plan.crop is None and plan.offset is None
    if only_if_bigger and min(width, height) < size:
        assert plan.out == (width, height)
        assert plan.scaled is None
        return
    assert min(plan.out) == size
    assert plan.out[0] >= size and plan.out[1] >= size
    _assert_ratio_kept(width, height, plan.out, "keep_ratio")
    if plan.scaled is not None:
        assert plan.scaled == plan.out


@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_keep_ratio_largest_makes_the_larger_side_size(
    width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize("keep_ratio_largest", width, height, size, only_if_bigger)
    assert plan.crop is None and plan.offset is None
    if only_if_bigger and max(width, height) < size:
        assert plan.out == (width, height)
        assert plan.scaled is None
        return
    assert max(plan.out) == size
    assert plan.out[0] <= size and plan.out[1] <= size
    _assert_ratio_kept(width, height, plan.out, "keep_ratio_largest")
    if plan.scaled is not None:
        assert plan.scaled == plan.out


@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_center_crop_gives_size_by_size(
    width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize("center_crop", width, height, size, only_if_bigger)
    assert plan.offset is None
    if only_if_bigger and min(width, height) < size:
        # Never scaled up: each side is cut to at most ``size``.
        assert plan.scaled is None
        assert plan.out == (min(width, size), min(height, size))
    else:
        assert plan.out == (size, size)
    if plan.scaled is not None:
        assert min(plan.scaled) == size
        _assert_ratio_kept(width, height, plan.scaled, "center_crop")


@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_center_crop_box_is_inside_and_centred(
    width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize("center_crop", width, height, size, only_if_bigger)
    sw, sh = plan.scaled if plan.scaled is not None else (width, height)
    if plan.crop is None:
        assert plan.out == (sw, sh)  # nothing to cut
        return
    left, top, right, bottom = plan.crop
    assert 0 <= left < right <= sw
    assert 0 <= top < bottom <= sh
    assert (right - left, bottom - top) == plan.out
    assert abs(left - (sw - right)) <= 1
    assert abs(top - (sh - bottom)) <= 1
    assert (right - left, bottom - top) != (sw, sh)  # a crop that cuts nothing is not set


@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_border_gives_size_by_size(
    width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize("border", width, height, size, only_if_bigger)
    assert plan.crop is None
    assert plan.out == (size, size)
    if only_if_bigger and max(width, height) < size:
        assert plan.scaled is None
    if plan.scaled is not None:
        assert max(plan.scaled) == size
        _assert_ratio_kept(width, height, plan.scaled, "border")


@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_border_offset_centres_the_image(
    width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize("border", width, height, size, only_if_bigger)
    iw, ih = plan.scaled if plan.scaled is not None else (width, height)
    if plan.offset is None:
        assert (iw, ih) == (size, size)  # fills the canvas: nothing to paste
        return
    ox, oy = plan.offset
    assert ox >= 0 and ox + iw <= size
    assert oy >= 0 and oy + ih <= size
    assert abs(ox - (size - ox - iw)) <= 1
    assert abs(oy - (size - oy - ih)) <= 1


@pytest.mark.parametrize("mode", RESIZING_MODES)
@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_scaling_happens_exactly_when_the_measured_side_must_change(
    mode: str, width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize(mode, width, height, size, only_if_bigger)
    if _keeps_pixels(mode, width, height, size, only_if_bigger):
        assert plan.scaled is None
    else:
        assert plan.scaled is not None
        assert plan.scaled != (width, height)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("width", "height", "size", "only_if_bigger"), GRID, ids=GRID_IDS)
def test_identity_only_when_nothing_changes(
    mode: str, width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    plan = plan_resize(mode, width, height, size, only_if_bigger)
    assert plan.identity == (plan.out == (width, height))
    assert plan.identity == (plan.scaled is None and plan.crop is None and plan.offset is None)


@pytest.mark.parametrize(
    ("mode", "width", "height", "size", "only_if_bigger", "expected"),
    [
        ("keep_ratio", 320, 240, 256, False, Resize((341, 256), (341, 256))),
        ("keep_ratio", 240, 320, 256, False, Resize((256, 341), (256, 341))),
        ("keep_ratio", 2000, 1500, 256, True, Resize((341, 256), (341, 256))),
        ("keep_ratio", 100, 50, 256, False, Resize((512, 256), (512, 256))),  # scaled up
        ("keep_ratio", 100, 50, 256, True, Resize(None, (100, 50))),
        ("keep_ratio", 300, 256, 256, False, Resize(None, (300, 256))),  # already there
        ("keep_ratio_largest", 320, 240, 256, False, Resize((256, 192), (256, 192))),
        ("keep_ratio_largest", 1, 500, 256, False, Resize((1, 256), (1, 256))),
        ("keep_ratio_largest", 500, 1, 256, False, Resize((256, 1), (256, 1))),
        ("keep_ratio_largest", 100, 50, 256, True, Resize(None, (100, 50))),
        ("keep_ratio_largest", 100, 50, 256, False, Resize((256, 128), (256, 128))),
        (
            "center_crop",
            320,
            240,
            256,
            False,
            Resize((341, 256), (256, 256), crop=(42, 0, 298, 256)),
        ),
        (
            "center_crop",
            240,
            320,
            256,
            False,
            Resize((256, 341), (256, 256), crop=(0, 42, 256, 298)),
        ),
        ("center_crop", 256, 256, 256, False, Resize(None, (256, 256))),
        ("center_crop", 512, 512, 256, False, Resize((256, 256), (256, 256))),
        ("center_crop", 100, 600, 256, True, Resize(None, (100, 256), crop=(0, 172, 100, 428))),
        ("center_crop", 100, 50, 256, True, Resize(None, (100, 50))),
        ("border", 320, 240, 256, False, Resize((256, 192), (256, 256), offset=(0, 32))),
        ("border", 240, 320, 256, False, Resize((192, 256), (256, 256), offset=(32, 0))),
        ("border", 100, 50, 256, True, Resize(None, (256, 256), offset=(78, 103))),
        ("border", 100, 50, 256, False, Resize((256, 128), (256, 256), offset=(0, 64))),
        ("border", 256, 256, 256, True, Resize(None, (256, 256))),
        ("border", 512, 512, 256, False, Resize((256, 256), (256, 256))),
    ],
)
def test_worked_examples(
    mode: str, width: int, height: int, size: int, only_if_bigger: bool, expected: Resize
) -> None:
    assert plan_resize(mode, width, height, size, only_if_bigger) == expected


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("width", "height"), [(0, 10), (10, 0), (0, 0), (-1, 10), (10, -5)])
def test_an_image_without_pixels_is_refused(mode: str, width: int, height: int) -> None:
    with pytest.raises(ValueError, match="no pixels"):
        plan_resize(mode, width, height, 256, False)


@pytest.mark.parametrize("mode", ["", "stretch", "KEEP_RATIO", "keep-ratio", "center"])
@pytest.mark.parametrize(("width", "height", "size"), [(320, 240, 256), (256, 256, 256)])
@pytest.mark.parametrize("only_if_bigger", [False, True])
def test_an_unknown_mode_is_refused(
    mode: str, width: int, height: int, size: int, only_if_bigger: bool
) -> None:
    with pytest.raises(ValueError, match="unknown resize mode"):
        plan_resize(mode, width, height, size, only_if_bigger)
