"""The output columns, declared once: the fields of :class:`ResultRow`, in part order.

Each field's metadata gives its Arrow type and how the writer encodes it; the extra input
columns go where ``extras`` stands. A stage adds columns of its own with
:meth:`ColumnTable.extended` (stored in :attr:`ResultRow.more`, written before ``body``), and
whatever the run's table holds is reserved: an input column of the same name is renamed
``input_<name>`` (inputs.py), so nothing collides silently.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

STATUS_OK = "ok"
STATUS_FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Column:
    """One output column and how it is encoded in a part."""

    name: str
    type: pa.DataType
    nullable: bool = True
    dictionary: bool = False  # dictionary encoding: only for repetitive values
    statistics: bool = True  # min/max statistics: useless (and costly) on free text
    stage: bool = False  # a stage's column, kept in ResultRow.more

    @property
    def field(self) -> pa.Field:
        return pa.field(self.name, self.type, nullable=self.nullable)


def _col(tp: pa.DataType, *, default: Any = dataclasses.MISSING, **options: Any) -> Any:
    return field(default=default, metadata={"column": (tp, options)})


def _extras() -> Any:
    return field(metadata={"extras": True})


# Not frozen: made once per URL on the event loop (a frozen dataclass sets each field through
# object.__setattr__, several times the cost). Nothing changes a row once it is built.
@dataclass(slots=True, kw_only=True)
class ResultRow:
    """The terminal record of one item: what a part file holds for it (engine/rows.py builds
    it); field order is column order."""

    item_id: int = _col(pa.int64(), nullable=False)
    url: str = _col(pa.string(), statistics=False)
    extras: str | None = _extras()  # JSON of the extra input columns (extras.py)
    status: str = _col(pa.string(), nullable=False, dictionary=True)
    error_kind: str | None = _col(pa.string(), dictionary=True)
    error_message: str | None = _col(pa.string(), statistics=False)
    http_status: int | None = _col(pa.int32())
    final_url: str | None = _col(pa.string(), statistics=False)
    content_type: str | None = _col(pa.string(), dictionary=True)
    size: int | None = _col(pa.int64())
    sha256: str | None = _col(pa.string(), default=None, statistics=False)  # of the body
    attempts: int = _col(pa.int32(), nullable=False)
    fetched_at: float | None = _col(pa.timestamp("ms", tz="UTC"))  # seconds since the epoch
    elapsed_ms: float | None = _col(pa.float64())
    body: bytes | None = _col(pa.binary(), statistics=False)  # of a success, if stored
    more: dict[str, Any] | None = None  # the values of stage columns, by name


def _own_columns() -> tuple[list[Column], list[Column]]:
    head: list[Column] = []
    tail: list[Column] = []
    target = head
    for f in dataclasses.fields(ResultRow):
        if f.metadata.get("extras"):
            target = tail
        elif "column" in f.metadata:
            tp, options = f.metadata["column"]
            target.append(Column(f.name, tp, **options))
    return head, tail


@dataclass(frozen=True)
class ColumnTable:
    """The columns of a run's parts: ``head``, the extra input columns, ``tail``."""

    head: tuple[Column, ...]
    tail: tuple[Column, ...]

    @property
    def columns(self) -> tuple[Column, ...]:
        return (*self.head, *self.tail)

    @property
    def names(self) -> frozenset[str]:
        """Every name fetchshard writes: reserved against input columns."""
        return frozenset(c.name for c in self.columns)

    def extended(self, columns: Sequence[Column]) -> ColumnTable:
        """This table with a stage's columns, before ``body`` (which stays last)."""
        taken = self.names
        for column in columns:
            if column.name in taken:
                raise ValueError(f"column {column.name!r} is declared twice")
            taken = taken | {column.name}
        added = tuple(dataclasses.replace(c, stage=True) for c in columns)
        return ColumnTable(self.head, (*self.tail[:-1], *added, self.tail[-1]))

    def schema(self, extras: pa.Schema | None) -> pa.Schema:
        extra_fields = list(extras) if extras is not None else []
        own_head = [c.field for c in self.head]
        return pa.schema([*own_head, *extra_fields, *(c.field for c in self.tail)])

    def dictionary_columns(self, extras: pa.Schema | None) -> list[str]:
        names = [c.name for c in self.columns if c.dictionary]
        return [*names, *(extras.names if extras is not None else [])]

    def statistics_columns(self, extras: pa.Schema | None) -> list[str]:
        skip = {c.name for c in self.columns if not c.statistics}
        return [n for n in self.schema(extras).names if n not in skip]


# The column of a body written to a file (output/files.py adds it when files are in play);
# reserved against input names in every run, so a file list's "path" is always input_path.
PATH_COLUMN = "path"
BASE_COLUMNS = ColumnTable(*(tuple(part) for part in _own_columns()))
