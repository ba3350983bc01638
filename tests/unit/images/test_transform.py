"""images/transform.py: one image's bytes in, an :class:`ImageResult` out (no I/O)."""

from __future__ import annotations

import functools
import hashlib
import io
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageOps

from fetchshard.config import ImagesConfig
from fetchshard.images.geometry import MODES
from fetchshard.images.transform import (
    DECODE,
    FILTERED,
    INTERPOLATIONS,
    ImageResult,
    process_image,
    setup,
)
from server import images
from server.images import BLUE, GREEN, RED, Case, corpus_bytes

Colour = tuple[float, float, float]

OK_CASES = tuple(case for case in images.CASES if case.status == "ok")
# What the transform itself makes of each corpus status: the fetch layer refuses
# "bad_content" bodies before the stage, but given them the stage cannot decode them.
KIND = {"ok": None, "decode": DECODE, "bad_content": DECODE, "filtered": FILTERED}
WHITE, BLACK = (255, 255, 255), (0, 0, 0)
TOLERANCE = 30  # per channel, for JPEG error around the corpus colours


@pytest.fixture(scope="module", autouse=True)
def _worker() -> Iterator[None]:
    """What the pool does in each worker, undone afterwards (Pillow's pixel limit is global)."""
    limit = Image.MAX_IMAGE_PIXELS
    setup()
    yield
    Image.MAX_IMAGE_PIXELS = limit


def _open(result: ImageResult) -> Image.Image:
    assert result.data is not None
    im = Image.open(io.BytesIO(result.data))
    im.load()
    return im


def _pixels(result: ImageResult) -> np.ndarray:
    return np.asarray(_open(result).convert("RGB"), dtype=np.float64)


def _colour(rgb: tuple[int, int, int]) -> str:
    """``rgb`` as images.background writes it."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _mean(region: np.ndarray) -> Colour:
    r, g, b = region.reshape(-1, 3).mean(axis=0)
    return float(r), float(g), float(b)


def _rows(pixels: np.ndarray, start: float, stop: float) -> Colour:
    """The mean colour of the rows from ``start`` to ``stop`` (fractions of the height)."""
    h = pixels.shape[0]
    a = int(h * start)
    return _mean(pixels[a : max(a + 1, int(h * stop))])


def _near(colour: Colour, target: tuple[int, int, int], tolerance: float = TOLERANCE) -> bool:
    return all(abs(c - t) <= tolerance for c, t in zip(colour, target, strict=True))


def _assert_upright_picture(pixels: np.ndarray) -> None:
    """The corpus picture the right way up: red top third, green middle, blue bottom third."""
    top, middle, bottom = (
        _rows(pixels, 0.05, 0.2),
        _rows(pixels, 0.45, 0.55),
        _rows(pixels, 0.8, 0.95),
    )
    assert _near(top, RED), top
    assert _near(middle, GREEN), middle
    assert _near(bottom, BLUE), bottom


def _promised(mode: str, width: int, height: int, size: int) -> tuple[int, int]:
    """The stored size the geometry docstring promises (without only_if_bigger)."""
    if mode == "no":
        return width, height
    if mode in ("center_crop", "border"):
        return size, size
    by_width = (width <= height) if mode == "keep_ratio" else (width >= height)
    if by_width:
        return size, max(1, round(height * size / width))
    return max(1, round(width * size / height)), size


def _save(im: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **options)
    return buf.getvalue()


def _bands(width: int, height: int) -> Image.Image:
    """Red top third, green middle, blue bottom third, like the corpus picture."""
    im = Image.new("RGB", (width, height), GREEN)
    im.paste(RED, (0, 0, width, height // 3))
    im.paste(BLUE, (0, height - height // 3, width, height))
    return im


@functools.cache
def _large_jpeg(orientation: int = 1) -> bytes:
    """2000x1500 upright (1500x2000 with orientation 6): big enough for DCT scaling."""
    if orientation == 1:
        return _save(_bands(2000, 1500), "JPEG", quality=90)
    stored = _bands(1500, 2000).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(stored, "JPEG", quality=90, exif=exif.tobytes())


@functools.cache
def _rgb_png() -> bytes:
    return _save(_bands(120, 90), "PNG")


def _resize(name: str, **options: object) -> ImageResult:
    return process_image(corpus_bytes(name), ImagesConfig(mode="resize", **options))  # type: ignore[arg-type]


# --- every corpus case: statuses and original_* -----------------------------------------


@pytest.mark.parametrize("mode", ["verify", "resize"])
@pytest.mark.parametrize("case", images.CASES, ids=lambda c: c.name)
def test_every_case_gets_its_status(case: Case, mode: str) -> None:
    result = process_image(corpus_bytes(case.name), ImagesConfig(mode=mode))
    assert result.kind == KIND[case.status], result.message
    if case.status == "ok":
        assert result.message is None
        assert (result.original_width, result.original_height) == case.size
        assert result.original_format == case.source_format
    else:
        assert result.message
        assert result == ImageResult(result.kind, result.message)  # nothing else is set


def test_a_decompression_bomb_is_filtered_by_max_pixels() -> None:
    result = process_image(corpus_bytes("bomb.png"), ImagesConfig(mode="verify"))
    assert result.kind == FILTERED
    assert result.message is not None
    assert "images.max_pixels" in result.message
    assert "20000x20000" in result.message


@pytest.mark.parametrize("name", ["page.jpg", "empty.jpg"])
def test_a_body_that_is_no_image_is_a_decode_failure(name: str) -> None:
    result = process_image(corpus_bytes(name), ImagesConfig(mode="resize"))
    assert result.kind == DECODE
    assert result.message == "not an image Pillow can read"


@pytest.mark.parametrize("mode", ["verify", "resize"])
@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("name", ["baseline.jpg", "progressive.jpg"])
def test_a_cut_jpeg_is_a_decode_failure(name: str, fraction: float, mode: str) -> None:
    data = corpus_bytes(name)
    result = process_image(data[: int(len(data) * fraction)], ImagesConfig(mode=mode))
    assert result.kind == DECODE
    assert result.data is None


@pytest.mark.parametrize("case", OK_CASES, ids=lambda c: c.name)
def test_verify_keeps_the_original(case: Case) -> None:
    result = process_image(corpus_bytes(case.name), ImagesConfig(mode="verify"))
    assert result.kind is None
    assert result.data is None
    assert result.sha256 is None and result.md5 is None and result.original_md5 is None
    assert (result.width, result.height) == case.size
    assert result.format == case.source_format


@pytest.mark.parametrize("case", OK_CASES, ids=lambda c: c.name)
def test_resize_with_defaults_stores_a_256_square_jpeg(case: Case) -> None:
    result = _resize(case.name)
    im = _open(result)
    assert im.format == "JPEG"
    assert im.size == (256, 256)
    assert (result.width, result.height) == (256, 256)
    assert result.format == "jpeg"
    assert result.data is not None
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()
    assert result.md5 is None and result.original_md5 is None


MATRIX_CASES = (
    "baseline.jpg",
    "progressive.jpg",
    "cmyk.jpg",
    "rotated.jpg",
    "alpha.png",
    "gray16.png",
    "palette.gif",
    "animated.webp",
    "picture.tif",
    "picture.bmp",
)


@pytest.mark.parametrize("size", [96, 300])  # a downscale and an upscale of every case
@pytest.mark.parametrize("resize_mode", MODES)
@pytest.mark.parametrize("name", MATRIX_CASES)
def test_each_resize_mode_stores_its_promised_size(name: str, resize_mode: str, size: int) -> None:
    case = images.BY_NAME[name]
    assert case.size is not None
    result = _resize(name, resize_mode=resize_mode, image_size=size)
    assert result.kind is None, result.message
    expected = _promised(resize_mode, case.size[0], case.size[1], size)
    im = _open(result)
    assert im.format == "JPEG"
    assert im.mode == "RGB"
    assert im.size == expected
    assert (result.width, result.height) == expected
    assert (result.original_width, result.original_height) == case.size
    assert result.original_format == case.source_format
    assert result.data is not None
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()


# --- orientation, alpha, colour modes, animation -----------------------------------------


@pytest.mark.parametrize(("resize_mode", "size"), [("keep_ratio", 200), ("no", 256)])
def test_an_exif_rotated_jpeg_comes_out_upright(resize_mode: str, size: int) -> None:
    result = _resize("rotated.jpg", resize_mode=resize_mode, image_size=size)
    assert (result.original_width, result.original_height) == (120, 200)
    expected = (200, 333) if resize_mode == "keep_ratio" else (120, 200)
    assert (result.width, result.height) == expected
    _assert_upright_picture(_pixels(result))


# The transposition that turns an upright picture into what a camera with each EXIF
# orientation stores (the inverse of the one that makes it upright).
_STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _quadrants() -> Image.Image:
    """96x64 upright: green top-left, red top-right, blue bottom (tells all 8 apart)."""
    im = Image.new("RGB", (96, 64), BLUE)
    im.paste(GREEN, (0, 0, 48, 32))
    im.paste(RED, (48, 0, 96, 32))
    return im


def _assert_quadrants(pixels: np.ndarray) -> None:
    assert pixels.shape[:2] == (64, 96)
    assert _near(_mean(pixels[6:26, 6:42]), GREEN)
    assert _near(_mean(pixels[6:26, 54:90]), RED)
    assert _near(_mean(pixels[38:58, 6:90]), BLUE)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_is_undone(orientation: int) -> None:
    upright = _quadrants()
    stored = upright if orientation == 1 else upright.transpose(_STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _save(stored, "JPEG", quality=95, exif=exif.tobytes())
    # The test's own construction, checked against Pillow's reading of the orientation.
    reference = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    _assert_quadrants(np.asarray(reference.convert("RGB"), dtype=np.float64))

    result = process_image(data, ImagesConfig(mode="resize", resize_mode="no"))
    assert (result.original_width, result.original_height) == (96, 64)
    _assert_quadrants(_pixels(result))


@pytest.mark.parametrize("background", [WHITE, BLACK, (10, 200, 90)])
def test_alpha_is_composited_on_the_background(background: tuple[int, int, int]) -> None:
    result = _resize("alpha.png", resize_mode="no", background=_colour(background))
    pixels = _pixels(result)
    assert pixels.shape[:2] == (100, 160)
    transparent = _mean(pixels[:, 4:72])  # the left half (x < 80) is fully transparent
    assert _near(transparent, background, 8), transparent
    assert _near(_mean(pixels[4:28, 90:156]), RED)  # the opaque right half is the picture
    assert _near(_mean(pixels[72:96, 90:156]), BLUE)


@pytest.mark.parametrize("background", [WHITE, BLACK])
def test_border_fills_the_canvas_with_the_background(background: tuple[int, int, int]) -> None:
    # 320x240 -> 256x192 pasted at (0, 32) on a 256x256 canvas.
    pixels = _pixels(
        _resize(
            "baseline.jpg", resize_mode="border", image_size=256, background=_colour(background)
        )
    )
    assert pixels.shape[:2] == (256, 256)
    assert _near(_mean(pixels[0:28]), background, 8)
    assert _near(_mean(pixels[228:256]), background, 8)
    assert _near(_mean(pixels[40:90]), RED)
    assert _near(_mean(pixels[170:220]), BLUE)


def test_a_transparent_palette_png_is_composited_on_the_background() -> None:
    im = Image.new("L", (64, 32), 0)
    im.paste(200, (32, 0, 64, 32))
    data = _save(im.convert("P"), "PNG", transparency=0)  # palette index 0 transparent
    pixels = _pixels(
        process_image(data, ImagesConfig(mode="resize", resize_mode="no", background="white"))
    )
    assert _near(_mean(pixels[:, 2:30]), WHITE, 8)
    assert _near(_mean(pixels[:, 34:62]), (200, 200, 200), 8)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_colour_key_png_is_composited_on_the_background(mode: str) -> None:
    key: int | tuple[int, int, int] = 0 if mode == "L" else (0, 0, 0)
    im = Image.new(mode, (64, 32), key)
    im.paste(200 if mode == "L" else (200, 200, 200), (32, 0, 64, 32))
    data = _save(im, "PNG", transparency=key)  # tRNS: the key colour is transparent
    assert Image.open(io.BytesIO(data)).convert("RGBA").getpixel((0, 0)) == (0, 0, 0, 0)
    pixels = _pixels(
        process_image(data, ImagesConfig(mode="resize", resize_mode="no", background="white"))
    )
    assert _near(_mean(pixels[:, 2:30]), WHITE, 8)


@pytest.mark.parametrize("resize_mode", ["no", "keep_ratio"])
def test_16_bit_grey_is_scaled_down_not_clipped(resize_mode: str) -> None:
    result = _resize("gray16.png", resize_mode=resize_mode, image_size=128)
    grey = _pixels(result).mean(axis=2)
    assert grey.shape == ((64, 128) if resize_mode == "no" else (128, 256))
    rows = grey.mean(axis=1)
    assert rows[: len(rows) // 10].mean() < 40  # dark at the top
    assert rows[-len(rows) // 10 :].mean() > 215  # bright at the bottom
    assert 100 < rows[len(rows) // 2] < 160  # a true mid-grey in the middle, not clipped
    blocks = rows.reshape(8, -1).mean(axis=1)
    assert all(np.diff(blocks) > 15)  # rising all the way down
    assert (grey > 250).mean() < 0.2  # not mostly white


def test_cmyk_is_converted_to_rgb() -> None:
    result = _resize("cmyk.jpg", resize_mode="no")
    assert (result.width, result.height) == (200, 150)
    _assert_upright_picture(_pixels(result))


@pytest.mark.parametrize("name", ["palette.gif", "picture.tif", "picture.bmp", "progressive.jpg"])
def test_other_sources_keep_their_colours(name: str) -> None:
    _assert_upright_picture(_pixels(_resize(name, resize_mode="keep_ratio", image_size=200)))


@pytest.mark.parametrize("name", ["animated.gif", "animated.webp"])
def test_an_animation_stores_its_first_frame(name: str) -> None:
    case = images.BY_NAME[name]
    source = Image.open(io.BytesIO(corpus_bytes(name)))
    assert getattr(source, "n_frames", 1) > 1  # the corpus file really is animated
    result = _resize(name, resize_mode="no")
    im = _open(result)
    assert im.format == "JPEG"
    assert getattr(im, "n_frames", 1) == 1
    assert not getattr(im, "is_animated", False)
    assert im.size == case.size
    # The later frames are the picture turned upside down: only the first is red on top.
    _assert_upright_picture(np.asarray(im.convert("RGB"), dtype=np.float64))


# --- filters ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["verify", "resize"])
@pytest.mark.parametrize(
    ("options", "kind", "named"),
    [
        ({"min_image_size": 241}, FILTERED, "images.min_image_size"),
        ({"min_image_size": 240}, None, None),
        ({"max_aspect_ratio": 1.3}, FILTERED, "images.max_aspect_ratio"),
        ({"max_aspect_ratio": 4 / 3}, None, None),
        ({"max_pixels": 320 * 240 - 1}, FILTERED, "images.max_pixels"),
        ({"max_pixels": 320 * 240}, None, None),
    ],
)
def test_filters_on_a_320x240_image(
    mode: str, options: dict[str, object], kind: str | None, named: str | None
) -> None:
    result = process_image(corpus_bytes("baseline.jpg"), ImagesConfig(mode=mode, **options))  # type: ignore[arg-type]
    assert result.kind == kind, result.message
    if named is None:
        assert (result.original_width, result.original_height) == (320, 240)
    else:
        assert result.message is not None
        assert named in result.message
        assert result == ImageResult(FILTERED, result.message)


@pytest.mark.parametrize(("min_image_size", "kind"), [(121, FILTERED), (120, None)])
def test_min_image_size_measures_the_upright_image(min_image_size: int, kind: str | None) -> None:
    """rotated.jpg is stored 200x120 and upright 120x200: the smaller side is 120 either way."""
    result = process_image(
        corpus_bytes("rotated.jpg"), ImagesConfig(mode="resize", min_image_size=min_image_size)
    )
    assert result.kind == kind


# --- skip_reencode ---------------------------------------------------------------------


def test_skip_reencode_keeps_an_untouched_jpeg() -> None:
    result = _resize("baseline.jpg", resize_mode="no", encode_format="jpeg", skip_reencode=True)
    assert result.kind is None
    assert result.data is None
    assert result.sha256 is None
    assert (result.width, result.height) == (320, 240)
    assert result.format == "jpeg"


def test_skip_reencode_keeps_a_jpeg_already_at_the_target_size() -> None:
    result = _resize("baseline.jpg", resize_mode="keep_ratio", image_size=240, skip_reencode=True)
    assert result.data is None
    assert (result.width, result.height) == (320, 240)


def test_skip_reencode_keeps_a_grey_jpeg() -> None:
    data = _save(Image.new("L", (64, 48), 128), "JPEG")
    result = process_image(data, ImagesConfig(mode="resize", resize_mode="no", skip_reencode=True))
    assert result.kind is None
    assert result.data is None


def test_skip_reencode_still_resizes() -> None:
    result = _resize("baseline.jpg", resize_mode="keep_ratio", image_size=200, skip_reencode=True)
    assert result.data is not None
    assert _open(result).size == (267, 200)


def test_without_skip_reencode_an_untouched_jpeg_is_reencoded() -> None:
    result = _resize("baseline.jpg", resize_mode="no", skip_reencode=False)
    assert result.data is not None
    assert result.data != corpus_bytes("baseline.jpg")
    assert _open(result).size == (320, 240)


def test_skip_reencode_turns_a_rotated_jpeg_upright() -> None:
    result = _resize("rotated.jpg", resize_mode="no", skip_reencode=True)
    assert result.data is not None
    assert _open(result).size == (120, 200)
    _assert_upright_picture(_pixels(result))


def test_skip_reencode_converts_cmyk() -> None:
    result = _resize("cmyk.jpg", resize_mode="no", skip_reencode=True)
    assert result.data is not None
    assert _open(result).mode == "RGB"


def test_skip_reencode_reencodes_a_png_to_jpeg() -> None:
    result = process_image(
        _rgb_png(),
        ImagesConfig(mode="resize", resize_mode="no", encode_format="jpeg", skip_reencode=True),
    )
    assert result.data is not None
    im = _open(result)
    assert im.format == "JPEG"
    assert im.size == (120, 90)
    assert result.format == "jpeg"
    assert result.original_format == "png"


def test_skip_reencode_keeps_a_png_stored_as_png() -> None:
    result = process_image(
        _rgb_png(),
        ImagesConfig(mode="resize", resize_mode="no", encode_format="png", skip_reencode=True),
    )
    assert result.kind is None
    assert result.data is None
    assert result.format == "png"


# --- encoding, hashes, only_if_bigger ------------------------------------------------------


@pytest.mark.parametrize(("encode_format", "pil_format"), [("png", "PNG"), ("webp", "WEBP")])
@pytest.mark.parametrize("name", ["baseline.jpg", "alpha.png", "gray16.png"])
def test_encode_formats(name: str, encode_format: str, pil_format: str) -> None:
    case = images.BY_NAME[name]
    assert case.size is not None
    result = _resize(name, resize_mode="keep_ratio", image_size=100, encode_format=encode_format)
    im = _open(result)
    assert im.format == pil_format
    assert im.mode == "RGB"
    assert im.size == _promised("keep_ratio", case.size[0], case.size[1], 100)
    assert result.format == encode_format
    assert result.data is not None
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()


def test_a_png_is_stored_losslessly() -> None:
    result = process_image(
        _rgb_png(), ImagesConfig(mode="resize", resize_mode="no", encode_format="png")
    )
    assert _open(result).tobytes() == _bands(120, 90).tobytes()


def test_quality_changes_the_jpeg_size() -> None:
    low = _resize("baseline.jpg", resize_mode="no", encode_quality=30)
    high = _resize("baseline.jpg", resize_mode="no", encode_quality=95)
    assert low.data is not None and high.data is not None
    assert len(low.data) < len(high.data)
    assert _open(low).size == _open(high).size == (320, 240)


@pytest.mark.parametrize("interpolation", sorted(INTERPOLATIONS))
def test_every_interpolation_resizes_both_ways(interpolation: str) -> None:
    down = _resize(
        "baseline.jpg",
        resize_mode="keep_ratio",
        image_size=100,
        downscale_interpolation=interpolation,
    )
    up = _resize(
        "baseline.jpg",
        resize_mode="keep_ratio",
        image_size=400,
        upscale_interpolation=interpolation,
    )
    assert _open(down).size == (133, 100)
    assert _open(up).size == (533, 400)
    _assert_upright_picture(_pixels(down))
    _assert_upright_picture(_pixels(up))


def test_md5_of_the_original_and_of_the_stored_bytes() -> None:
    data = corpus_bytes("baseline.jpg")
    result = process_image(data, ImagesConfig(mode="resize", hash="md5"))
    assert result.data is not None
    assert result.original_md5 == hashlib.md5(data).hexdigest()
    assert result.md5 == hashlib.md5(result.data).hexdigest()
    assert result.sha256 == hashlib.sha256(result.data).hexdigest()
    assert result.md5 != result.original_md5


def test_md5_in_verify_is_of_the_original_only() -> None:
    data = corpus_bytes("progressive.jpg")
    result = process_image(data, ImagesConfig(mode="verify", hash="md5"))
    assert result.original_md5 == hashlib.md5(data).hexdigest()
    assert result.md5 is None and result.sha256 is None and result.data is None


def test_md5_with_skip_reencode_is_of_the_original_only() -> None:
    data = corpus_bytes("baseline.jpg")
    result = process_image(
        data, ImagesConfig(mode="resize", resize_mode="no", skip_reencode=True, hash="md5")
    )
    assert result.data is None
    assert result.original_md5 == hashlib.md5(data).hexdigest()
    assert result.md5 is None


def test_only_if_bigger_does_not_scale_up() -> None:
    result = _resize(
        "baseline.jpg", resize_mode="keep_ratio", image_size=512, resize_only_if_bigger=True
    )
    assert _open(result).size == (320, 240)
    assert (result.width, result.height) == (320, 240)


def test_without_only_if_bigger_it_scales_up() -> None:
    result = _resize(
        "baseline.jpg", resize_mode="keep_ratio", image_size=512, resize_only_if_bigger=False
    )
    assert _open(result).size == (683, 512)


def test_only_if_bigger_border_centres_the_original_pixels() -> None:
    # 320x240 pasted unscaled at (96, 136) on a 512x512 canvas.
    result = _resize(
        "baseline.jpg", resize_mode="border", image_size=512, resize_only_if_bigger=True
    )
    pixels = _pixels(result)
    assert pixels.shape[:2] == (512, 512)
    assert _near(_mean(pixels[0:128]), WHITE, 8)
    assert _near(_mean(pixels[384:512]), WHITE, 8)
    assert _near(_mean(pixels[140:210, 0:90]), WHITE, 8)
    assert _near(_mean(pixels[140:210, 100:410]), RED)
    assert _near(_mean(pixels[300:370, 100:410]), BLUE)


# --- large JPEGs (DCT-scaled decoding) and tiny images -------------------------------------


@pytest.mark.parametrize(
    ("resize_mode", "expected"),
    [
        ("keep_ratio", (341, 256)),
        ("keep_ratio_largest", (256, 192)),
        ("center_crop", (256, 256)),
        ("border", (256, 256)),
    ],
)
def test_a_large_jpeg_downscaled_a_lot(resize_mode: str, expected: tuple[int, int]) -> None:
    result = process_image(_large_jpeg(), ImagesConfig(mode="resize", resize_mode=resize_mode))
    assert (result.original_width, result.original_height) == (2000, 1500)
    assert _open(result).size == expected
    assert (result.width, result.height) == expected
    if resize_mode != "border":  # border adds background bands above and below
        _assert_upright_picture(_pixels(result))


def test_a_large_rotated_jpeg_downscaled_a_lot() -> None:
    """Stored 2000x1500 with orientation 6: the DCT target is the stored (turned) size."""
    result = process_image(
        _large_jpeg(orientation=6), ImagesConfig(mode="resize", resize_mode="keep_ratio")
    )
    assert (result.original_width, result.original_height) == (1500, 2000)
    assert _open(result).size == (256, 341)
    _assert_upright_picture(_pixels(result))


def test_a_large_jpeg_verifies() -> None:
    result = process_image(_large_jpeg(), ImagesConfig(mode="verify"))
    assert result.kind is None
    assert (result.width, result.height) == (2000, 1500)


@pytest.mark.parametrize(
    ("size", "fmt", "resize_mode", "target", "expected"),
    [
        ((1, 1), "PNG", "keep_ratio", 8, (8, 8)),
        ((1, 1), "JPEG", "border", 8, (8, 8)),
        ((1, 40), "JPEG", "keep_ratio_largest", 20, (1, 20)),
        ((40, 1), "PNG", "keep_ratio_largest", 20, (20, 1)),
        ((3, 1), "PNG", "border", 16, (16, 16)),
        ((1, 300), "JPEG", "center_crop", 16, (16, 16)),
        ((2, 3), "BMP", "keep_ratio", 10, (10, 15)),
    ],
)
def test_tiny_images(
    size: tuple[int, int],
    fmt: str,
    resize_mode: str,
    target: int,
    expected: tuple[int, int],
) -> None:
    data = _save(Image.new("RGB", size, RED), fmt)
    result = process_image(
        data, ImagesConfig(mode="resize", resize_mode=resize_mode, image_size=target)
    )
    assert result.kind is None, result.message
    assert (result.original_width, result.original_height) == size
    assert _open(result).size == expected
