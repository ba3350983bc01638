"""summary.py: every number a view shows, judged once and carried by the JSON document."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fetchshard.reporting import timeline
from fetchshard.reporting.collect import Collected, GenerationRow
from fetchshard.reporting.summary import CONTENT_TYPES, Report, summarize
from fetchshard.runfolder.documents import ProgressHistory
from fetchshard.stats import Stats, size_bucket_label

from .conftest import NOW, STEP, rank_row


def test_the_ranks_to_look_at_come_dead_stopped_waiting_then_the_slowest(
    found: Collected,
) -> None:
    ranks = summarize(found).ranks
    assert [(r.rank, r.state) for r in ranks.attention] == [
        (2, "dead"),
        (4, "stopped"),
        (1, "waiting"),
        (5, "running"),  # 1,180 s left
        (0, "running"),
    ]
    assert ranks.slowest == [5, 0]
    assert ranks.grid == "RWXDSR."
    assert ranks.rows == found.ranks  # the collector's rows, as they are: one type


def test_totals_carry_the_shares_the_progress_bars_draw(found: Collected) -> None:
    t = summarize(found).totals
    assert t.planned == 6000 and t.committed == 400 * 5 + 1000 and t.failed == 7 * 6
    assert t.committed_share == round(3000 / 6000, 4)
    assert t.failed_share == round(42 / 6000, 4)
    assert t.fetched_share == round(3060 / 6000, 4)  # the terminal's bar
    assert t.rate_window_s == timeline.RATE_WINDOW
    assert t.urls_per_s_now == 2.5 and t.eta_s is None  # a dead and a stopped rank
    assert t.elapsed_s == 180.0 and t.urls_per_s_run == 2.5  # the history: 3 min at 2.5/s
    assert t.mb_per_s_now == t.mb_per_s_run == 0.025


def test_failures_split_the_statuses_as_the_chart_shows_them(found: Collected) -> None:
    f = summarize(found).failures
    assert list(f.by_http_status) == ["200", "301", "404", "503"]
    assert f.with_http_status == 2638 and f.http_2xx == 2600
    assert list(f.by_http_status_not_2xx.items()) == [("301", 1), ("404", 30), ("503", 7)]
    assert list(f.by_kind) == ["http_404", "http_5xx", "timeout"]  # most first
    (worst,) = f.hosts_by_failures
    assert (worst.host, worst.failures) == ("a.example", 12)
    assert list(worst.errors.items()) == [("http_404", 10), ("timeout", 2)]
    assert worst.parked_s == 61.2
    assert worst.samples == [["http://a.example/1", "HTTP 404 Not Found"]]
    assert [h.host for h in f.hosts_by_parked] == ["b.example", "a.example"]


def test_the_size_bars_span_the_sizes_seen_and_other_sums_the_rare_types(
    found: Collected,
) -> None:
    c = summarize(found).content
    assert c.sizes == {size_bucket_label(b): n for b, n in ((0, 3), (10, 5), (14, 2600))}
    assert list(c.size_bars.items()) == [
        ("0 B", 3),  # empty bodies: a bar of their own
        (size_bucket_label(10), 5),
        (size_bucket_label(11), 0),
        (size_bucket_label(12), 0),
        (size_bucket_label(13), 0),
        (size_bucket_label(14), 2600),
    ]
    top = c.content_types_top
    assert len(top) == CONTENT_TYPES and list(top)[-1] == "other"
    assert list(top)[: CONTENT_TYPES - 1] == list(c.content_types)[: CONTENT_TYPES - 1]
    assert sum(top.values()) == sum(c.content_types.values())
    assert top["other"] == sum(40 - i for i in range(CONTENT_TYPES - 1, 18))


def test_the_history_and_its_throughput_line_up_sample_by_sample(found: Collected) -> None:
    report = summarize(found)
    rows = report.history.to_json()
    assert len(rows) == len(found.history) and all(len(r) == 5 for r in rows)
    assert [r[0] for r in rows] == found.history.time
    assert [r[4] for r in rows[1:]] == [2.5] * (len(rows) - 1)
    rates = report.throughput
    assert rates.window_s in timeline.NICE_WINDOWS
    assert len(rates.urls_per_s) == len(rates.mb_per_s) == len(rows)
    assert rates.urls_per_s[-1] == 2.5 and rates.mb_per_s[-1] == 0.025


def test_the_json_reads_back_as_the_same_report_in_the_same_order(
    found: Collected, tmp_path: Path
) -> None:
    report = summarize(found)
    data = report.to_bytes()
    again = Report.from_bytes(data, tmp_path / "report.json")
    assert again == report
    raw = json.loads(data)
    assert list(raw["failures"]["by_kind"]) == list(report.failures.by_kind)  # most first
    assert list(raw["content"]["size_bars"]) == list(report.content.size_bars)
    assert raw["history"] == report.history.to_json()
    assert raw["throughput"]["window_s"] == report.throughput.window_s


def test_a_report_of_an_earlier_version_still_reads(found: Collected, tmp_path: Path) -> None:
    """Without the keys added since (shares, status split, bars, throughput) and with the
    history rows of before ``fetched``: [time, committed, bytes, rows/s]."""
    raw = json.loads(summarize(found).to_bytes())
    for section, key in [
        ("totals", "committed_share"),
        ("failures", "http_2xx"),
        ("content", "size_bars"),
    ]:
        del raw[section][key]
    del raw["throughput"]
    raw["history"] = [[r[0], r[1], r[3], r[4]] for r in raw["history"]]
    old = Report.from_dict(raw, tmp_path / "old.json")
    assert old.totals.committed_share == 0.0 and old.content.size_bars == {}
    assert old.history.samples.fetched == old.history.samples.committed
    assert old.throughput.urls_per_s == [] and old.ranks.rows == summarize(found).ranks.rows


def _tail_job(pending: list[int]) -> Collected:
    rows = [
        rank_row(
            r,
            "running" if left else "done",
            planned=1000,
            fetched=1000 - left,
            committed=1000 - left,
            failed=0,
            pending=left,
            urls_per_s=1.0 if left else 0.0,
            seconds_left=float(left) if left else None,
        )
        for r, left in enumerate(pending)
    ]
    return Collected(
        folder="out",
        world_size=len(rows),
        now=NOW,
        ranks=rows,
        stats=Stats(),
        errors=Counter(),
        history=ProgressHistory(),
        interval=STEP,
    )


def test_work_left_on_a_few_ranks_is_a_tail_with_the_command_that_spreads_it() -> None:
    report = summarize(_tail_job([0] * 37 + [900, 0, 700]))
    tail = report.tail
    assert tail is not None
    assert tail.ranks == [37, 39] and tail.pending == 1600 and tail.share == 1.0
    assert tail.world_size == 39  # not 40: the same world size resumes, another one spreads
    assert report.notes == [tail.advice]
    assert "on 2 of 40 ranks" in tail.advice and "--ranks 39" in tail.advice


@pytest.mark.parametrize(
    "pending",
    [
        [100] * 40,  # spread evenly: no tail
        [0] * 38 + [40, 30],  # too little left to be worth a new generation
        [600, 500, 400, 0],  # 3 of 4 ranks: most of the world, not a few
        [0] * 30 + [500] * 10,  # ten ranks hold it: more than TAIL_RANKS
    ],
)
def test_work_spread_widely_or_small_is_no_tail(pending: list[int]) -> None:
    report = summarize(_tail_job(pending))
    assert report.tail is None and report.notes == []


def test_a_job_of_several_generations_counts_what_came_before_the_current_one() -> None:
    found = _tail_job([0, 300, 0])  # generation 2: 3 ranks, 300 of its 3,000 items left
    found.generations = [
        GenerationRow(
            generation=0,
            world_size=4,
            retry_failed=None,
            state="ended",
            planned=10_000,
            committed=6_000,
            failed=50,
            left=4_000,
        ),
        GenerationRow(
            generation=1,
            world_size=2,
            retry_failed=None,
            state="ended",
            planned=4_000,
            committed=1_000,
            failed=20,
            left=3_000,
        ),
        GenerationRow(
            generation=2,
            world_size=3,
            retry_failed=None,
            state="",
            planned=3_000,
            committed=2_700,
            failed=0,
            left=None,
        ),
    ]
    found.planned_before, found.done_before, found.failed_before = 10_000, 7_000, 70
    report = summarize(found)
    t = report.totals
    assert (t.planned, t.committed, t.fetched, t.failed, t.pending) == (
        10_000,
        9_700,
        9_700,
        70,
        300,
    )
    assert [g.state for g in report.generations] == ["ended", "ended", "running"]
    back = Report.from_bytes(report.to_bytes(), Path("report.json"))
    assert back.generations == report.generations and back.tail == report.tail
