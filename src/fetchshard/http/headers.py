"""Response headers that decide what happens next: Retry-After, RateLimit and X-Robots-Tag."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping

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


def parse_ratelimit(value: str | None) -> float | None:
    """Seconds to wait from a ``RateLimit`` header (draft-ietf-httpapi-ratelimit-headers:
    ``"<policy>";r=<remaining>;t=<seconds to the reset>``, items separated by commas): the
    longest ``t`` of a policy with nothing remaining, plus one second (a fixed window resets
    at ``t``: one request sent right then may still count against the old one), or None.
    The Hugging Face Hub sends it with its 429s."""
    if not value:
        return None
    wait: float | None = None
    for item in value.split(","):
        params = {}
        for part in item.split(";")[1:]:
            key, _, number = part.strip().partition("=")
            params[key.strip()] = number.strip()
        remaining, reset = params.get("r", ""), params.get("t", "")
        if remaining.isdigit() and int(remaining) == 0 and reset.isdigit():
            wait = max(wait or 0.0, float(reset) + 1.0)
    return wait


def wait_asked(headers: Mapping[str, str]) -> float | None:
    """How long an answer asks us to wait: the longer of ``Retry-After`` and ``RateLimit``."""
    asked = [
        w
        for w in (
            parse_retry_after(headers.get("Retry-After")),
            parse_ratelimit(headers.get("RateLimit")),
        )
        if w is not None
    ]
    return max(asked) if asked else None


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
