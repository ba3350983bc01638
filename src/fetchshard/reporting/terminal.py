"""The report on a terminal: rich renderables that fit 100 columns, at 4 ranks or 4,000."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from fetchshard.reporting import units
from fetchshard.reporting.summary import STATE_LETTERS, Report

_STYLES = {
    "running": "green",
    "waiting": "yellow",
    "planning": "cyan",
    "done": "blue",
    "stopped": "magenta",
    "dead": "bold red",
    "not started": "dim",
}
_SPARK = "▁▂▃▄▅▆▇█"
GRID_WIDTH = 80  # ranks per line of the grid
ATTENTION_ROWS = 12
WIDTH = 100


def render(report: Report) -> Group:
    """Everything, top to bottom: totals, the ranks, failures, content."""
    parts: list[Any] = [_header(report)]
    if report.notes:
        parts.append(Text("\n".join(report.notes), style="yellow"))
    parts += [_totals(report)]
    generations = _generations(report)
    if generations is not None:
        parts.append(generations)
    parts.append(_grid(report))
    if report.ranks.attention:
        parts.append(_attention(report))
    failures = _failures(report)
    if failures is not None:
        parts.append(failures)
    hosts = _hosts(report)
    if hosts is not None:
        parts.append(hosts)
    content = _content(report)
    if content is not None:
        parts.append(content)
    return Group(*parts)


def _header(report: Report) -> Text:
    stamp = dt.datetime.fromtimestamp(report.generated_at, tz=dt.timezone.utc)
    text = Text()
    text.append(f"{report.folder}", style="bold")
    text.append(f"  {report.world_size} ranks")
    if len(report.generations) > 1:
        text.append(f" (generation {report.generations[-1].generation})")
    text.append(f"  job {report.state}", style=_job_style(report.state))
    text.append(f"  {stamp:%Y-%m-%d %H:%M:%S} UTC", style="dim")
    return text


def _job_style(state: str) -> str:
    return {"done": "blue", "running": "green", "stopped": "bold red"}.get(state, "")


def _totals(report: Report) -> Panel:
    t = report.totals
    bar_width = 40
    filled = round(t.fetched_share * bar_width)
    bar = Text("━" * filled, style="green") + Text("━" * (bar_width - filled), style="dim")
    lines = Text()
    lines.append_text(bar)
    lines.append(f" {t.fetched_share:6.1%}  {t.fetched:,} of {t.planned:,} fetched, ")
    lines.append(f"{t.committed:,} committed\n")
    rate = "" if t.success_rate is None else f" ({t.success_rate:.1%} ok)"
    lines.append(f"ok {t.ok:,}  failed {t.failed:,}{rate}  pending {t.pending:,}  ")
    lines.append(f"{units.size(t.bytes)}\n")
    lines.append(
        f"now {t.urls_per_s_now:,.1f} URLs/s, {t.mb_per_s_now:,.2f} MB/s · over the run "
        f"{t.urls_per_s_run:,.1f} URLs/s, {t.mb_per_s_run:,.2f} MB/s · "
        f"{units.duration(t.elapsed_s)}\n"
    )
    eta = "ETA unknown" if t.eta_s is None else f"ETA {units.duration(t.eta_s)}"
    lines.append(f"{eta}: ", style="bold")
    lines.append(t.eta_reason)
    spark = _sparkline(report.history.urls_per_s)
    if spark:
        lines.append("\nURLs/s ", style="dim")
        lines.append(spark, style="green")
    return Panel(lines, title="totals", title_align="left", width=WIDTH)


def _generations(report: Report) -> Table | None:
    """The run's generations, when it has more than one (the grid below is the last's)."""
    if len(report.generations) < 2:
        return None
    table = _table("generations")
    for name in ("generation", "ranks", "state", "planned", "committed", "failed", "left"):
        table.add_column(name, justify="left" if name == "state" else "right")
    table.add_column("retry", ratio=1)
    for g in report.generations:
        table.add_row(
            str(g.generation),
            f"{g.world_size:,}",
            g.state,
            f"{g.planned:,}",
            f"{g.committed:,}",
            f"{g.failed:,}",
            "" if g.left is None else f"{g.left:,}",
            " ".join(g.retry_failed) if g.retry_failed is not None else "",
        )
    return table


def _grid(report: Report) -> Panel:
    text = Text()
    grid = report.ranks.grid
    for start in range(0, len(grid), GRID_WIDTH):
        if start:
            text.append("\n")
        text.append(f"{start:>5} ", style="dim")
        for letter in grid[start : start + GRID_WIDTH]:
            state = _STATE_OF[letter]
            text.append("■" if state != "not started" else "·", style=_STYLES[state])
    text.append("\n")
    for state, count in report.ranks.states.items():
        if count:
            text.append("■ ", style=_STYLES[state])
            text.append(f"{state} {count:,}  ")
    if report.ranks.imbalance is not None:
        text.append(f"· largest plan {report.ranks.imbalance:.2f}× the mean", style="dim")
    return Panel(text, title="ranks", title_align="left", width=WIDTH)


_STATE_OF = {letter: state for state, letter in STATE_LETTERS.items()}


def _attention(report: Report) -> Table:
    table = _table("ranks to look at", pad_edge=False)
    table.add_column("rank", justify="right")
    table.add_column("state")
    table.add_column("done", justify="right")
    table.add_column("URLs/s", justify="right")
    table.add_column("left", justify="right")
    table.add_column("why", overflow="fold", ratio=1)
    rows = report.ranks.attention
    for row in rows[:ATTENTION_ROWS]:
        done = f"{row.fetched:,}/{row.planned:,}" if row.planned is not None else "-"
        left = "" if row.seconds_left is None else units.duration(row.seconds_left)
        table.add_row(
            str(row.rank),
            Text(row.state, style=_STYLES[row.state]),
            done,
            f"{row.urls_per_s:,.1f}",
            left,
            row.detail,
        )
    if len(rows) > ATTENTION_ROWS:
        table.caption = f"and {len(rows) - ATTENTION_ROWS} more (--json lists every rank)"
    return table


def _failures(report: Report) -> Table | None:
    f = report.failures
    if not f.by_kind and not f.by_http_status:
        return None
    table = _table("failures")
    table.add_column("error kind")
    table.add_column("rows", justify="right")
    table.add_column("HTTP status")
    table.add_column("answers", justify="right")
    kinds = list(f.by_kind.items())
    statuses = sorted(f.by_http_status.items(), key=lambda kv: (-kv[1], kv[0]))
    for i in range(max(len(kinds), len(statuses))):
        kind = kinds[i] if i < len(kinds) else ("", "")
        status = statuses[i] if i < len(statuses) else ("", "")
        table.add_row(kind[0], _count(kind[1]), status[0], _count(status[1]))
    return table


def _hosts(report: Report) -> Table | None:
    f = report.failures
    rows = {h.host: h for h in [*f.hosts_by_failures, *f.hosts_by_parked]}
    if not rows:
        return None
    table = _table("hosts")
    table.add_column("host", overflow="fold", max_width=28)
    table.add_column("failed", justify="right")
    table.add_column("429/503", justify="right")
    table.add_column("held", justify="right")
    table.add_column("e.g.", overflow="fold", ratio=1)
    for h in rows.values():
        sample = f"{h.samples[0][0]}: {h.samples[0][1]}" if h.samples else ""
        held = units.duration(h.parked_s) if h.parked_s else ""
        table.add_row(h.host, _count(h.failures), _count(h.throttled), held, sample)
    return table


def _content(report: Report) -> Table | None:
    c = report.content
    if not c.sizes and not c.content_types:
        return None
    table = _table("content")
    table.add_column("content type", overflow="fold")
    table.add_column("rows", justify="right")
    table.add_column("size")
    table.add_column("rows", justify="right")
    table.add_column("", ratio=1)
    types = list(c.content_types.items())[:10]
    sizes = list(c.sizes.items())
    most = max(c.sizes.values(), default=1)
    for i in range(max(len(types), len(sizes))):
        kind = types[i] if i < len(types) else ("", "")
        size = sizes[i] if i < len(sizes) else ("", 0)
        bar = "█" * max(1, round(20 * int(size[1]) / most)) if size[1] else ""
        table.add_row(kind[0], _count(kind[1]), size[0], _count(size[1] or ""), bar)
    return table


def _table(title: str, **options: Any) -> Table:
    """A section of the view: titled on the left, the view's width, no outer edge."""
    return Table(title=title, title_justify="left", width=WIDTH, show_edge=False, **options)


def _count(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _sparkline(values: list[float], width: int = 80) -> str:
    if len(values) < 2:
        return ""
    step = max(1, len(values) // width)
    points = [max(values[i : i + step]) for i in range(0, len(values), step)][-width:]
    top = max(points)
    if top <= 0:
        return ""
    return "".join(_SPARK[min(len(_SPARK) - 1, int(v / top * (len(_SPARK) - 1)))] for v in points)
