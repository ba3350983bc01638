"""The Hub's endpoint and the token to send it, found as huggingface_hub finds them.

The token, in order: an explicit one (a flag), then ``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``,
then the token file (``HF_TOKEN_PATH``, else ``$HF_HOME/token``, else
``$XDG_CACHE_HOME/huggingface/token``, else ``~/.cache/huggingface/token``). No OIDC exchange,
no Colab vault. ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` keeps every one but the explicit token unsent.

Pure over the environment mapping it is handed (and the token file it reads).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from fetchshard import environment as env
from fetchshard.errors import HubError

DEFAULT_ENDPOINT = "https://huggingface.co"
# huggingface_hub's constants.ENV_VARS_TRUE_VALUES
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})
_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


@dataclass(frozen=True)
class HubToken:
    """A token and where it came from; only ``source`` is ever shown."""

    value: str = field(repr=False)
    source: str  # "the --token flag", "HF_TOKEN", "the token file /home/u/.cache/huggingface/token"

    def __str__(self) -> str:
        return f"token from {self.source}"


def hub_endpoint(environ: Mapping[str, str]) -> str:
    """``HF_ENDPOINT`` without its trailing ``/``, else https://huggingface.co."""
    endpoint = environ.get(env.HF_ENDPOINT, "").strip().rstrip("/") or DEFAULT_ENDPOINT
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise HubError(f"{env.HF_ENDPOINT}={endpoint!r} is not an http(s) URL without a query")
    return endpoint


def _clean(token: str | None) -> str | None:
    """huggingface_hub's _clean_token: no CR, LF or outer spaces; empty is no token."""
    if token is None:
        return None
    return token.replace("\r", "").replace("\n", "").strip() or None


def _expand(path: str, environ: Mapping[str, str]) -> str:
    """``~`` and ``$VAR`` / ``${VAR}`` from ``environ`` (an unknown variable stays as written)."""

    def variable(match: re.Match[str]) -> str:
        name = match.group(1).strip("{}")
        return environ.get(name, match.group(0))

    if path == "~" or path.startswith("~/"):
        home = environ.get("HOME") or os.path.expanduser("~")
        path = home + path[1:]
    return _VARIABLE.sub(variable, path)


def token_path(environ: Mapping[str, str]) -> str:
    """Where the token file is: ``HF_TOKEN_PATH``, else ``<HF_HOME>/token``."""
    explicit = environ.get(env.HF_TOKEN_PATH)
    if explicit:
        return _expand(explicit, environ)
    home = environ.get(env.HF_HOME)
    if not home:
        cache = environ.get(env.XDG_CACHE_HOME) or os.path.join("~", ".cache")
        home = os.path.join(cache, "huggingface")
    return os.path.join(_expand(home, environ), "token")


def _read_token_file(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise HubError(
            f"cannot read the Hugging Face token file {path}: {reason} "
            f"(fix it, or set {env.HF_TOKEN})"
        ) from None


def implicit_token_disabled(environ: Mapping[str, str]) -> bool:
    """Whether ``HF_HUB_DISABLE_IMPLICIT_TOKEN`` is set to a true value."""
    return environ.get(env.HF_HUB_DISABLE_IMPLICIT_TOKEN, "").strip().upper() in _TRUE


def token_source(
    environ: Mapping[str, str], explicit: str | None = None, *, flag: str = "the --token flag"
) -> HubToken | None:
    """The token to send and where it came from (``flag`` names the explicit one), or None."""
    token = _clean(explicit)
    if token is not None:
        return HubToken(token, flag)
    if implicit_token_disabled(environ):
        return None
    for name in (env.HF_TOKEN, env.HF_TOKEN_LEGACY):
        token = _clean(environ.get(name))
        if token is not None:
            return HubToken(token, name)
    path = token_path(environ)
    token = _clean(_read_token_file(path))
    if token is not None:
        return HubToken(token, f"the token file {path}")
    return None


def find_token(environ: Mapping[str, str], explicit: str | None = None) -> str | None:
    """The token to send (see :func:`token_source`), or None."""
    found = token_source(environ, explicit)
    return None if found is None else found.value
