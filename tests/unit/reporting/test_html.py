"""html.py and figures.py draw the report and compute nothing: each number on the page is
in the JSON document (tests/report_numbers.py), and the page drawn from the JSON alone is
the same page."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from fetchshard.reporting.collect import Collected, GenerationRow
from fetchshard.reporting.html import render_html
from fetchshard.reporting.summary import Report, summarize
from report_numbers import Looked, missing


def test_every_number_of_the_page_is_in_the_json(found: Collected) -> None:
    report = summarize(found)
    looked = Looked()
    assert missing(render_html(report), json.loads(report.to_bytes()), looked) == []
    assert len(looked.figures) == 7 and looked.cells == 7
    assert looked.arrays >= 14 and looked.labels >= 3 + 6 + 15 and looked.tokens >= 100


def test_the_page_drawn_from_the_json_alone_is_the_same_page(
    found: Collected, tmp_path: Path
) -> None:
    report = summarize(found)
    again = Report.from_bytes(report.to_bytes(), tmp_path / "report.json")
    assert render_html(again) == render_html(report)


def test_the_check_finds_a_series_or_a_number_the_json_does_not_have(found: Collected) -> None:
    """What a page that computed its own numbers would look like, against the JSON."""
    report = summarize(found)
    doc = json.loads(report.to_bytes())
    smoother = [round(v * 0.9, 3) for v in report.throughput.urls_per_s]
    page = render_html(
        dataclasses.replace(
            report, throughput=dataclasses.replace(report.throughput, urls_per_s=smoother)
        )
    )
    assert any("chart-throughput trace 1 y" in m for m in missing(page, doc))
    totals = dataclasses.replace(report.totals, urls_per_s_run=123.45)
    page = render_html(dataclasses.replace(report, totals=totals))
    assert any("'123.5'" in m for m in missing(page, doc))  # the tile, to 1 decimal
    extra = render_html(report).replace("<footer>", "<footer>4,242 items on average ")
    assert missing(extra, doc) == ["page text: '4,242' is no number of the JSON"]


def test_the_ranks_to_look_at_are_listed_in_the_reports_order(found: Collected) -> None:
    page = render_html(summarize(found))
    table = page[page.index("Ranks to look at (5)") :]
    table = table[: table.index("</table>")]
    order = [table.index(f'<td class="num">{rank}</td>') for rank in (2, 4, 1, 5, 0)]
    assert order == sorted(order)


def test_a_run_of_generations_and_a_tail_draw_only_numbers_of_the_json(
    found: Collected,
) -> None:
    rows = [
        dataclasses.replace(
            row,
            state="done",
            planned=1000,
            committed=1000,
            fetched=1000,
            pending=0,
            urls_per_s=0.0,
            seconds_left=None,
        )
        for row in found.ranks[:5]
    ] + [
        dataclasses.replace(
            row,
            state="running",
            planned=4321,
            committed=211,
            fetched=230,
            pending=4110,
            urls_per_s=3.5,
            seconds_left=1174.3,
        )
        for row in found.ranks[5:]
    ]
    found.ranks = rows
    found.generations = [
        GenerationRow(
            generation=0,
            world_size=9,
            retry_failed=None,
            state="ended",
            planned=20_000,
            committed=6_358,
            failed=40,
            left=13_642,
        ),
        GenerationRow(
            generation=1,
            world_size=7,
            retry_failed=["transient"],
            state="",
            planned=13_642,
            committed=5_422,
            failed=2,
            left=None,
        ),
    ]
    found.planned_before, found.done_before, found.failed_before = 20_000, 6_358, 40
    report = summarize(found)
    assert report.tail is not None and report.tail.ranks == [5, 6]
    page = render_html(report)
    assert "Generations" in page and report.tail.advice.split(":")[0] in page
    looked = Looked()
    assert missing(page, json.loads(report.to_bytes()), looked) == []
    assert looked.tokens >= 120
