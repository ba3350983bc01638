"""merge/job.py's checks: options, the body's form, the caption column."""

from __future__ import annotations

import pyarrow as pa
import pytest

from fetchshard.errors import ConfigError
from fetchshard.merging.job import MergeOptions, _body_as, _check_caption
from fetchshard.merging.plan import BODY_BINARY
from fetchshard.output.columns import BASE_COLUMNS

PLAIN = BASE_COLUMNS.schema(pa.schema([("caption", pa.string())]))
WITH_IMAGE = BASE_COLUMNS.schema(pa.schema([("image", pa.string())]))


def test_the_body_is_never_image_where_an_input_column_has_the_name() -> None:
    assert _body_as(MergeOptions(), PLAIN) == "auto"
    assert _body_as(MergeOptions(body_as="binary"), PLAIN) == "binary"
    assert _body_as(MergeOptions(), WITH_IMAGE) == BODY_BINARY
    with pytest.raises(ConfigError, match="a column named 'image'"):
        _body_as(MergeOptions(body_as="image"), WITH_IMAGE)


def test_the_caption_must_be_a_column_of_the_parts() -> None:
    _check_caption(MergeOptions(file_format="webdataset", caption="caption"), PLAIN)
    with pytest.raises(ConfigError, match=r"no column 'title'.*caption"):
        _check_caption(MergeOptions(file_format="webdataset", caption="title"), PLAIN)
    with pytest.raises(ConfigError, match="no column 'body'"):
        _check_caption(MergeOptions(file_format="webdataset", caption="body"), PLAIN)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"file_bytes": 0}, "--file-bytes: must be greater than 0"),
        ({"file_rows": 0}, "--file-rows: must be greater than 0"),
        ({"row_group_bytes": -1}, "--row-group-bytes: must be greater than 0"),
        ({"compression": "xz"}, "--compression: must be one of"),
        ({"body_as": "text"}, "--body-as: must be one of"),
        ({"file_format": "tar"}, "--format: must be one of parquet, webdataset"),
        ({"caption": "caption"}, "--caption: only with --format webdataset"),
        ({"dedup": "url"}, "--dedup: must be one of content"),
    ],
)
def test_bad_options_are_refused_on_creation(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MergeOptions(**options)  # type: ignore[arg-type]
