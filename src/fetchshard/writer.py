"""Parquet part files of one rank, and the commit protocol that makes them exactly-once.

A part is written to ``part-N.parquet.tmp``, fsynced, renamed to ``part-N.parquet``, the
folder fsynced, and only then are its items marked committed in the ledger, in one
transaction. A crash before the rename leaves a tmp file (deleted at start-up); a crash
between the rename and the ledger commit leaves a part the ledger does not know, which
:func:`recover` adopts by reading its item ids.
"""

from __future__ import annotations

import logging
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from fetchshard.config import OutputConfig
from fetchshard.faults import crash_point
from fetchshard.ledger import Ledger
from fetchshard.paths import TMP_SUFFIX, RunPaths, fsync_path
from fetchshard.schema import ResultRow, output_schema, rows_to_table

log = logging.getLogger(__name__)


def recover(paths: RunPaths, rank: int, ledger: Ledger) -> int:
    """Delete tmp files and adopt renamed-but-unrecorded parts; return the next part number."""
    folder = paths.shard_dir(rank)
    folder.mkdir(parents=True, exist_ok=True)
    known = ledger.committed_parts()
    highest = max(known, default=0)
    for entry in sorted(folder.iterdir()):
        if entry.name.endswith(TMP_SUFFIX):
            log.info("removing unfinished part %s", entry.name)
            entry.unlink()
            continue
        number = paths.part_number(entry)
        if number is None:
            continue
        highest = max(highest, number)
        if number in known:
            continue
        table = pq.read_table(entry, columns=["item_id", "attempts", "error_kind"])
        items = list(
            zip(
                table.column("item_id").to_pylist(),
                table.column("attempts").to_pylist(),
                table.column("error_kind").to_pylist(),
                strict=True,
            )
        )
        ledger.commit_part(
            number, items, rows=len(items), nbytes=entry.stat().st_size, now=time.time()
        )
        log.info(
            "adopted part %s (%d rows) renamed before its ledger commit", entry.name, len(items)
        )
    return highest + 1


class PartWriter:
    """Streams result rows into row groups of the open part; rolls and commits parts."""

    def __init__(
        self,
        paths: RunPaths,
        rank: int,
        ledger: Ledger,
        config: OutputConfig,
        extras: pa.Schema | None,
        next_part: int,
    ) -> None:
        self._paths = paths
        self._rank = rank
        self._ledger = ledger
        self._config = config
        self._extras = extras
        self._schema = output_schema(extras)
        self._next_part = next_part
        self._writer: pq.ParquetWriter | None = None
        self._part: int | None = None
        self._opened_at = 0.0
        self._buffer: list[ResultRow] = []
        self._buffer_bytes = 0
        self._part_rows: list[tuple[int, int, str | None]] = []
        self._part_bytes = 0
        self.parts_committed = 0
        self.rows_committed = 0

    @property
    def open_rows(self) -> int:
        """Rows written or buffered but not yet committed."""
        return len(self._part_rows)

    def add(self, row: ResultRow) -> None:
        self._buffer.append(row)
        self._part_rows.append((row.item_id, row.attempts, row.error_kind))
        size = 256 + len(row.url) + (len(row.body) if row.body is not None else 0)
        self._buffer_bytes += size
        self._part_bytes += size
        if self._part is None:
            self._part = self._next_part
            self._next_part += 1
            self._opened_at = time.monotonic()
        if self._buffer_bytes >= self._config.row_group_bytes:
            self._flush_row_group()
        if (
            len(self._part_rows) >= self._config.part_max_rows
            or self._part_bytes >= self._config.part_max_bytes
        ):
            self.commit()

    def due(self) -> bool:
        """Whether the open part has been open longer than ``commit_interval``."""
        return (
            self._part is not None
            and time.monotonic() - self._opened_at >= self._config.commit_interval
        )

    def _flush_row_group(self) -> None:
        if not self._buffer:
            return
        assert self._part is not None
        if self._writer is None:
            tmp = self._paths.part_tmp(self._rank, self._part)
            tmp.parent.mkdir(parents=True, exist_ok=True)
            compression = self._config.compression
            self._writer = pq.ParquetWriter(
                tmp, self._schema, compression=None if compression == "none" else compression
            )
        table = rows_to_table(self._buffer, self._schema, self._extras)
        self._writer.write_table(table, row_group_size=len(self._buffer))
        self._buffer = []
        self._buffer_bytes = 0

    def commit(self) -> None:
        """Make the open part visible (tmp -> fsync -> rename) and mark its items committed."""
        if self._part is None:
            return
        self._flush_row_group()
        assert self._writer is not None
        part = self._part
        self._writer.close()
        self._writer = None
        tmp = self._paths.part_tmp(self._rank, part)
        final = self._paths.part(self._rank, part)
        fsync_path(tmp)
        os.replace(tmp, final)
        fsync_path(final.parent)
        crash_point("after_rename", part)
        self._ledger.commit_part(
            part,
            self._part_rows,
            rows=len(self._part_rows),
            nbytes=final.stat().st_size,
            now=time.time(),
        )
        self.parts_committed += 1
        self.rows_committed += len(self._part_rows)
        log.debug("committed %s (%d rows)", final.name, len(self._part_rows))
        self._part = None
        self._part_rows = []
        self._part_bytes = 0
