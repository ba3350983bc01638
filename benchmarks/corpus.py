"""The image corpus served to every client: seeded JPEGs of realistic sizes, cached on disk."""

from __future__ import annotations

import io
import json
import os
import random
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

MIN_BYTES = 8_000
MAX_BYTES = 200_000
# Bytes per pixel of the median image; with sides uniform in 200..1200 px this puts the
# median file near 67 KB, like the peer baseline's corpus.
_BASE_BPP = 0.16
_VERSION = 2  # bump when the generator changes, so stale caches are not reused


@dataclass(frozen=True)
class Corpus:
    root: Path  # served as the document root; files live in root/img/
    names: list[str]  # "0000.jpg", ...
    sizes: list[int]  # bytes, same order as names

    def summary(self) -> dict[str, float]:
        return {
            "files": len(self.sizes),
            "median_kb": round(statistics.median(self.sizes) / 1e3, 1),
            "min_kb": round(min(self.sizes) / 1e3, 1),
            "max_kb": round(max(self.sizes) / 1e3, 1),
            "mean_kb": round(statistics.fmean(self.sizes) / 1e3, 1),
        }


def _encode(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_image(seed: int, index: int) -> bytes:
    """One JPEG: smooth colour noise (upscaled random pixels) plus a gradient.

    Upscaled noise compresses like photo texture and is cheap to make; the JPEG quality is
    searched (a few cheap encodes) so the size lands near a per-image target."""
    rng = random.Random(f"{seed}-{index}")
    w, h = rng.randint(200, 1200), rng.randint(200, 1200)
    k = rng.randint(3, 6)
    sw, sh = w // k, h // k
    noise = Image.frombytes("RGB", (sw, sh), rng.randbytes(sw * sh * 3))
    grad = Image.linear_gradient("L").resize((sw, sh)).convert("RGB")
    # Blended at the small size and upscaled once: the resize is most of the cost.
    img = Image.blend(noise, grad, rng.uniform(0.2, 0.6)).resize((w, h), Image.Resampling.BILINEAR)
    target = w * h * _BASE_BPP * rng.lognormvariate(0.0, 0.35)
    target = min(max(target, MIN_BYTES * 1.1), MAX_BYTES * 0.9)
    lo, hi = 5, 95
    best = b""
    for _ in range(7):  # bisection on quality: size grows with quality
        q = (lo + hi) // 2
        data = _encode(img, q)
        if not best or abs(len(data) - target) < abs(len(best) - target):
            best = data
        if MIN_BYTES <= len(best) <= MAX_BYTES and abs(len(best) - target) <= 0.1 * target:
            break
        if lo >= hi:
            break
        if len(data) < target:
            lo = q + 1
        else:
            hi = q - 1
    return best


def _write_one(args: tuple[int, int, str]) -> int:
    seed, index, path = args
    data = make_image(seed, index)
    with open(path, "wb") as fh:
        fh.write(data)
    return len(data)


def ensure_corpus(work: Path, count: int = 2000, seed: int = 0) -> Corpus:
    """Generate the corpus once per (count, seed, generator version); reuse it afterwards."""
    root = work / f"corpus-v{_VERSION}-n{count}-s{seed}"
    manifest = root / "manifest.json"
    if manifest.exists():
        data = json.loads(manifest.read_text())
        return Corpus(root, data["names"], data["sizes"])
    img_dir = root / "img"
    img_dir.mkdir(parents=True, exist_ok=True)
    names = [f"{i:04d}.jpg" for i in range(count)]
    jobs = [(seed, i, str(img_dir / n)) for i, n in enumerate(names)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        sizes = list(pool.map(_write_one, jobs, chunksize=32))
    # Written last: a manifest means the corpus is complete.
    tmp = manifest.with_suffix(".tmp")
    tmp.write_text(json.dumps({"names": names, "sizes": sizes}))
    tmp.replace(manifest)
    return Corpus(root, names, sizes)


if __name__ == "__main__":
    import sys
    import time

    started = time.perf_counter()
    corpus = ensure_corpus(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("benchmarks/.work"))
    print(json.dumps({**corpus.summary(), "seconds": round(time.perf_counter() - started, 1)}))
