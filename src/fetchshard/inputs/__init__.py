"""Stream URL inputs (txt, csv, tsv, jsonl, parquet; plain, .gz or .zst) in bounded Arrow batches.

Nothing here reads a whole file into memory: text formats go through a decompressing
``pa.input_stream`` read in fixed-size chunks, CSV through pyarrow's streaming reader, Parquet
through ``ParquetFile.iter_batches`` over the needed columns only. Memory is bounded by
``input.batch_rows`` and a few fixed buffers, never by the size of the input.

How each format becomes rows:

* **txt** — one URL per line; surrounding whitespace stripped, blank lines are not rows. A line
  that is not valid UTF-8 gives a ``None`` URL. An over-long line is cut while reading and
  passed on as ``max_url_length + 1`` characters, so validation rejects it as too long.
* **csv / tsv** — a header row is required. Every needed column is read as *binary* and
  decoded here, so invalid UTF-8 never stops the reader: a URL that is not UTF-8 becomes
  ``None``, an extra value is decoded with U+FFFD replacement. CSV extras are strings.
* **jsonl** — parsed line by line with :mod:`json` (pyarrow's streaming JSON reader fixes
  the types from its first block and fails on any later change, on fields that appear late
  and on a non-string URL). The extras schema of a file is inferred from its first
  :data:`JSONL_SAMPLE_ROWS` rows (JSON types kept: int64, double, string, nested; a column
  that is only null there is a string column); later rows are converted to that schema. A
  value of a string column that is not a string is kept as its JSON text; any other value
  that does not fit is an :class:`InputError`. Keys first seen after the sample are ignored
  with a warning (list them in ``input.extra_columns`` to keep them). A URL that is not a
  string is ``None``.
* **parquet** — only the needed columns are read. Extras keep their types, except temporal
  and decimal columns, which become strings, and dictionary columns, which are decoded.

URLs from every format have surrounding whitespace stripped and are cut to
``max_url_length + 1`` characters when longer; a batch holds them as one ``pa.string()``
array (null where the text above says ``None``). Table formats clean them vectorized. Extra
columns named like a column the writer owns (:data:`RESERVED_COLUMNS`) are renamed ``input_<name>``.
"""

from fetchshard.inputs.files import FORMATS, detect_format, fingerprint_files, resolve_inputs
from fetchshard.inputs.readers import (
    InputBatch,
    InputSet,
    iter_batches,
    open_inputs,
    read_ahead,
    validate_inputs,
)
from fetchshard.inputs.specs import JSONL_SAMPLE_ROWS, RESERVED_COLUMNS
from fetchshard.strings import byte_positions, rows_with_bytes, string_buffers

__all__ = [
    "FORMATS",
    "JSONL_SAMPLE_ROWS",
    "RESERVED_COLUMNS",
    "InputBatch",
    "InputSet",
    "byte_positions",
    "detect_format",
    "fingerprint_files",
    "iter_batches",
    "open_inputs",
    "read_ahead",
    "resolve_inputs",
    "rows_with_bytes",
    "string_buffers",
    "validate_inputs",
]
