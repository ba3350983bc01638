"""Secrets hidden from everything fetchshard writes: documents, logs, rows, reports.

What a secret is here: the values of configured headers (``fetch.headers``, each
``fetch.hosts`` entry's ``headers``: tokens, cookies, API keys), the userinfo of a URL
(``https://user:password@host/``, and a token used as the user name), and the command line's
``--set`` of those options. Each is replaced by :data:`REDACTED` where it would be written;
what is sent where is http/credentials.py's business.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "***"

# Keys of the settings whose values (a mapping: each value) are secrets, at any depth.
SECRET_KEYS = frozenset({"headers", "token"})
# Options that carry them, as ``--set`` writes them.
SECRET_OPTIONS = ("fetch.headers", "fetch.hosts", "hub.token")
TOKEN_FLAG = "--token"  # the command line's hub.token
_UNDER_SECRET_OPTIONS = tuple(f"{option}." for option in SECRET_OPTIONS)

# scheme://userinfo@ — the userinfo ends at the last "@" before the path; no "/", "?", "#"
# or whitespace inside it.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#@\s]+@")


def mask_userinfo(text: str) -> str:
    """``text`` with the userinfo of every URL in it replaced (``https://***@host/``)."""
    if "@" not in text:  # the common case, on every row
        return text
    return _USERINFO.sub(rf"\g<1>{REDACTED}@", text)


def redact_settings(value: Any, key: str = "") -> Any:
    """Plain settings (a config as ``dataclasses.asdict`` gives it) fit to write."""
    if isinstance(value, Mapping):
        if key in SECRET_KEYS:
            return {k: REDACTED for k in value}
        return {k: redact_settings(v, str(k)) for k, v in value.items()}
    if key in SECRET_KEYS and isinstance(value, str):
        return REDACTED
    if isinstance(value, list | tuple):
        return [redact_settings(v) for v in value]
    if isinstance(value, str):
        return mask_userinfo(value)
    return value


def secret_option(name: str) -> bool:
    """Whether the option ``name`` (``section.key``, or a key under it) holds secrets: its
    value is never written."""
    name = name.strip()
    return name in SECRET_OPTIONS or name.startswith(_UNDER_SECRET_OPTIONS)


def redact_command(argv: Sequence[str]) -> list[str]:
    """A command line fit to write: the value of ``--set fetch.headers=...`` (and the other
    :data:`SECRET_OPTIONS`) hidden, and URL userinfo anywhere."""
    out: list[str] = []
    after_set = after_token = False
    for arg in argv:
        prefix, body = ("--set=", arg[6:]) if arg.startswith("--set=") else ("", arg)
        if after_set or prefix:
            name, eq, _ = body.partition("=")
            if eq and secret_option(name):
                arg = f"{prefix}{name}={REDACTED}"
        if after_token:
            arg = REDACTED
        elif arg.startswith(f"{TOKEN_FLAG}="):
            arg = f"{TOKEN_FLAG}={REDACTED}"
        after_set, after_token = arg == "--set", arg == TOKEN_FLAG
        out.append(mask_userinfo(arg))
    return out


class RedactingFormatter(logging.Formatter):
    """A log formatter that hides URL userinfo in every line (messages, tracebacks)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_userinfo(super().format(record))
