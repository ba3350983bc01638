"""The one place an item and what happened to it become a result row or a retry."""

from __future__ import annotations

from fetchshard.errors import ErrorKind
from fetchshard.http.request import FetchResult
from fetchshard.ledger import WorkItem
from fetchshard.output.columns import STATUS_FAILED, STATUS_OK, ResultRow
from fetchshard.redact import mask_userinfo


def result_row(
    item: WorkItem,
    attempts: int,
    result: FetchResult | None,
    now: float,
    kind: ErrorKind | None,
    message: str | None,
) -> ResultRow:
    """The terminal row of ``item``: from its last attempt's ``result``, or (None) without a
    request (a bad URL, robots.txt, a given-up host)."""
    return ResultRow(
        item_id=item.item_id,
        url=mask_userinfo(item.url),  # the ledger keeps it whole, to fetch it
        extras=item.extras,
        status=STATUS_OK if kind is None else STATUS_FAILED,
        error_kind=None if kind is None else kind.value,
        error_message=message,
        http_status=result.http_status if result else None,
        final_url=mask_userinfo(result.final_url) if result and result.final_url else None,
        content_type=result.content_type if result else None,
        size=result.size if result else None,
        sha256=result.sha256 if result else None,
        attempts=attempts,
        fetched_at=now if result else None,
        elapsed_ms=result.elapsed_ms if result else None,
        body=result.body if result else None,
        more=_file_values(result) if result is not None else None,
    )


def _file_values(result: FetchResult) -> dict[str, str] | None:
    """The file columns' values (output/files.py): the file's path, the checked hashes."""
    if result.path is None and not result.digests:
        return None
    values = dict(result.digests) if result.digests else {}
    if result.path is not None:
        values["path"] = result.path
    return values


def retry_item(item: WorkItem, attempt: int, due: float, result: FetchResult) -> WorkItem:
    """``item`` after attempt ``attempt`` failed with ``result``, due again at ``due``."""
    kind = result.error_kind.value if result.error_kind is not None else None
    return WorkItem(
        item.item_id,
        item.url,
        item.extras,
        attempt,
        due,
        kind,
        result.error_message,
        result.http_status,
        item.fetch_url,
        item.host_id,
    )


def interrupted_item(item: WorkItem, now: float) -> WorkItem:
    """``item`` whose request was cut by the rank stopping: due at once on resume."""
    return WorkItem(
        item.item_id,
        item.url,
        item.extras,
        item.attempts,
        now,
        ErrorKind.INTERRUPTED.value,
        "the rank stopped during the request",
        None,
        item.fetch_url,
        item.host_id,
    )
