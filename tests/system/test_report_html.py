"""``fetchshard report --html``: the page opens in a real browser, offline, and its charts draw.

The browser is Debian's headless Chromium (``.ci/run`` installs ``chromium-headless-shell``),
driven by Playwright without ``playwright install``. Every request the page makes that is not
``file:``/``data:``/``blob:`` is aborted and recorded, and the tests assert there were none,
so a page that would need the network (a CDN script, a web font) fails here. A screenshot of
each page is kept under the test's tmp_path, and a copy in a fixed folder; both paths are
printed (``pytest -s`` or ``-rP`` shows them).

Without a browser too: every number the page of a real run draws is in ``report --json``
(issue 30; tests/report_numbers.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fetchshard.reporting.html import render_html
from fetchshard.reporting.summary import (
    STATE_LETTERS,
    Content,
    Failures,
    History,
    Report,
    Throughput,
)
from report_numbers import Looked, missing
from server import ServerProcess
from util import FAST, run_subprocess

pytestmark = pytest.mark.timeout(180)

CHROMIUM = ("/usr/lib/chromium/chromium-headless-shell", "/usr/bin/chromium")
# Where a copy of each screenshot is kept (tmp_path is gone after a few sessions).
ARTIFACTS = Path(
    os.environ.get("FETCHSHARD_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "fetchshard-tests")
)
CHARTS = ["progress", "throughput", "ranks", "error-kinds", "http-status", "sizes", "content-types"]
WAIT_MS = 30_000  # a page draws in 1-3 s on 2 busy cores

# Counted in the page once it has drawn: what plotly puts in the DOM.
_COUNT = """() => {
  const n = (sel) => document.querySelectorAll(sel).length;
  const charts = {};
  for (const div of document.querySelectorAll(".card.chart")) {
    const q = (sel) => div.querySelectorAll(sel).length;
    charts[div.dataset.chart] = {
      plots: q(".js-plotly-plot"), svgs: q(".main-svg"), traces: q("svg .trace, .heatmaplayer .hm"),
      lines: [...div.querySelectorAll(".scatterlayer .js-line")]
        .filter((p) => (p.getAttribute("d") || "").length > 10).length,
      bars: q(".barlayer .point path"), heatmaps: q(".heatmaplayer image"),
    };
  }
  return {plots: n(".js-plotly-plot"), svgs: n(".js-plotly-plot .main-svg"), charts,
          empty: [...document.querySelectorAll("p.empty")].map((p) => p.textContent),
          title: document.title};
}"""


def _chromium() -> str | None:
    return next((path for path in CHROMIUM if Path(path).exists()), None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"playwright is not importable ({exc}): pip install -e '.[test]'")
    executable = _chromium()
    if executable is None:
        pytest.skip(
            f"no Debian Chromium at {' or '.join(CHROMIUM)}: "
            "apt-get install --no-install-recommends chromium-headless-shell (.ci/run does)"
        )
    with sync_playwright() as p:
        # No name resolves: even the browser's own background requests go nowhere.
        browser = p.chromium.launch(
            executable_path=executable, args=["--host-resolver-rules=MAP * ~NOTFOUND"]
        )
        yield browser
        browser.close()


@dataclass
class Opened:
    counts: dict[str, Any]
    requests: list[str] = field(default_factory=list)  # every non-local URL the page asked for
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None
    seconds: float = 0.0


def _open(browser: Any, page_file: Path, shot: Path, *, plots: int) -> Opened:
    """Open ``page_file`` with the network cut off, wait for ``plots`` drawn charts, count
    what was drawn, take a full-page screenshot."""
    start = time.monotonic()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    opened = Opened(counts={})

    def local(url: str) -> bool:
        return url.startswith(("file:", "data:", "blob:"))

    def route(r: Any) -> None:
        if local(r.request.url):
            r.continue_()
        else:
            opened.requests.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("console", lambda m: opened.console_errors.append(m.text) if m.type == "error" else 0)
    page.on("pageerror", lambda e: opened.page_errors.append(str(e)))
    # A request routing might not see (a websocket, a redirect) still shows here.
    page.on("request", lambda r: None if local(r.url) else opened.requests.append(r.url))
    page.on("websocket", lambda ws: opened.requests.append(ws.url))
    try:
        page.goto(page_file.as_uri(), wait_until="load")
        if plots:
            page.wait_for_function(
                f"document.querySelectorAll('.js-plotly-plot .main-svg').length >= {2 * plots}",
                timeout=WAIT_MS,
            )
        page.wait_for_timeout(200)  # the resize after load
        opened.counts = page.evaluate(_COUNT)
        page.screenshot(path=str(shot), full_page=True)
        opened.screenshot = shot
    finally:
        context.close()
    opened.requests = sorted(set(opened.requests))
    opened.seconds = time.monotonic() - start
    return opened


def _keep(shot: Path, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    copy = ARTIFACTS / name
    shutil.copyfile(shot, copy)
    print(f"\nscreenshot: {shot}\n      copy: {copy}")
    return copy


def _plotly_js(text: str) -> tuple[int, int]:
    """Where the page's one inline plotly.js is, its <script> tags included."""
    start = text.index('<script type="text/javascript">')
    return start, text.index("</script>", start) + len("</script>")


def _assert_clean(opened: Opened) -> None:
    assert opened.requests == [], f"the page tried the network: {opened.requests}"
    assert opened.console_errors == [], opened.console_errors
    assert opened.page_errors == [], opened.page_errors


# -- a real run ------------------------------------------------------------------------------

OK = 240
IMAGES = 30
GONE = 15  # /status/404
FLAKY = 20  # /flaky/KEY/2*FLAKY: a 503 to each of their two attempts


@pytest.fixture(scope="module")
def run_folder(server_process: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-rank run of 305 URLs on 4 hosts, paced so that it lasts a few seconds
    (a history worth charting), with 404s and 503s among them."""
    root = tmp_path_factory.mktemp("report-html")
    key = root.name
    urls = [
        server_process.url(f"/ok/{key}-{i}?size={(i * 997) % 20000}", host=i % 4) for i in range(OK)
    ]
    urls += [server_process.url(f"/image/{i}?w=64&h=48", host=1) for i in range(IMAGES)]
    urls += [server_process.url(f"/status/404?t={key}-{i}", host=2) for i in range(GONE)]
    urls += [server_process.url(f"/flaky/{key}/{2 * FLAKY}?t={i}", host=3) for i in range(FLAKY)]
    src = root / "urls.txt"
    src.write_text("".join(f"{u}\n" for u in urls), encoding="utf-8")
    out = root / "out"
    done = run_subprocess(
        "run",
        str(src),
        "-o",
        str(out),
        "--ranks",
        "2",
        *FAST,
        # 40 requests/s per host, and no slowing down on 503 (it would park the host)
        *("--set", "fetch.per_host_rate=40", "--set", "fetch.per_host_burst=2"),
        *("--set", "fetch.per_host_min_rate=40"),
        *("--set", "fetch.max_attempts=2", "--set", "fetch.final_pass_attempts=0"),
    )
    assert done.returncode == 0, done.stderr
    return out


def test_the_html_report_of_a_run_draws_its_charts_offline(
    browser: Any, run_folder: Path, tmp_path: Path
) -> None:
    page_file = tmp_path / "report.html"
    shown = run_subprocess("report", str(run_folder), "--html", str(page_file))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip().endswith(f"wrote the HTML report to {page_file}")
    assert "totals" in shown.stdout  # the terminal view too
    # With --json, stdout stays one JSON document; the line goes to stderr.
    again = tmp_path / "again" / "report.html"
    as_json = run_subprocess("report", str(run_folder), "--json", "--html", str(again))
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert f"wrote the HTML report to {again}" in as_json.stderr
    assert again.stat().st_size > 1_000_000

    text = page_file.read_text(encoding="utf-8")
    assert text.count("<script") == len(CHARTS) + 2  # plotly.js once, a call per chart, resize
    start, end = _plotly_js(text)
    assert text.count("Plotly.newPlot") - text[start:end].count("Plotly.newPlot") == len(CHARTS)
    around = text[:start] + text[end:]  # plotly.js names URLs in its text (maps, fonts)
    assert not re.findall(r"""(?:src|href)\s*=|url\(|@import|<link""", around, re.I)
    size = page_file.stat().st_size
    print(f"\nreport.html: {size:,} bytes")

    opened = _open(browser, page_file, tmp_path / "report.png", plots=len(CHARTS))
    _keep(tmp_path / "report.png", "report-html-run.png")
    print(f"opened and drawn in {opened.seconds:.1f} s")
    _assert_clean(opened)
    counts = opened.counts
    assert data["state"] == "done" and "(done)" in counts["title"]
    assert sorted(counts["charts"]) == sorted(CHARTS), counts
    assert counts["plots"] == len(CHARTS)
    assert counts["svgs"] >= 2 * len(CHARTS)
    charts = counts["charts"]
    assert all(c["plots"] == 1 and c["svgs"] >= 2 and c["traces"] >= 1 for c in charts.values()), (
        charts
    )
    # The lines over time, the rank grid, and one bar per kind, status, bucket and type.
    assert charts["progress"]["lines"] >= 1
    assert charts["throughput"]["lines"] >= 1
    assert charts["ranks"]["heatmaps"] == 1
    failures = data["failures"]
    assert failures["by_kind"] == {"http_404": GONE, "http_5xx": FLAKY}
    assert charts["error-kinds"]["bars"] == 2
    not_ok = [code for code in failures["by_http_status"] if not code.startswith("2")]
    assert sorted(not_ok) == ["404", "503"]
    assert charts["http-status"]["bars"] == len(not_ok)
    assert charts["content-types"]["bars"] == len(data["content"]["content_types"]) == 2
    assert charts["sizes"]["bars"] >= len(data["content"]["sizes"]) >= 3
    assert not [e for e in counts["empty"] if "chart" in e or "snapshot" in e]


def test_every_number_the_page_draws_is_in_the_json(run_folder: Path, tmp_path: Path) -> None:
    """Issue 30, point 4: the page computes nothing. Each figure's values, labels and
    texts and every number of the page's text are values of ``report --json`` printed by the
    same command (tests/report_numbers.py says how each is compared)."""
    page_file = tmp_path / "report.html"
    shown = run_subprocess("report", str(run_folder), "--json", "--html", str(page_file))
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    looked = Looked()
    assert missing(page_file.read_text(encoding="utf-8"), doc, looked) == []
    # It looked at everything: every chart, their series, the grid's cells, the texts.
    assert sorted(looked.figures) == sorted(f"chart-{name}" for name in CHARTS)
    # progress: times and values of 1 or 2 lines; throughput: of 3; the 4 bar charts' values
    assert looked.arrays >= 2 + 3 * 2 + 4, looked
    assert looked.cells == 2 and looked.labels >= 2 + 2 + 3, looked  # kinds, statuses, sizes
    assert looked.tokens >= 40, looked


# -- synthetic reports: many ranks, nothing yet ----------------------------------------------


@pytest.fixture(scope="module")
def base_report(run_folder: Path) -> Report:
    shown = run_subprocess("report", str(run_folder), "--json")
    assert shown.returncode == 0, shown.stderr
    return Report.from_dict(json.loads(shown.stdout), run_folder)


def _many_ranks(base: Report, world: int) -> Report:
    """``base`` with ``world`` ranks in every state (the real report's rows, renumbered)."""
    cycle = ["done"] * 9 + ["running"] * 8 + ["waiting", "waiting", "dead", "stopped", "planning"]
    states = [cycle[(r * 7) % len(cycle)] for r in range(world)]
    states[-world // 20 :] = ["not started"] * (world // 20)
    template = base.ranks.rows[0]
    rows = [
        dataclasses.replace(
            template,
            rank=r,
            state=state,
            detail={"dead": "lock free, not done", "waiting": "2 hosts parked"}.get(state, ""),
        )
        for r, state in enumerate(states)
    ]
    counts = {state: states.count(state) for state in STATE_LETTERS}
    ranks = dataclasses.replace(
        base.ranks,
        states=counts,
        grid="".join(STATE_LETTERS[s] for s in states),
        attention=[row for row in rows if row.state in ("dead", "stopped", "waiting")],
        rows=rows,
    )
    return dataclasses.replace(base, world_size=world, state="running", ranks=ranks)


@pytest.mark.parametrize("world", [400, 4000])
def test_the_rank_grid_draws_at_400_and_4000_ranks(
    browser: Any, base_report: Report, tmp_path: Path, world: int
) -> None:
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(_many_ranks(base_report, world)), encoding="utf-8")
    opened = _open(browser, page_file, tmp_path / "report.png", plots=len(CHARTS))
    _keep(tmp_path / "report.png", f"report-html-{world}-ranks.png")
    _assert_clean(opened)
    assert opened.counts["charts"]["ranks"]["heatmaps"] == 1
    assert opened.counts["plots"] == len(CHARTS)


def test_a_report_with_nothing_yet_says_so_instead_of_empty_charts(
    browser: Any, base_report: Report, tmp_path: Path
) -> None:
    rows = [
        dataclasses.replace(r, state="not started", planned=None, committed=0)
        for r in base_report.ranks.rows
    ]
    totals = base_report.totals
    zero: dict[str, Any] = {
        f.name: 0
        for f in dataclasses.fields(totals)
        if type(getattr(totals, f.name)) in (int, float)
    }
    zero.update(success_rate=None, eta_s=None, eta_reason="2 rank(s) have not started")
    zero.update(rate_window_s=totals.rate_window_s)  # a constant, not a count
    empty = dataclasses.replace(
        base_report,
        state="not started",
        totals=dataclasses.replace(totals, **zero),
        history=History(),
        throughput=Throughput(),
        ranks=dataclasses.replace(
            base_report.ranks,
            states={s: len(rows) if s == "not started" else 0 for s in STATE_LETTERS},
            grid="." * len(rows),
            attention=[],
            rows=rows,
        ),
        failures=Failures(by_kind={}, by_http_status={}, hosts_by_failures=[], hosts_by_parked=[]),
        content=Content(sizes={}, content_types={}),
        notes=["a <note> & an ampersand"],
    )
    page_file = tmp_path / "report.html"
    page_file.write_text(render_html(empty), encoding="utf-8")
    assert "a &lt;note&gt; &amp; an ampersand" in page_file.read_text(encoding="utf-8")
    opened = _open(browser, page_file, tmp_path / "report.png", plots=1)
    _keep(tmp_path / "report.png", "report-html-not-started.png")
    _assert_clean(opened)
    assert list(opened.counts["charts"]) == ["ranks"]  # only the grid has something to draw
    # a sentence for "over time", the 4 other charts, the ranks to look at, the 2 host tables
    assert len(opened.counts["empty"]) == 8, opened.counts["empty"]


def test_the_checks_catch_a_page_that_needs_the_network(
    browser: Any, base_report: Report, tmp_path: Path
) -> None:
    """The same page with plotly.js from its CDN instead of inline: nothing draws, the
    request is recorded, and the page errors say so."""
    text = render_html(base_report)
    start, end = _plotly_js(text)
    cdn = '<script src="https://cdn.plot.ly/plotly-latest.min.js"></script>'
    page_file = tmp_path / "cdn.html"
    page_file.write_text(text[:start] + cdn + text[end:], encoding="utf-8")
    opened = _open(browser, page_file, tmp_path / "cdn.png", plots=0)
    assert opened.requests == ["https://cdn.plot.ly/plotly-latest.min.js"]
    assert any("Plotly is not defined" in e for e in opened.page_errors), opened.page_errors
    assert opened.counts["svgs"] == 0
