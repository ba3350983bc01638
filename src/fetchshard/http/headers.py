"""Response headers that decide what happens next: Retry-After and X-Robots-Tag."""

from __future__ import annotations

import email.utils
import time

from fetchshard.http.client import UA_TOKEN


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def opt_out(values: list[str], directives: tuple[str, ...]) -> str | None:
    """The X-Robots-Tag directive that opts this response out for us, if any.

    ``noai`` applies to every crawler; ``otherbot: noai`` only to ``otherbot``.
    """
    if not directives:
        return None
    wanted = {d.lower() for d in directives}
    for value in values:
        agent: str | None = None
        for token in value.split(","):
            token = token.strip().lower()
            if ":" in token:
                head, _, rest = token.partition(":")
                if head.strip() not in wanted and " " not in head.strip():
                    agent, token = head.strip(), rest.strip()
            if token in wanted and agent in (None, "*", UA_TOKEN):
                return token
    return None
