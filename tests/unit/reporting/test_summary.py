"""summary.py: every number a view shows, judged once and carried by the JSON document."""

from __future__ import annotations

import json
from pathlib import Path

from fetchshard.reporting import timeline
from fetchshard.reporting.collect import Collected
from fetchshard.reporting.summary import CONTENT_TYPES, Report, summarize
from fetchshard.stats import size_bucket_label


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
