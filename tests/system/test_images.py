"""The images stage through real ranks: the generated corpus from the loopback server, the
pool beside the event loop, and the merged dataset as users load it."""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from server import ServerProcess
from server.images import CASES, corpus_bytes
from util import (
    FAST,
    assert_exactly_once,
    fetchshard_cmd,
    part_files,
    read_current,
    run_subprocess,
    wait_for,
)


def corpus_urls(server: ServerProcess, tmp_path: Path, tag: str) -> dict[str, str]:
    """url -> corpus name, one URL per case (``tag`` keeps URLs apart between tests)."""
    urls = {server.url(f"/corpus/{c.name}?t={tag}"): c.name for c in CASES}
    (tmp_path / "urls.txt").write_text("".join(f"{u}\n" for u in urls))
    return urls


def fetched(
    src: Path, out: Path, *flags: str, env: dict[str, str] | None = None, timeout: float = 120
) -> None:
    """``fetchshard run SRC -o OUT`` with the fast test settings and ``flags``; it must pass."""
    done = run_subprocess("run", str(src), "-o", str(out), *FAST, *flags, env=env, timeout=timeout)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("mode", "size", "want"),
    [
        ("border", 64, lambda w, h: (64, 64)),
        ("border+processes", 64, lambda w, h: (64, 64)),  # the same through worker processes
        ("center_crop", 48, lambda w, h: (48, 48)),
        (
            "keep_ratio",
            40,
            lambda w, h: (40, round(h * 40 / w)) if w <= h else (round(w * 40 / h), 40),
        ),
        (
            "keep_ratio_largest",
            50,
            lambda w, h: (50, round(h * 50 / w)) if w >= h else (round(w * 50 / h), 50),
        ),
        ("no", 0, lambda w, h: (w, h)),
    ],
)
def test_every_corpus_file_lands_in_its_status_with_the_promised_size(
    mode: str, size: int, want: object, server_process: ServerProcess, tmp_path: Path
) -> None:
    urls = corpus_urls(server_process, tmp_path, f"{mode}{size}")
    out = tmp_path / "out"
    resize = ["--resize", str(size)] if size else ["--images", "resize"]
    mode, _, pool = mode.partition("+")
    resize += ["--set", f"images.pool={pool or 'threads'}", "--resize-mode", mode]
    fetched(tmp_path / "urls.txt", out, *resize)
    rows = {r["url"]: r for r in read_current(out).to_pylist()}
    assert len(rows) == len(CASES)
    by_name = {c.name: c for c in CASES}
    for url, name in urls.items():
        case, row = by_name[name], rows[url]
        if case.status != "ok":
            assert row["status"] == "failed" and row["error_kind"] == case.status, row
            assert row["body"] is None and row["attempts"] == 1  # never retried
            continue
        assert row["status"] == "ok", row
        w, h = case.size  # type: ignore[misc]
        assert (row["original_width"], row["original_height"]) == (w, h), name
        assert row["original_format"] == case.source_format
        expected = want(w, h)  # type: ignore[operator]
        assert (row["width"], row["height"]) == expected, name
        stored = Image.open(io.BytesIO(row["body"]))
        assert stored.format == "JPEG" and stored.size == expected and stored.mode == "RGB"
        assert row["content_type"] == "image/jpeg" and row["format"] == "jpeg"
        assert row["size"] == len(row["body"])
        assert row["sha256"] == hashlib.sha256(row["body"]).hexdigest()
        original = corpus_bytes(name)
        assert row["original_size"] == len(original)
        assert row["original_sha256"] == hashlib.sha256(original).hexdigest()
    stats = json.loads(next(out.glob("stats/*.json")).read_text())
    assert stats["ok"] == sum(c.status == "ok" for c in CASES)  # the stage's failures recounted
    assert stats["errors"]["decode"] == 1 and stats["errors"]["filtered"] == 1


def test_verify_keeps_the_original_bytes_and_md5_is_selectable(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    urls = corpus_urls(server_process, tmp_path, "verify")
    out = tmp_path / "out"
    fetched(
        tmp_path / "urls.txt",
        out,
        "--images",
        "verify",
        "--set",
        "images.hash=md5",
    )
    rows = {r["url"]: r for r in read_current(out).to_pylist()}
    for url, name in urls.items():
        case, row = next(c for c in CASES if c.name == name), rows[url]
        if case.status != "ok":
            assert row["error_kind"] == case.status, row
            continue
        original = corpus_bytes(name)
        assert row["body"] == original  # stored unchanged
        assert (
            (row["width"], row["height"])
            == case.size
            == (
                row["original_width"],
                row["original_height"],
            )
        )
        assert row["original_md5"] == row["md5"] == hashlib.md5(original).hexdigest()
        assert row["sha256"] == hashlib.sha256(original).hexdigest()


def test_a_resized_run_merges_to_an_image_column_datasets_decodes(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    import datasets

    urls = [server_process.url(f"/image/{i}?w={100 + i}&h={60 + 2 * i}") for i in range(30)]
    src = tmp_path / "urls.txt"
    src.write_text("".join(f"{u}\n" for u in urls))
    out, merged = tmp_path / "out", tmp_path / "merged"
    fetched(src, out, "--resize", "32", "--ranks", "2")
    done = run_subprocess("merge", str(out), "-o", str(merged))
    assert done.returncode == 0, done.stderr
    train = datasets.load_dataset(str(merged), split="train", cache_dir=str(tmp_path / "cache"))
    assert train.num_rows == 30
    for row in train:
        assert row["image"].size == (32, 32)  # border: every image 32 x 32
        assert (row["width"], row["height"]) == (32, 32)
        assert row["original_width"] >= 100 and row["original_height"] >= 60


@pytest.mark.parametrize("pool", ["threads", "processes"])
def test_fetches_keep_their_deadlines_while_the_pool_is_saturated(
    pool: str, server_process: ServerProcess, tmp_path: Path
) -> None:
    """Large photos keep both image processes busy for seconds; meanwhile requests that take
    0.5 s of a 1.5 s budget are in flight. None may time out, each must take about its 0.5 s,
    and the event loop's wake-ups (its lag probe) must stay prompt."""
    # 16 photos (formerly 40) keep the pool busy for seconds, most of the slow fetches
    # inside that time, with fewer of the worker's GIL hand-overs that a loaded machine
    # can stretch (a niced worker thread holding the GIL waits for a core).
    large = [server_process.url(f"/large/{i}?px=3000") for i in range(16)]
    slow = [server_process.url(f"/slow/0.5?t=lag{i}", host=1) for i in range(80)]
    src = tmp_path / "urls.txt"
    src.write_text("".join(f"{u}\n" for u in [*large, *slow]))
    out = tmp_path / "out"
    fetched(
        src,
        out,
        "--images",
        "resize",
        "--resize-mode",
        "no",  # a full decode and a full-size encode: ~0.1-0.2 s of CPU per photo
        "--set",
        "images.workers=2",
        "--set",
        f"images.pool={pool}",
        "--set",
        "fetch.total_timeout=1.5",
        "--set",
        "fetch.connect_timeout=1",
        "--set",
        "fetch.max_attempts=1",
        "--set",
        "fetch.final_pass_attempts=0",
        timeout=300,
    )
    rows = {r["url"]: r for r in read_current(out).to_pylist()}
    assert all(rows[u]["status"] == "ok" and rows[u]["width"] == 3000 for u in large)
    slow_rows = [rows[u] for u in slow]
    # "slow" is text: fetched in time, then refused by the stage (not an image), never a timeout
    assert {r["error_kind"] for r in slow_rows} == {"decode"}
    assert all("(Content-Type text/plain" in r["error_message"] for r in slow_rows)
    elapsed = sorted(r["elapsed_ms"] for r in slow_rows)
    stats = json.loads(next(out.glob("stats/*.json")).read_text())
    lag_ms = stats["loop_lag_max_ms"]

    def span(row: dict[str, object]) -> tuple[float, float]:
        end = row["fetched_at"].timestamp()  # type: ignore[attr-defined]
        return end - row["elapsed_ms"] / 1000, end  # type: ignore[operator]

    started = min(span(r)[0] for r in rows.values())
    ended = started + stats["seconds"]  # the phase ends when the last photo is stored
    photos_from = min(span(rows[u])[1] for u in large)  # the pool has work from here on
    # Fetches kept dispatching as photos finished (new ones wait while the stage is full):
    # these slow ones ran start to end while the pool was busy.
    during = [r for r in slow_rows if span(r)[0] >= photos_from and span(r)[1] <= ended - 0.3]
    print(
        f"slow fetches {elapsed[0]:.0f}-{elapsed[-1]:.0f} ms, {len(during)} of {len(slow)} "
        f"while the pool was busy ({ended - photos_from:.1f} s), loop lag max {lag_ms} ms"
    )
    assert len(during) >= 10
    assert elapsed[-1] < 500 + 500  # of a 1,500 ms budget
    assert lag_ms < 200


def test_a_dying_image_process_is_replaced_and_the_rank_completes(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    """Every image process dies at its second image (as a crashing decoder would): the pool
    is replaced, images it held are tried once more, and the run ends exactly once."""
    urls = [server_process.url(f"/image/{i}?w={40 + i}&h=30&t=crash") for i in range(12)]
    src = tmp_path / "urls.txt"
    src.write_text("".join(f"{u}\n" for u in urls))
    out = tmp_path / "out"
    fetched(
        src,
        out,
        "--resize",
        "24",
        "--set",
        "images.pool=processes",
        "--set",
        "images.workers=1",
        env={"_FETCHSHARD_FAULT": "image:2"},
        timeout=300,
    )
    rows = {r["url"]: r for r in read_current(out).to_pylist()}
    assert set(rows) == set(urls)
    died = [r for r in rows.values() if r["status"] == "failed"]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert ok, "a fresh process takes its first image"
    for row in ok:
        assert (row["width"], row["height"]) == (24, 24)
    for row in died:  # caught in two crashes in a row
        assert row["error_kind"] == "decode"
        assert row["error_message"].startswith("the image process died on this image")
    log = (out / "logs" / "rank-00000.log").read_text()
    assert "an image process died (1 so far)" in log


def test_resized_images_of_any_format_merge_to_webdataset_jpg_members(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    wds = pytest.importorskip("webdataset")
    corpus_urls(server_process, tmp_path, "wds")
    out, merged = tmp_path / "out", tmp_path / "merged"
    fetched(tmp_path / "urls.txt", out, "--resize", "32")
    done = run_subprocess("merge", str(out), "-o", str(merged), "--format", "webdataset")
    assert done.returncode == 0, done.stderr
    tars = sorted(merged.glob("*.tar"))
    names = []
    for path in tars:
        with tarfile.open(path) as tar:
            names += tar.getnames()
    assert {n.split(".", 1)[1] for n in names} == {"jpg", "json"}  # PNG, GIF, TIFF... as JPEG
    samples = list(wds.WebDataset([str(t) for t in tars], shardshuffle=False).decode())
    ok = [c for c in CASES if c.status == "ok"]
    assert len(samples) == len(ok)
    formats = set()
    for sample in samples:
        meta = json.loads(sample["json"]) if isinstance(sample["json"], bytes) else sample["json"]
        image = Image.open(io.BytesIO(sample["jpg"]))
        assert image.format == "JPEG" and image.size == (32, 32)
        assert (meta["width"], meta["height"], meta["format"]) == (32, 32, "jpeg")
        formats.add(meta["original_format"])
    assert formats == {c.source_format for c in ok}


def test_a_run_with_images_killed_mid_way_reruns_to_every_image_once(
    server_process: ServerProcess, tmp_path: Path
) -> None:
    """SIGKILL while images are in the pool and parts are being committed; the rerun stores
    every image exactly once, resized (rows still in the stage were never committed)."""
    n = 400
    urls = [
        server_process.url(f"/image/{i}?w={60 + i % 50}&h=40&t=kill", host=i % 3) for i in range(n)
    ]
    src = tmp_path / "urls.txt"
    src.write_text("".join(f"{u}\n" for u in urls))
    out = tmp_path / "out"
    small = [*FAST, "--resize", "24", "--set", "output.part_max_rows=25"]
    small += ["--set", "fetch.max_in_flight=8", "--set", "fetch.per_host_rate=100"]
    proc = subprocess.Popen(
        fetchshard_cmd("run", str(src), "-o", str(out), *small),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: len(part_files(out)) >= 3, proc, 60)
    proc.kill()
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it was killed"
    assert len(part_files(out)) < n // 25
    done = run_subprocess("run", str(src), "-o", str(out), *small)
    assert done.returncode == 0, done.stderr
    assert assert_exactly_once(out) == n
    rows = read_current(out).to_pylist()
    assert len(rows) == n and all(r["status"] == "ok" for r in rows)
    assert {(r["width"], r["height"]) for r in rows} == {(24, 24)}
