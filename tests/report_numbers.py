"""Every number an HTML report draws, and whether the ``--json`` document holds it (issue 30).

:func:`missing` reads what the page draws: each plotly figure's data (a trace's values, its
category labels and times, its texts, the hover texts of the rank grid), the figures' titles,
annotations, legend names and tick labels, the progress bar's widths and every number in the
page's text. Then it looks each up in the JSON document:

- a numeric array of a trace must equal one of the document's sequences (a list of numbers,
  a column of ``history``'s rows, a dict's values) exactly, a time axis a sequence of
  seconds since the epoch (to the microsecond plotly keeps);
- a category label (a bar's x or y) must be one of the document's strings or keys;
- the rank grid's cells must be the states ``ranks.grid`` names, rank by rank;
- a number in a text (a table cell, a title, a tile) must be how the page formats one of the
  document's numbers (``12,345``, ``88.5%``, ``2.44 MB``, ``3 min 05 s``, ``1.08×``, a time
  stamp...), once the document's own strings (hosts, URLs, reasons, size labels) are taken
  out of the text.

It returns what is drawn and not in the document (an empty list: everything is), with where
it was drawn, and how much it looked at, so a test can tell that it looked at all.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from fetchshard.reporting import units
from fetchshard.reporting.collect import RANK_STATES
from fetchshard.reporting.summary import STATE_LETTERS

# Labels of the page that hold digits and are no number of the report.
STATIC = ("429/503",)

_STAMP = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"
_DURATION = r"\d+ d \d+ h|\d+ h \d{2} min|\d+ min \d{2} s|\d+(?:\.\d+)? (?:ms|s)"
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_SIZE = rf"(?:{_NUMBER}) (?:TB|GB|MB|kB|B)"
_TOKEN = re.compile(
    rf"(?<![\w.])(?:{_STAMP}|{_DURATION}|{_SIZE}|(?:{_NUMBER})%|(?:{_NUMBER})×|{_NUMBER})(?!\w)"
)
_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?$")
_TAG = re.compile(r"<[^>]+>")


@dataclass
class Looked:
    """What :func:`missing` compared: how many arrays, labels, cells and text numbers."""

    arrays: int = 0
    labels: int = 0
    cells: int = 0
    tokens: int = 0
    figures: list[str] = field(default_factory=list)


def missing(page: str, doc: dict[str, Any], looked: Looked | None = None) -> list[str]:
    """What ``page`` draws that ``doc`` (the report's JSON) does not hold (see the module)."""
    looked = looked if looked is not None else Looked()
    known = _Known(doc)
    out: list[str] = []
    body = page[page.index("</head>") :]
    texts: list[tuple[str, str]] = []
    for name, data, layout in figures(body):
        looked.figures.append(name)
        for i, trace in enumerate(data):
            where = f"{name} trace {i}"
            texts.append((f"{where} name", str(trace.get("name", ""))))
            for axis in ("x", "y"):
                values = trace.get(axis)
                if values is not None:
                    out += _array(f"{where} {axis}", list(values), known, looked)
            if "z" in trace:
                out += _grid(where, trace["z"], doc["ranks"]["grid"], looked)
            text = trace.get("text")
            if isinstance(text, list):
                flat = [t for row in text for t in (row if isinstance(row, list) else [row])]
                texts += [(f"{where} text", str(t)) for t in flat]
        texts.append((f"{name} title", str(_get(layout, "title", "text") or "")))
        for note in layout.get("annotations", []):
            texts.append((f"{name} annotation", str(note.get("text", ""))))
        for shape in layout.get("shapes", []):
            if shape.get("y0") == shape.get("y1") and shape.get("y0") is not None:
                out += _scalar(f"{name} line", shape["y0"], known)
        for axis, value in layout.items():
            if re.fullmatch(r"[xy]axis\d*", axis) and isinstance(value, dict):
                for tick in value.get("ticktext", []):
                    texts.append((f"{name} {axis} tick", str(tick)))
                for tick in value.get("tickvals", []):
                    if isinstance(tick, (int, float)):
                        out += _scalar(f"{name} {axis} tick", tick, known)
    for var, value in re.findall(r"--(committed|failed):([\d.]+%)", body):
        texts.append((f"progress bar {var}", value))
    texts.append(("page text", page_text(body)))
    for where, text in texts:
        for token in _TOKEN.findall(known.without_strings(_TAG.sub(" ", html.unescape(text)))):
            looked.tokens += 1
            if token not in known.renderings:
                out.append(f"{where}: {token!r} is no number of the JSON")
    return out


def figures(body: str) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
    """Each ``Plotly.newPlot(id, data, layout, config)`` of the page: (id, data, layout)."""
    decoder = json.JSONDecoder()
    out = []
    for match in re.finditer(r"Plotly\.newPlot\(", body):
        args: list[Any] = []
        at = match.end()
        for _ in range(3):
            at = len(body) - len(body[at:].lstrip(" \n\t,"))
            value, at = decoder.raw_decode(body, at)
            args.append(value)
        out.append((args[0], args[1], args[2]))
    return out


def page_text(body: str) -> str:
    """The text a reader sees, outside the figures: scripts and styles out, tags out."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return html.unescape(_TAG.sub(" ", body))


class _Known:
    """The JSON document's numbers, sequences and strings, and the numbers as the page may
    format them."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.numbers: list[float] = []
        self.sequences: list[list[float]] = []
        self.strings: set[str] = set()
        self._walk(doc)
        self._number_set = set(self.numbers)
        self.renderings: set[str] = set()
        for v in self.numbers:
            self.renderings |= _renderings(v)
        # Longest first: a size label goes whole before its first half ("16 B").
        removable = {s for s in self.strings if len(s) >= 3 and not _numeric(s)}
        removable |= {p.strip() for s in removable for p in s.split("-") if len(p.strip()) >= 3}
        self._removable = sorted(removable, key=len, reverse=True)

    def _walk(self, value: Any) -> None:
        if isinstance(value, bool) or value is None:
            return
        if isinstance(value, (int, float)):
            self.numbers.append(value)
        elif isinstance(value, str):
            self.strings.add(value)
            if _numeric(value):
                self.numbers.append(float(value))
        elif isinstance(value, list):
            self.numbers.append(len(value))
            if value and all(_is_number(v) for v in value):
                self.sequences.append(value)
            if value and all(isinstance(v, list) and v for v in value):
                for column in zip(*value, strict=False):
                    if all(_is_number(v) for v in column):
                        self.sequences.append(list(column))
            for v in value:
                self._walk(v)
        elif isinstance(value, dict):
            self.numbers.append(len(value))
            values = list(value.values())
            if values and all(_is_number(v) for v in values):
                self.sequences.append(values)
            for k, v in value.items():
                self._walk(k)
                self._walk(v)

    def without_strings(self, text: str) -> str:
        for s in STATIC:
            text = text.replace(s, " ")
        for s in self._removable:
            if s in text:
                text = text.replace(s, " ")
        return text

    def has_number(self, value: float) -> bool:
        return value in self._number_set

    def has_sequence(self, values: list[float], *, tol: float = 0.0) -> bool:
        """Equal to one of the sequences: exactly (floats go through JSON unchanged), or to
        ``tol`` (times, which plotly keeps to the microsecond)."""
        return any(
            len(seq) == len(values)
            and all(
                math.isclose(a, b, rel_tol=0.0, abs_tol=tol)
                for a, b in zip(seq, values, strict=True)
            )
            for seq in self.sequences
        )


def _array(where: str, values: list[Any], known: _Known, looked: Looked) -> list[str]:
    if not values:
        return []
    if all(_is_number(v) for v in values):
        looked.arrays += 1
        if known.has_sequence(values):
            return []
        return [f"{where}: {values[:8]}... is no sequence of the JSON"]
    if all(isinstance(v, str) and _ISO.match(v) for v in values):
        looked.arrays += 1
        seconds = [_epoch(v) for v in values]
        if known.has_sequence(seconds, tol=2e-6):
            return []
        return [f"{where}: the times {values[:3]}... are no sequence of the JSON"]
    out = []
    for label in values:
        looked.labels += 1
        if str(label) not in known.strings and not (_is_number(label) and known.has_number(label)):
            out.append(f"{where}: label {label!r} is not in the JSON")
    return out


def _grid(where: str, z: list[list[int | None]], grid: str, looked: Looked) -> list[str]:
    """The cells, row by row, are the ranks' states in rank order (a colour per state)."""
    cells = [c for row in z for c in row if c is not None]
    looked.cells += len(cells)
    drawn = "".join(STATE_LETTERS[RANK_STATES[int(c)]] for c in cells)
    return [] if drawn == grid else [f"{where}: the cells {drawn!r} are not ranks.grid {grid!r}"]


def _scalar(where: str, value: float, known: _Known) -> list[str]:
    return [] if known.has_number(value) else [f"{where}: {value!r} is not in the JSON"]


def _renderings(v: float) -> set[str]:
    """``v`` as the page may print it: grouped, rounded, a share, a size, a duration."""
    out = {str(v), f"{v:,}", units.size(v), units.duration(v), f"{v:.0f} s"}
    for digits in range(4):
        out |= {f"{v:,.{digits}f}", f"{v:.{digits}f}"}
    out |= {f"{v:.1%}", f"{v:.3%}", f"{v:,.1%}", f"{v:.2f}×"}
    if 1e9 < v < 1e10:  # seconds since the epoch: a time stamp
        stamp = dt.datetime.fromtimestamp(v, tz=dt.timezone.utc)
        out.add(f"{stamp:%Y-%m-%d %H:%M:%S}")
    return out


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).replace(tzinfo=dt.timezone.utc).timestamp()


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"\d+(?:\.\d+)?", text))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _get(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)  # type: ignore[assignment]
    return data
