"""The report as one self-contained HTML page: plotly charts, tables, no request to anywhere.

plotly.js is embedded once, inline, in the page's head; every figure is a ``<div>`` and a
``Plotly.newPlot`` call that draws while the page loads. Nothing else is loaded: no CDN, no
web font (a system font stack), no image. A chart that has nothing to show is replaced by a
sentence saying why, so a job that has not started yet still renders.
"""

from __future__ import annotations

import datetime as dt
import html
import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from fetchshard.report import units
from fetchshard.report.collect import RANK_STATES, RATE_WINDOW
from fetchshard.report.summary import STATE_LETTERS, HostRow, RankRow, Report
from fetchshard.stats import SIZE_BUCKETS, size_bucket_label

# One colour per rank state, the terminal view's hues.
STATE_COLOURS = {
    "running": "#2ca02c",
    "waiting": "#f0a202",
    "planning": "#17becf",
    "done": "#1f77b4",
    "stopped": "#9467bd",
    "dead": "#d62728",
    "not started": "#d4d7dd",
}
ATTENTION_ROWS = 500  # rows of the "ranks to look at" table (it scrolls)
_SEVERITY = {"dead": 0, "stopped": 1, "waiting": 2}  # the order of "ranks to look at"
CONTENT_TYPES = 15  # bars of the content types chart; the rest are summed as "other"
FONT = 'system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif'
_CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["lasso2d"]}
_STATE_OF = {letter: state for state, letter in STATE_LETTERS.items()}


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
        f'<p class="meta">{report.world_size:,} rank{"s" if report.world_size != 1 else ""} · '
        f"generated {_e(_stamp(report.generated_at))} UTC · fetchshard "
        f"{_e(report.fetchshard_version)}</p>"
        "</header>"
    )


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
    share = t.committed / t.planned if t.planned else 0.0
    failed_share = t.failed / t.planned if t.planned else 0.0
    bar = (
        '<div class="progress" role="img" '
        f'aria-label="{share:.1%} committed">'
        f'<div class="ok" style="width:{(share - failed_share) * 100:.3f}%"></div>'
        f'<div class="failed" style="width:{failed_share * 100:.3f}%"></div></div>'
        f'<p class="progress-caption"><b>{share:.1%}</b> · {t.committed:,} of {t.planned:,} '
        f"items committed ({t.ok:,} ok, {t.failed:,} failed), {t.pending:,} pending</p>"
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
        f'<div class="hint">"now": the last {RATE_WINDOW:.0f} s of each running rank.</div>'
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
        _chart("progress", _progress_figure(report), ""),
        _chart("throughput", _throughput_figure(report), ""),
    )


class _Series:
    """The history's columns: ``[time, committed, fetched, bytes, rows/s]`` (a report
    without the fetched column, ``[time, committed, bytes, rows/s]``, reads as fetched =
    committed)."""

    def __init__(self, history: Sequence[Sequence[float]]) -> None:
        self.times = [_utc(h[0]) for h in history]
        self.seconds = [h[0] for h in history]
        self.committed = [h[1] for h in history]
        self.fetched = [h[2] if len(h) > 4 else h[1] for h in history]
        self.bytes = [h[-2] for h in history]
        self.rate = [h[-1] for h in history]


def _progress_figure(report: Report) -> Any | None:
    if len(report.history) < 2:
        return None
    s = _Series(report.history)
    fig = go.Figure()
    if s.fetched != s.committed:
        fig.add_trace(
            go.Scatter(
                x=s.times,
                y=s.fetched,
                mode="lines",
                line={"color": "#1f77b4", "width": 1, "dash": "dot"},
                name="fetched (committed or in an open part)",
                hovertemplate="%{y:,.0f} fetched<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=s.times,
            y=s.committed,
            mode="lines",
            line={"color": "#1f77b4", "width": 2},
            fill="tozeroy",
            fillcolor="rgba(31,119,180,0.12)",
            name="committed",
            hovertemplate="%{y:,.0f} committed<extra></extra>",
        )
    )
    planned = report.totals.planned
    if planned:
        fig.add_hline(
            y=planned,
            line={"dash": "dash", "color": "#888", "width": 1},
            annotation_text=f"planned {planned:,}",
            annotation_position="top left",
            annotation_font={"color": "#555", "size": 11},
        )
    top = max([planned, *s.committed, *s.fetched]) or 1
    _time_layout(
        fig, "Items committed" if s.fetched == s.committed else "Items fetched and committed"
    )
    fig.update_yaxes(title_text="items", range=[0, top * 1.1], rangemode="tozero")
    _legend_on_top(fig)
    return fig


def _throughput_figure(report: Report) -> Any | None:
    if len(report.history) < 2:
        return None
    s = _Series(report.history)
    window = _round_window(max((s.seconds[-1] - s.seconds[0]) / 40, 2 * _sample_gap(s)))
    urls, mbs = _smoothed(s, window)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=s.times,
            y=s.rate,
            mode="lines",
            line={"color": "rgba(44,160,44,0.45)", "width": 1},
            name="URLs/s per sample",
            visible="legendonly",  # spiky: each rank's snapshot adds its items at once
            hovertemplate="%{y:,.1f} URLs/s (sample)<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=s.times,
            y=urls,
            mode="lines",
            line={"color": "#2ca02c", "width": 2.5},
            name=f"URLs/s over {units.duration(window)}",
            hovertemplate="%{y:,.1f} URLs/s<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=s.times,
            y=mbs,
            mode="lines",
            line={"color": "#ff7f0e", "width": 1.5, "dash": "dot"},
            name="MB/s (right axis)",
            yaxis="y2",
            hovertemplate="%{y:,.2f} MB/s<extra></extra>",
        )
    )
    _time_layout(fig, "Throughput")
    fig.update_layout(
        yaxis={"title": {"text": "URLs/s"}, "rangemode": "tozero"},
        yaxis2={
            "title": {"text": "MB/s"},
            "overlaying": "y",
            "side": "right",
            "rangemode": "tozero",
            "showgrid": False,
            "tickmode": "auto",
        },
        margin={"r": 60},
    )
    _legend_on_top(fig)
    return fig


def _sample_gap(s: _Series) -> float:
    """The usual time between two changes of the summed history: about the ranks' snapshot
    step over the number of ranks that write (the report does not carry the step)."""
    changes = [t for i, t in enumerate(s.seconds) if i and s.fetched[i] != s.fetched[i - 1]]
    gaps = sorted(b - a for a, b in itertools.pairwise(changes))
    return gaps[len(gaps) // 2] if gaps else 0.0


def _round_window(seconds: float) -> float:
    """The averaging window of the throughput chart: about a fortieth of the run, rounded
    up to a length a reader takes in (10 s, 1 min, 5 min...)."""
    for nice in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600):
        if seconds <= nice:
            return float(nice) if seconds > 0.5 else max(seconds, 1e-3)
    return seconds


def _legend_on_top(fig: Any) -> None:
    fig.update_layout(
        showlegend=True,
        legend={
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
            "font": {"size": 11},
            "bgcolor": "rgba(255,255,255,0)",
        },
    )


def _smoothed(s: _Series, window: float) -> tuple[list[float], list[float]]:
    """Rows/s and MB/s over the ``window`` seconds before each sample (the sample rates of
    a summed history jump: each rank's snapshot adds its items at once)."""
    urls: list[float] = []
    mbs: list[float] = []
    start = 0
    for i, t in enumerate(s.seconds):
        while t - s.seconds[start] > window and start < i:
            start += 1
        j = start - 1 if start > 0 else 0  # the sample just outside the window: a full span
        span = t - s.seconds[j]
        if i == 0 or span <= 0:
            urls.append(0.0)
            mbs.append(0.0)
            continue
        urls.append(round((s.fetched[i] - s.fetched[j]) / span, 3))
        mbs.append(round((s.bytes[i] - s.bytes[j]) / span / 1e6, 4))
    return urls, mbs


def _time_layout(fig: Any, title: str) -> None:
    fig.update_layout(
        template="plotly_white",
        title=_title(title),
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        hovermode="x unified",
    )
    fig.update_xaxes(title_text="time (UTC)", hoverformat="%H:%M:%S", ticks="outside", nticks=7)
    fig.update_yaxes(ticks="outside", ticklen=4, tickcolor="rgba(0,0,0,0)")


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
    grid, height = _grid_figure(report)
    parts = [
        f'<div class="chips">{chips}{extra}</div>',
        _chart("ranks", grid, "This folder has no ranks yet.", height=height),
        _attention(r.attention),
    ]
    return "".join(parts)


def grid_shape(ranks: int) -> tuple[int, int]:
    """Columns and rows of the rank grid: about 2.5 times wider than high, whole tens."""
    if ranks <= 20:
        return max(ranks, 1), 1
    cols = min(100, 10 * math.ceil(math.sqrt(ranks * 2.5) / 10))
    return cols, math.ceil(ranks / cols)


def _grid_figure(report: Report) -> tuple[Any | None, int]:
    letters = report.ranks.grid
    if not letters:
        return None, 0
    rows_by_rank = {row.rank: row for row in report.ranks.rows}
    cols, nrows = grid_shape(len(letters))
    index = {state: i for i, state in enumerate(RANK_STATES)}
    z: list[list[int | None]] = []
    text: list[list[str]] = []
    for r in range(nrows):
        z_row: list[int | None] = []
        t_row: list[str] = []
        for c in range(cols):
            rank = r * cols + c
            if rank >= len(letters):
                z_row.append(None)
                t_row.append("")
                continue
            state = _STATE_OF.get(letters[rank], "not started")
            z_row.append(index[state])
            t_row.append(_rank_hover(rank, state, rows_by_rank.get(rank)))
        z.append(z_row)
        text.append(t_row)
    n = len(RANK_STATES)
    scale: list[list[Any]] = []
    for i, state in enumerate(RANK_STATES):
        scale += [[i / n, STATE_COLOURS[state]], [(i + 1) / n, STATE_COLOURS[state]]]
    gap = 2 if cols <= 50 else 1
    fig = go.Figure(
        go.Heatmap(
            z=z,
            text=text,
            hovertemplate="%{text}<extra></extra>",
            hoverongaps=False,
            colorscale=scale,
            zmin=-0.5,
            zmax=n - 0.5,
            showscale=False,
            xgap=gap,
            ygap=gap,
        )
    )
    cell = max(9, min(30, 1000 // cols))
    height = nrows * cell + 80
    label_every = max(1, math.ceil(nrows / 25))
    fig.update_layout(
        template="plotly_white",
        title=_title(f"Every rank by state ({len(letters):,}; row start + column = rank)"),
        margin={"l": 55, "r": 10, "t": 45, "b": 30},
        plot_bgcolor="white",
    )
    fig.update_xaxes(
        side="top",
        showgrid=False,
        zeroline=False,
        tickmode="array",
        tickvals=list(range(0, cols, 5 if cols > 20 else 1)),
        constrain="domain",
        ticks="",
        tickfont={"size": 10, "color": "#666"},
    )
    fig.update_yaxes(
        autorange="reversed",
        showgrid=False,
        zeroline=False,
        tickmode="array",
        tickvals=list(range(0, nrows, label_every)),
        ticktext=[f"{r * cols:,}" for r in range(0, nrows, label_every)],
        scaleanchor="x",
        scaleratio=1,
        constrain="domain",
        ticks="",
        tickfont={"size": 10, "color": "#666"},
    )
    return fig, height


def _rank_hover(rank: int, state: str, row: RankRow | None) -> str:
    parts = [f"<b>rank {rank}</b>: {html.escape(state)}"]
    if row is not None:
        if row.planned is not None:
            parts.append(f"{row.committed:,} of {row.planned:,} committed, {row.failed:,} failed")
        if row.urls_per_s:
            parts.append(f"{row.urls_per_s:,.1f} URLs/s")
        if row.detail:
            parts.append(html.escape(row.detail))
    return "<br>".join(parts)


def _attention(rows: Sequence[RankRow]) -> str:
    if not rows:
        return '<p class="empty">No rank needs a look: none is dead, stopped or waiting.</p>'
    rows = sorted(rows, key=lambda r: _SEVERITY.get(r.state, len(_SEVERITY)))  # stable
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
    more = len(rows) - ATTENTION_ROWS
    caption = f"and {more:,} more (--json lists every rank)" if more > 0 else ""
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
    kinds = _hbar(list(f.by_kind.items()), "Failed items by error kind", "#d62728", x_title="items")
    answered = sum(f.by_http_status.values())
    other = {code: n for code, n in f.by_http_status.items() if not code.startswith("2")}
    if not answered:
        no_status = "No HTTP answer yet."
    else:
        no_status = f"Every HTTP answer was a success (2xx): {answered:,} answers."
    height = _hbar_height(len(f.by_kind))
    charts = _row(
        _chart("error-kinds", kinds, "No item failed.", height=height),
        _chart(
            "http-status",
            _status_figure(other, answered - sum(other.values())),
            no_status,
            height=height,
        ),
    )
    hosts = _hosts_table(
        "Top hosts by failures", f.hosts_by_failures, "No host had a failure."
    ) + _hosts_table(
        "Top hosts by time held back (Retry-After, cool-downs) and 429/503 answers",
        f.hosts_by_parked,
        "No host was throttled or held back.",
    )
    return charts + hosts


def _status_figure(by_status: dict[str, int], successes: int) -> Any | None:
    """The answers other than 2xx (each try counts: a URL retried on 503 shows several)."""
    if not by_status:
        return None
    codes = sorted(by_status, key=lambda s: (len(s), s))
    fig = go.Figure(
        go.Bar(
            x=codes,
            y=[by_status[c] for c in codes],
            marker_color=[_status_colour(c) for c in codes],
            text=[f"{by_status[c]:,}" for c in codes],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="HTTP %{x}: %{y:,} answers<extra></extra>",
        )
    )
    fig.update_layout(
        template="plotly_white",
        title=_title(f"Answers by HTTP status, other than 2xx ({successes:,} were 2xx)"),
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        showlegend=False,
    )
    fig.update_xaxes(type="category", title_text="HTTP status")
    fig.update_yaxes(title_text="answers", rangemode="tozero")
    return fig


def _status_colour(code: str) -> str:
    return {"3": "#17becf", "4": "#f0a202", "5": "#d62728"}.get(code[:1], "#888")


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
    c = report.content
    types = list(c.content_types.items())
    types.sort(key=lambda kv: (-kv[1], kv[0]))
    if len(types) > CONTENT_TYPES:
        rest = sum(v for _, v in types[CONTENT_TYPES - 1 :])
        types = [*types[: CONTENT_TYPES - 1], ("other", rest)]
    return _row(
        _chart("sizes", _sizes_figure(c.sizes), "No body was fetched yet."),
        _chart(
            "content-types",
            _hbar(types, "Successes by content type", "#1f77b4", x_title="items"),
            "No content type was seen yet.",
            height=max(340, _hbar_height(len(types))),
        ),
    )


def _sizes_figure(sizes: dict[str, int]) -> Any | None:
    if not sizes:
        return None
    labels = [size_bucket_label(b) for b in range(SIZE_BUCKETS)]
    present = [i for i, label in enumerate(labels) if sizes.get(label)]
    unknown = {k: v for k, v in sizes.items() if k not in labels}  # a label of another version
    if not present and not unknown:
        return None
    sized = [i for i in present if i > 0]  # "0 B" (empty bodies) is a bar of its own
    span = labels[min(sized) : max(sized) + 1] if sized else []
    x = [*(labels[:1] if 0 in present else []), *span, *unknown]
    y = [sizes.get(label, 0) for label in x]
    fig = go.Figure(
        go.Bar(
            x=x,
            y=y,
            marker_color="#1f77b4",
            hovertemplate="%{x}: %{y:,} bodies<extra></extra>",
        )
    )
    # A bar's tick names where its bucket starts; the bucket holds sizes up to twice that.
    ticks = [label.split("-")[0] if label in labels[1:-1] else label for label in x]
    fig.update_layout(
        template="plotly_white",
        title=_title("Body sizes of successes"),
        margin={"l": 60, "r": 20, "t": 50, "b": 80},
        bargap=0.08,
        showlegend=False,
    )
    fig.update_xaxes(
        type="category",
        categoryorder="array",
        categoryarray=x,
        tickmode="array",
        tickvals=x,
        ticktext=ticks,
        tickangle=-45 if len(x) > 8 else 0,
        title_text="body size (each bar: from this size to twice it)",
    )
    fig.update_yaxes(title_text="bodies", rangemode="tozero")
    return fig


# -- shared pieces --------------------------------------------------------------------------


def _hbar(items: Sequence[tuple[str, int]], title: str, colour: str, *, x_title: str) -> Any | None:
    """Horizontal bars, the largest on top."""
    if not items:
        return None
    labels = [k for k, _ in items]
    values = [v for _, v in items]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=colour,
            text=[f"{v:,}" for v in values],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:,}<extra></extra>",
        )
    )
    fig.update_layout(bargap=0.45 if len(items) < 4 else 0.25)
    fig.update_layout(
        template="plotly_white",
        title=_title(title),
        margin={"l": 10, "r": 50, "t": 50, "b": 45},
        showlegend=False,
    )
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    fig.update_xaxes(title_text=x_title, rangemode="tozero")
    return fig


def _hbar_height(bars: int) -> int:
    return max(280, 110 + 30 * bars)


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


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).replace(tzinfo=None)


def _stamp(seconds: float) -> str:
    return f"{_utc(seconds):%Y-%m-%d %H:%M:%S}"


def _title(text: str) -> dict[str, Any]:
    """A chart's title, as every chart of the page has it: left, 15 px."""
    return {"text": text, "x": 0, "xanchor": "left", "font": {"size": 15}}


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
.progress .ok { background: #2ca02c; }
.progress .failed { background: #d62728; }
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
