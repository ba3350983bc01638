"""CPU per image of the images stage's hot path, Pillow against the faster libraries it could use.

    python benchmarks/image_libraries.py [--files 600] [--repeat 3] [--json OUT.json]

In one process, no network: the benchmark corpus's JPEGs (benchmarks/.work, made by run.py)
through fetchshard's own transform (Pillow: DCT-scaled draft, area resize, border to 256,
JPEG q95; and verify), and the same work done with simplejpeg (libjpeg-turbo decode with DCT
scaling and encode, Pillow's resize between), with OpenCV (reduced decode, INTER_AREA, as
img2dataset does it) and with pyvips (``thumbnail_buffer``, shrink-on-load), each where
importable. A library is worth an optional extra only if it is clearly
cheaper here (issue 17); medians of ``--repeat`` passes over the same files.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from fetchshard.config import ImagesConfig  # noqa: E402
from fetchshard.images.transform import process_image, setup  # noqa: E402

SIZE = 256


def _pillow(mode: str) -> Callable[[bytes], object]:
    config = ImagesConfig(mode=mode)
    return lambda data: process_image(data, config)


def _simplejpeg(mode: str) -> Callable[[bytes], object] | str:
    try:
        import numpy as np
        import simplejpeg
        from PIL import Image
    except ImportError as exc:
        return f"not importable: {exc}"

    def verify(data: bytes) -> object:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        return simplejpeg.decode_jpeg(
            data, min_width=max(1, w // 8), min_height=max(1, h // 8), strict=True
        )

    def resize(data: bytes) -> object:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
        scale = SIZE / max(w, h)
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        pixels = simplejpeg.decode_jpeg(data, min_width=tw, min_height=th)
        im = Image.fromarray(pixels).resize((tw, th), Image.Resampling.BOX)
        canvas = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
        canvas.paste(im, ((SIZE - tw) // 2, (SIZE - th) // 2))
        return simplejpeg.encode_jpeg(np.asarray(canvas), quality=95)

    return verify if mode == "verify" else resize


def _opencv(mode: str) -> Callable[[bytes], object] | str:
    try:
        import cv2
        import numpy as np
        from PIL import Image
    except ImportError as exc:
        return f"not importable: {exc}"
    cv2.setNumThreads(1)
    reduced = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4}
    reduced[8] = cv2.IMREAD_REDUCED_COLOR_8

    def verify(data: bytes) -> object:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_COLOR_8)

    def resize(data: bytes) -> object:
        w, h = Image.open(io.BytesIO(data)).size  # the header only, to pick the DCT scale
        scale = SIZE / max(w, h)
        tw, th = max(1, round(w * scale)), max(1, round(h * scale))
        k = next((k for k in (8, 4, 2) if w // k >= tw and h // k >= th), 1)
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), reduced[k])
        pixels = cv2.resize(pixels, (tw, th), interpolation=cv2.INTER_AREA)
        top, left = (SIZE - th) // 2, (SIZE - tw) // 2
        pixels = cv2.copyMakeBorder(
            pixels,
            *(top, SIZE - th - top, left, SIZE - tw - left),
            cv2.BORDER_CONSTANT,
            value=(255, 255, 255),
        )
        return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])[1]

    return verify if mode == "verify" else resize


def _pyvips(mode: str) -> Callable[[bytes], object] | str:
    try:
        import pyvips
    except (ImportError, OSError) as exc:
        return f"not importable: {exc}"
    pyvips.cache_set_max(0)  # every image is new: no cache to warm
    pyvips.concurrency_set(1)  # one thread per image, like a worker of the pool

    def verify(data: bytes) -> object:
        im = pyvips.Image.new_from_buffer(data, "", shrink=8, fail=True, access="sequential")
        return im.avg()

    def resize(data: bytes) -> object:
        im = pyvips.Image.thumbnail_buffer(data, SIZE, height=SIZE)
        if (im.width, im.height) != (SIZE, SIZE):
            im = im.gravity("centre", SIZE, SIZE, extend="white")
        return im.jpegsave_buffer(Q=95)

    return verify if mode == "verify" else resize


def _ms_per_image(fn: Callable[[bytes], object], data: list[bytes], repeat: int) -> float:
    fn(data[0])  # warm: imports, plugin registration
    runs = []
    for _ in range(repeat):
        start = time.process_time()
        for body in data:
            fn(body)
        runs.append((time.process_time() - start) / len(data) * 1000)
    return round(statistics.median(runs), 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default=str(HERE / ".work"))
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    files = sorted(Path(args.work).glob("corpus-*/img/*.jpg"))[: args.files]
    if not files:
        print(f"no corpus under {args.work}: run benchmarks/run.py once first", file=sys.stderr)
        return 2
    data = [f.read_bytes() for f in files]
    setup()
    result: dict[str, object] = {"files": len(data), "repeat": args.repeat}
    libraries = (("pillow", _pillow), ("simplejpeg", _simplejpeg), ("opencv", _opencv))
    for name, make in (*libraries, ("pyvips", _pyvips)):
        for mode in ("resize", "verify"):
            fn = make(mode)
            key = f"{name}-{mode}"
            result[key] = fn if isinstance(fn, str) else _ms_per_image(fn, data, args.repeat)
            print(f"{key}: {result[key]}{'' if isinstance(fn, str) else ' CPU ms per image'}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
