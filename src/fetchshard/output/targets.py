"""What is known of an item's file before it is fetched (its :class:`FileTarget`): where it
goes (``output.path_column``, checked), its expected size and checksum (``input.size_column``,
``input.checksum_column``), and for a mirror the commit its metadata names. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow as pa

from fetchshard.config import Config
from fetchshard.http.content import ExpectedFile, column_index, expected_file
from fetchshard.output.filenames import check_relative_path
from fetchshard.output.files import FileTarget

# A mirror's listing column naming the commit each file is from (hub/input.py writes it).
COMMIT_COLUMN = "commit"


@dataclass(frozen=True)
class TargetRule:
    """How an item's extra columns become its :class:`FileTarget`."""

    expected: ExpectedFile | None
    path_index: int | None
    commit_index: int | None
    reserved: tuple[str, ...] = ()  # folders a path may not go under

    @classmethod
    def of(
        cls, config: Config, extras: pa.Schema | None, reserved: tuple[str, ...] = ()
    ) -> TargetRule:
        names = list(extras.names) if extras is not None else []
        return cls(
            expected_file(config.input, extras),
            column_index(names, config.output.path_column),
            column_index(names, COMMIT_COLUMN) if config.output.path_column else None,
            reserved,
        )

    def target(self, extras: str | None) -> FileTarget | str:
        """The item's target, or why its path cannot be written (a failed row's message)."""
        values = json.loads(extras) if extras is not None else []
        relative = None
        if self.path_index is not None:
            path = values[self.path_index] if self.path_index < len(values) else None
            if not isinstance(path, str):
                return "no file path in the input's path column"
            problem = check_relative_path(path, self.reserved)
            if problem is not None:
                return problem
            relative = PurePosixPath(path)
        commit = None
        if self.commit_index is not None and self.commit_index < len(values):
            value = values[self.commit_index]
            commit = value if isinstance(value, str) and value else None
        if self.expected is None:
            return FileTarget(relative=relative, commit=commit)
        checksum = self.expected.checksum(extras)
        return FileTarget(
            relative=relative,
            size=self.expected.size(extras),
            algorithms=self.expected.algorithms(extras),
            checked=checksum is not None,
            etag=checksum[1] if checksum is not None else None,
            commit=commit,
        )
