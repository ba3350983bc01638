"""The report as one self-contained HTML page: plotly charts, tables, no request to anywhere.

plotly.js is embedded once, inline, in the page's head; every figure (figures.py) is a
``<div>`` and a ``Plotly.newPlot`` call that draws while the page loads. Nothing else is
loaded: no CDN, no web font (a system font stack), no image. A chart that has nothing to show
is replaced by a sentence saying why, so a job that has not started yet still renders.

The page computes nothing: every number it shows is a value of the :class:`Report`, which
``--json`` prints (tests/system/test_report_html.py checks that, number by number).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from plotly.offline import get_plotlyjs

from fetchshard.reporting import figures, units
from fetchshard.reporting.collect import RANK_STATES, RankRow
from fetchshard.reporting.figures import STATE_COLOURS
from fetchshard.reporting.summary import HostRow, Report

ATTENTION_ROWS = 500  # rows of the "ranks to look at" table (it scrolls)
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif'
_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d"]}


def render_html(report: Report) -> str:
    """The whole page for ``report``: a ``str`` to write to one ``.html`` file."""
    body = [
        _header(report),
        _notes(report.notes),
        _section("Totals", _totals(report)),
        _section("Over time", _over_time(report)),
        _section("Ranks", _ranks(report)),
        _section("Failures", _failures(report)),
        _section("Content", _content(report)),
        _footer(report),
    ]
    title = f"fetchshard report: {report.folder} ({report.state})"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n"
        f"<style>{_CSS}</style>\n"
        f'<script type="text/javascript">{get_plotlyjs()}</script>\n'
        "</head>\n<body>\n<main>\n"
        + "\n".join(part for part in body if part)
        + f"\n</main>\n<script>{_RESIZE}</script>\n</body>\n</html>\n"
    )


def _chart(name: str, fig: Any | None, empty: str, *, height: int = 340) -> str:
    """A card with figure ``fig`` drawn in ``<div id="chart-NAME">``, or with the sentence
    ``empty`` when there is nothing to draw (``fig`` None)."""
    if fig is None:
        return f'<div class="card"><p class="empty">{_e(empty)}</p></div>'
    fig.update_layout(height=height, font={"family": FONT, "size": 12})
    div = fig.to_html(
        full_html=False,
        include_plotlyjs=False,  # the page's head has it, once
        div_id=f"chart-{name}",
        config=_CONFIG,
        default_width="100%",
        default_height=f"{height}px",
    )
    return f'<div class="card chart" data-chart="{_e(name)}">{div}</div>'


# -- header, notes, footer ----------------------------------------------------------------


def _header(report: Report) -> str:
    state = report.state
    colour = {"done": "#1f77b4", "running": "#2ca02c", "stopped": "#d62728"}.get(state, "#666")
    return (
        "<header>"
        f'<h1>fetchshard report <span class="badge" style="background:{colour}">'
        f"{_e(state)}</span></h1>"
        f'<p class="folder"><code>{_e(report.folder)}</code></p>'
        f'<p class="meta">{report.world_size:,} rank{"s" if report.world_size != 1 else ""}'
        f"{_generation(report)} · "
        f"generated {_e(figures.stamp(report.generated_at))} UTC · fetchshard "
        f"{_e(report.fetchshard_version)}</p>"
        "</header>"
    )


def _generation(report: Report) -> str:
    if len(report.generations) < 2:
        return ""
    return f" (generation {report.generations[-1].generation:,})"


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    items = "".join(f"<li>{_e(n)}</li>" for n in notes)
    return f'<aside class="notes"><ul>{items}</ul></aside>'


def _footer(report: Report) -> str:
    return (
        "<footer>Written by <code>fetchshard report --html</code>; "
        "<code>fetchshard report --json</code> has every number and every rank "
        f"(schema version {Report.VERSION}).</footer>"
    )


def _section(title: str, content: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{content}</section>"


def _row(*cards: str) -> str:
    return f'<div class="row">{"".join(cards)}</div>'


# -- totals -------------------------------------------------------------------------------


def _totals(report: Report) -> str:
    t = report.totals
    # The bar's widths are the report's shares; the stylesheet lays them out (.progress).
    bar = (
        '<div class="progress" role="img" '
        f'aria-label="{t.committed_share:.1%} committed" '
        f'style="--committed:{t.committed_share:.3%};--failed:{t.failed_share:.3%}">'
        '<div class="ok"></div><div class="failed"></div></div>'
        f'<p class="progress-caption"><b>{t.committed_share:.1%}</b> · {t.committed:,} of '
        f"{t.planned:,} items committed ({t.ok:,} ok, {t.failed:,} failed), "
        f"{t.pending:,} pending</p>"
    )
    if report.state == "done":
        eta = "done"
    else:
        eta = "ETA unknown" if t.eta_s is None else f"ETA {units.duration(t.eta_s)}"
    rate = "–" if t.success_rate is None else f"{t.success_rate:.1%}"
    rows = [
        ("planned", f"{t.planned:,}"),
        ("committed", f"{t.committed:,}"),
        ("fetched", f"{t.fetched:,} (committed, or in a part still open)"),
        ("ok", f"{t.ok:,}"),
        ("failed", f"{t.failed:,}"),
        ("pending", f"{t.pending:,}"),
        ("success rate", rate),
        ("body bytes", units.size(t.bytes)),
    ]
    table = _table(["", ""], [[_e(k), _e(v)] for k, v in rows], cls="kv", header=False)
    stats = [
        ("URLs/s now", f"{t.urls_per_s_now:,.1f}"),
        ("URLs/s over the run", f"{t.urls_per_s_run:,.1f}"),
        ("MB/s now", f"{t.mb_per_s_now:,.2f}"),
        ("MB/s over the run", f"{t.mb_per_s_run:,.2f}"),
        ("elapsed", units.duration(t.elapsed_s)),
    ]
    tiles = "".join(
        f'<div class="stat"><div class="stat-value">{_e(v)}</div>'
        f'<div class="stat-name">{_e(k)}</div></div>'
        for k, v in stats
    )
    eta_box = (
        f'<div class="eta"><div class="eta-value">{_e(eta)}</div>'
        f'<div class="eta-reason">{_e(t.eta_reason)}</div></div>'
        f'<div class="stats">{tiles}</div>'
        f'<div class="hint">"now": the last {t.rate_window_s:.0f} s of each running rank.</div>'
    )
    return bar + _row(f'<div class="card">{table}</div>', f'<div class="card">{eta_box}</div>')


# -- over time ------------------------------------------------------------------------------


def _over_time(report: Report) -> str:
    if len(report.history) < 2:
        if report.state == "not started":
            why = "No rank has started yet: nothing to chart over time."
        else:
            why = "Not enough progress snapshots yet to chart progress and throughput over time."
        return f'<div class="card"><p class="empty">{_e(why)}</p></div>'
    return _row(
        _chart("progress", figures.progress(report), ""),
        _chart("throughput", figures.throughput(report), ""),
    )


# -- ranks ---------------------------------------------------------------------------------


def _ranks(report: Report) -> str:
    r = report.ranks
    chips = "".join(
        f'<span class="chip"><i style="background:{STATE_COLOURS[state]}"></i>'
        f"{_e(state)} <b>{r.states.get(state, 0):,}</b></span>"
        for state in RANK_STATES
        if r.states.get(state, 0)
    )
    extra = (
        f'<span class="hint">largest plan {r.imbalance:.2f}× the mean</span>'
        if r.imbalance is not None
        else ""
    )
    grid, height = figures.rank_grid(report)
    parts = [
        _generations(report),
        f'<div class="chips">{chips}{extra}</div>',
        _chart("ranks", grid, "This folder has no ranks yet.", height=height),
        _attention(r.attention),
    ]
    return "".join(parts)


def _generations(report: Report) -> str:
    """The run's generations, when it has more than one (the ranks below are the last's)."""
    if len(report.generations) < 2:
        return ""
    rows = [
        (
            f"{g.generation:,}",
            f"{g.world_size:,}",
            _e(g.state),
            f"{g.planned:,}",
            f"{g.committed:,}",
            f"{g.failed:,}",
            "" if g.left is None else f"{g.left:,}",
            _e(" ".join(g.retry_failed)) if g.retry_failed is not None else "",
        )
        for g in report.generations
    ]
    head = ("generation", "ranks", "state", "planned", "committed", "failed", "left")
    table = _table([*head, "retry"], rows, num=(0, 1, 3, 4, 5, 6), cls="generations")
    return f'<div class="card"><h3>Generations</h3>{table}</div>'


def _attention(rows: Sequence[RankRow]) -> str:
    """The report's ranks to look at, in its order (dead, stopped, waiting, the slowest)."""
    if not rows:
        return '<p class="empty">No rank needs a look: none is dead, stopped or waiting.</p>'
    body = []
    for row in rows[:ATTENTION_ROWS]:
        done = f"{row.committed:,} / {row.planned:,}" if row.planned is not None else "–"
        body.append(
            [
                f"{row.rank}",
                _state_cell(row.state),
                done,
                f"{row.failed:,}",
                f"{row.urls_per_s:,.1f}",
                "" if row.seconds_left is None else _e(units.duration(row.seconds_left)),
                "" if row.age_s is None else _e(units.duration(row.age_s)),
                _e(row.detail),
            ]
        )
    caption = ""
    if len(rows) > ATTENTION_ROWS:
        caption = f"the first {ATTENTION_ROWS:,} of them (--json lists every rank)"
    table = _table(
        ["rank", "state", "committed", "failed", "URLs/s", "left", "snapshot age", "why"],
        body,
        num=(0, 2, 3, 4, 5, 6),
        caption=caption,
    )
    return f'<h3>Ranks to look at ({len(rows):,})</h3><div class="scroll">{table}</div>'


def _state_cell(state: str) -> str:
    colour = STATE_COLOURS.get(state, "#999")
    return f'<span class="chip small"><i style="background:{colour}"></i>{_e(state)}</span>'


# -- failures -------------------------------------------------------------------------------


def _failures(report: Report) -> str:
    f = report.failures
    kinds = figures.hbar(f.by_kind, "Failed items by error kind", "#d62728", x_title="items")
    if not f.with_http_status:
        no_status = "No HTTP answer yet."
    else:
        no_status = f"Every HTTP answer was a success (2xx): {f.with_http_status:,} answers."
    height = figures.hbar_height(len(f.by_kind))
    charts = _row(
        _chart("error-kinds", kinds, "No item failed.", height=height),
        _chart("http-status", figures.http_status(report), no_status, height=height),
    )
    hosts = _hosts_table(
        "Top hosts by failures", f.hosts_by_failures, "No host had a failure."
    ) + _hosts_table(
        "Top hosts by time held back (Retry-After, cool-downs) and 429/503 answers",
        f.hosts_by_parked,
        "No host was throttled or held back.",
    )
    return charts + hosts


def _hosts_table(title: str, hosts: Sequence[HostRow], empty: str) -> str:
    if not hosts:
        return f'<h3>{_e(title)}</h3><p class="empty">{_e(empty)}</p>'
    body = []
    for h in hosts:
        errors = "<br>".join(f"{_e(k)} <b>{v:,}</b>" for k, v in h.errors.items())
        samples = "".join(
            f'<li title="{_e(s[0])}"><span class="msg">{_e(s[1] if len(s) > 1 else "")}</span> '
            f'<code class="url">{_e(s[0])}</code></li>'
            for s in h.samples
            if s
        )
        body.append(
            [
                f'<code class="host">{_e(h.host)}</code>',
                f"{h.failures:,}",
                errors,
                f"{h.throttled:,}",
                _e(units.duration(h.parked_s)) if h.parked_s else "",
                f'<ul class="samples">{samples}</ul>' if samples else "",
            ]
        )
    table = _table(
        ["host", "failed", "error kinds", "429/503", "held back", "sample messages and URLs"],
        body,
        num=(1, 3, 4),
        cls="hosts",
        widths=(18, 7, 15, 7, 9, 44),
    )
    return f"<h3>{_e(title)}</h3>{table}"


# -- content --------------------------------------------------------------------------------


def _content(report: Report) -> str:
    types = report.content.content_types_top
    return _row(
        _chart("sizes", figures.sizes(report), "No body was fetched yet."),
        _chart(
            "content-types",
            figures.hbar(types, "Successes by content type", "#1f77b4", x_title="items"),
            "No content type was seen yet.",
            height=max(340, figures.hbar_height(len(types))),
        ),
    )


# -- shared pieces --------------------------------------------------------------------------


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    num: Sequence[int] = (),
    cls: str = "",
    header: bool = True,
    caption: str = "",
    widths: Sequence[int] = (),
) -> str:
    """``rows`` are HTML already (escaped by the caller); ``head`` is text; ``widths`` in
    percent fix the columns (long cells are cut, with the whole text on hover)."""
    out = [f'<table class="{cls}">' if cls else "<table>"]
    if widths:
        out.append("<colgroup>")
        out += [f'<col style="width:{w}%">' for w in widths]
        out.append("</colgroup>")
    if header:
        out.append("<thead><tr>")
        out += [f'<th class="{"num" if i in num else ""}">{_e(h)}</th>' for i, h in enumerate(head)]
        out.append("</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        cells = [
            f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>" for i, c in enumerate(row)
        ]
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody>")
    if caption:
        out.append(f'<caption class="more">{_e(caption)}</caption>')
    out.append("</table>")
    return "".join(out)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


# Each chart drew at its div's width while the page was still loading: fit them again once
# the page is laid out (plotly's own "responsive" follows the window's size only).
_RESIZE = """
window.addEventListener("load", function () {
  document.querySelectorAll(".js-plotly-plot").forEach(function (div) {
    Plotly.Plots.resize(div);
  });
});
"""

_CSS = """
:root { color-scheme: light; --fg: #1d2430; --muted: #5d6675; --line: #e3e6eb;
  --card: #fff; --bg: #f5f6f8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial,
  sans-serif; }
main { max-width: 1280px; margin: 0 auto; padding: 24px 28px 40px; }
header h1 { margin: 0; font-size: 24px; display: flex; align-items: center; gap: 12px; }
.badge { color: #fff; font-size: 13px; font-weight: 600; padding: 3px 10px;
  border-radius: 999px; text-transform: uppercase; letter-spacing: .04em; }
.folder { margin: 6px 0 0; font-size: 15px; word-break: break-all; }
.meta, .hint { color: var(--muted); font-size: 13px; }
.meta { margin: 2px 0 0; }
h2 { font-size: 18px; margin: 28px 0 10px; padding-bottom: 4px;
  border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
  font-size: 12.5px; }
.row { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
@media (max-width: 900px) { .row { grid-template-columns: minmax(0, 1fr); } }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 12px; min-width: 0; }
.card.chart { padding: 4px; margin-bottom: 6px; }
.empty { color: var(--muted); font-style: italic; margin: 10px 4px; }
.progress { height: 16px; background: #e4e7ec; border-radius: 8px; overflow: hidden;
  display: flex; }
.progress .ok { background: #2ca02c;
  width: max(0%, calc(var(--committed) - var(--failed))); }
.progress .failed { background: #d62728; width: var(--failed); }
.progress-caption { margin: 6px 0 12px; }
.eta-value { font-size: 22px; font-weight: 650; margin: 4px 0 6px; }
.eta-reason { font-size: 14px; margin-bottom: 14px; }
.stats { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr));
  gap: 10px; margin-bottom: 10px; }
.stat { background: #f5f7fa; border-radius: 6px; padding: 8px 10px; }
.stat-value { font-size: 18px; font-weight: 600; font-variant-numeric: tabular-nums; }
.stat-name { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; background: var(--card);
  border: 1px solid var(--line); border-radius: 8px; font-size: 13px; }
.card table, table.kv { border: 0; }
th, td { text-align: left; padding: 5px 9px; border-bottom: 1px solid var(--line);
  vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; white-space: nowrap; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.kv td:first-child { color: var(--muted); width: 38%; }
table.kv td:last-child { font-variant-numeric: tabular-nums; }
caption.more { caption-side: bottom; text-align: left; color: var(--muted); padding: 6px 4px; }
.chips { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center;
  margin: 0 0 10px; }
.chip { display: inline-flex; align-items: center; gap: 6px; white-space: nowrap; }
.chip i { width: 12px; height: 12px; border-radius: 3px; display: inline-block; }
.chip.small i { width: 10px; height: 10px; }
ul.samples { margin: 0; padding: 0; list-style: none; }
ul.samples li { margin: 0 0 2px; white-space: nowrap; overflow: hidden;
  text-overflow: ellipsis; }
table.hosts { table-layout: fixed; }
code.host { overflow-wrap: anywhere; }
.scroll { max-height: 460px; overflow: auto; border: 1px solid var(--line);
  border-radius: 8px; }
.scroll table { border: 0; border-radius: 0; }
.scroll th { position: sticky; top: 0; z-index: 1; }
.msg { color: var(--muted); }
.notes { background: #fff8e1; border: 1px solid #f0d890; border-radius: 8px;
  padding: 6px 14px; margin: 16px 0 0; }
.notes ul { margin: 4px 0; padding-left: 18px; }
footer { margin-top: 32px; color: var(--muted); font-size: 12.5px; }
"""
