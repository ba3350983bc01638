"""The HTML page's plotly figures, each drawn from the :class:`Report` as it is: every number
a figure shows is a value of the report (``--json``); here it only gets a place, a colour and
a format. A figure with nothing to show is None (the page says why instead).
"""

from __future__ import annotations

import datetime as dt
import html
import math
from typing import Any

import plotly.graph_objects as go

from fetchshard.reporting import units
from fetchshard.reporting.collect import RANK_STATES, RankRow
from fetchshard.reporting.summary import STATE_LETTERS, Report

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
_STATE_OF = {letter: state for state, letter in STATE_LETTERS.items()}


def progress(report: Report) -> Any | None:
    """Items committed (and fetched, when a part is open) over time, and the plan."""
    h = report.history.samples
    if len(h) < 2:
        return None
    times = [utc(t) for t in h.time]
    fig = go.Figure()
    if h.fetched != h.committed:
        fig.add_trace(
            _line(
                times,
                h.fetched,
                {"color": "#1f77b4", "width": 1, "dash": "dot"},
                name="fetched (committed or in an open part)",
                hovertemplate="%{y:,.0f} fetched<extra></extra>",
            )
        )
    fig.add_trace(
        _line(
            times,
            h.committed,
            {"color": "#1f77b4", "width": 2},
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
    top = max([planned, *h.committed, *h.fetched]) or 1  # the axis: room above the plan
    _time_layout(
        fig, "Items committed" if h.fetched == h.committed else "Items fetched and committed"
    )
    fig.update_yaxes(title_text="items", range=[0, top * 1.1], rangemode="tozero")
    _legend_on_top(fig)
    return fig


def throughput(report: Report) -> Any | None:
    """URLs/s per sample (hidden at first: spiky), URLs/s and MB/s over the report's window."""
    h, rates = report.history, report.throughput
    if len(h) < 2:
        return None
    times = [utc(t) for t in h.samples.time]
    fig = go.Figure()
    fig.add_trace(
        _line(
            times,
            h.urls_per_s,
            {"color": "rgba(44,160,44,0.45)", "width": 1},
            name="URLs/s per sample",
            visible="legendonly",  # spiky: each rank's snapshot adds its items at once
            hovertemplate="%{y:,.1f} URLs/s (sample)<extra></extra>",
        )
    )
    fig.add_trace(
        _line(
            times,
            rates.urls_per_s,
            {"color": "#2ca02c", "width": 2.5},
            name=f"URLs/s over {units.duration(rates.window_s)}",
            hovertemplate="%{y:,.1f} URLs/s<extra></extra>",
        )
    )
    fig.add_trace(
        _line(
            times,
            rates.mb_per_s,
            {"color": "#ff7f0e", "width": 1.5, "dash": "dot"},
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


def _line(x: list[Any], y: Any, line: dict[str, Any], **more: Any) -> Any:
    """A line trace (``more``: its name, hover template, fill, axis...)."""
    return go.Scatter(x=x, y=y, mode="lines", line=line, **more)


def grid_shape(ranks: int) -> tuple[int, int]:
    """Columns and rows of the rank grid: about 2.5 times wider than high, whole tens."""
    if ranks <= 20:
        return max(ranks, 1), 1
    cols = min(100, 10 * math.ceil(math.sqrt(ranks * 2.5) / 10))
    return cols, math.ceil(ranks / cols)


def rank_grid(report: Report) -> tuple[Any | None, int]:
    """Every rank as a cell coloured by its state (rank = row start + column), its height."""
    letters = report.ranks.grid
    if not letters:
        return None, 0
    rows_by_rank = {row.rank: row for row in report.ranks.rows}
    cols, nrows = grid_shape(len(letters))
    index = {state: i for i, state in enumerate(RANK_STATES)}  # a colour, not a number
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
        title=title(f"Every rank by state ({len(letters):,}; row start + column = rank)"),
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


def http_status(report: Report) -> Any | None:
    """Rows by the HTTP status of their last answer, other than 2xx."""
    f = report.failures
    by_status = f.by_http_status_not_2xx
    if not by_status:
        return None
    codes = list(by_status)
    fig = go.Figure(
        go.Bar(
            x=codes,
            y=list(by_status.values()),
            marker_color=[_status_colour(c) for c in codes],
            text=[f"{n:,}" for n in by_status.values()],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="HTTP %{x}: %{y:,} answers<extra></extra>",
        )
    )
    fig.update_layout(
        template="plotly_white",
        title=title(f"Answers by HTTP status, other than 2xx ({f.http_2xx:,} were 2xx)"),
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
        showlegend=False,
    )
    fig.update_xaxes(type="category", title_text="HTTP status")
    fig.update_yaxes(title_text="answers", rangemode="tozero")
    return fig


def _status_colour(code: str) -> str:
    return {"3": "#17becf", "4": "#f0a202", "5": "#d62728"}.get(code[:1], "#888")


def sizes(report: Report) -> Any | None:
    """The bodies of successes by size range, every range between the smallest and largest."""
    bars = report.content.size_bars
    if not bars:
        return None
    x = list(bars)
    fig = go.Figure(
        go.Bar(
            x=x,
            y=list(bars.values()),
            marker_color="#1f77b4",
            hovertemplate="%{x}: %{y:,} bodies<extra></extra>",
        )
    )
    # A bar's tick names where its range starts; the range holds sizes up to twice that.
    ticks = [label.split("-")[0] for label in x]
    fig.update_layout(
        template="plotly_white",
        title=title("Body sizes of successes"),
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


def hbar(counts: dict[str, int], heading: str, colour: str, *, x_title: str) -> Any | None:
    """Horizontal bars in the order of ``counts`` (the report's: most first), top down."""
    if not counts:
        return None
    fig = go.Figure(
        go.Bar(
            x=list(counts.values()),
            y=list(counts),
            orientation="h",
            marker_color=colour,
            text=[f"{v:,}" for v in counts.values()],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{y}: %{x:,}<extra></extra>",
        )
    )
    fig.update_layout(bargap=0.45 if len(counts) < 4 else 0.25)
    fig.update_layout(
        template="plotly_white",
        title=title(heading),
        margin={"l": 10, "r": 50, "t": 50, "b": 45},
        showlegend=False,
    )
    fig.update_yaxes(type="category", autorange="reversed", automargin=True)
    fig.update_xaxes(title_text=x_title, rangemode="tozero")
    return fig


def hbar_height(bars: int) -> int:
    return max(280, 110 + 30 * bars)


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


def _time_layout(fig: Any, heading: str) -> None:
    fig.update_layout(
        template="plotly_white",
        title=title(heading),
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
        hovermode="x unified",
    )
    fig.update_xaxes(title_text="time (UTC)", hoverformat="%H:%M:%S", ticks="outside", nticks=7)
    fig.update_yaxes(ticks="outside", ticklen=4, tickcolor="rgba(0,0,0,0)")


def title(text: str) -> dict[str, Any]:
    """A chart's title, as every chart of the page has it: left, 15 px."""
    return {"text": text, "x": 0, "xanchor": "left", "font": {"size": 15}}


def utc(seconds: float) -> dt.datetime:
    """Seconds since the epoch as the naive UTC time plotly draws on a time axis."""
    return dt.datetime.fromtimestamp(seconds, tz=dt.timezone.utc).replace(tzinfo=None)


def stamp(seconds: float) -> str:
    return f"{utc(seconds):%Y-%m-%d %H:%M:%S}"
