"""HubState: the fake Hub's repos, switches, URL signing and request log, shared by both origins.

The log has one dict per request (control routes ``/_fake/...`` left out), recorded as the
answer's headers go out (so before the client can see them): ``t`` (``time.monotonic()`` at
arrival), ``wall``, ``origin`` (``"hub"`` or ``"cdn"``), ``method``, ``path`` (path and query
exactly as received), ``status``, ``auth`` (None, or the ``Authorization`` value masked: the
scheme and a few first characters of the token, never the whole token), ``range`` (the
``Range`` header or None), ``ua`` and ``body`` (for the CDN's and resolve-cache's bytes: the
body bytes the answer sends, up to a cut; 0 for HEAD; None elsewhere).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import IO, Any
from urllib.parse import quote

from aiohttp import web

from .hub_repos import HubFile, HubRepo

#: the Hub's resolver quota in the RateLimit-Policy header (anonymous tier, 5-minute window)
RESOLVER_QUOTA = 3000
RATE_WINDOW = 300


@dataclass
class HubSwitches:
    """What a test flips at runtime; counts are "the next K" and go down as they are used."""

    #: the next K resolves answer 429 with ``RateLimit: "resolvers";r=0;t=<rate_limit_reset>``
    rate_limited: int = 0
    rate_limit_reset: int = 2
    #: the next K LFS redirects point at an URL that expired (the CDN answers 403)
    expired: int = 0
    #: the next K CDN GETs announce the whole length, send ``cut_after`` bytes, close
    cut: int = 0
    cut_after: int = 0
    #: the next K CDN GETs have one byte flipped (the middle byte of the body sent)
    corrupt: int = 0
    #: the CDN answers a Range request with 200 and the whole body
    cdn_ignore_range: bool = False
    #: body bytes per second per CDN response (0: unlimited)
    cdn_bandwidth: float = 0.0
    #: the CDN sends ``ETag`` and ``Last-Modified`` (off: like the Xet bridge)
    cdn_validators: bool = False

    def update(self, values: Mapping[str, Any]) -> None:
        kinds = {f.name: f.type for f in fields(self)}
        for name, value in values.items():
            if name not in kinds:
                raise ValueError(f"unknown switch {name!r}")
            kind = kinds[name]
            if kind == "bool":
                if not isinstance(value, bool):
                    raise ValueError(f"{name} must be a bool, not {value!r}")
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ValueError(f"{name} must be an int >= 0, not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
            setattr(self, name, float(value) if kind == "float" else value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mask_authorization(value: str) -> str:
    """``Bearer hf_abcdef...`` -> ``Bearer hf_a***``: enough to tell tokens apart, never all."""
    scheme, _, secret = value.strip().partition(" ")
    if not secret:
        scheme, secret = "", scheme
    shown = secret[: min(4, len(secret) // 2)]
    return f"{scheme} {shown}***".lstrip()


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (any other value counts as a token)."""
    value = request.headers.get("Authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else value.strip()


@dataclass
class HubState:
    """State shared by the hub and the CDN listeners of one fake Hub."""

    repos: dict[tuple[str, str], HubRepo] = field(default_factory=dict)
    #: tree entries per page
    page_size: int = 3
    #: seconds a signed CDN URL stays valid
    url_ttl: float = 3600.0
    #: tokens the Hub knows; when set, any other token answers 401 "Invalid credentials"
    users: frozenset[str] | None = None
    switches: HubSwitches = field(default_factory=HubSwitches)
    secret: bytes = field(default_factory=lambda: os.urandom(16))
    hub_url: str = ""
    cdn_url: str = ""
    #: sha256 -> bytes of every LFS file, what the CDN serves
    blobs: dict[str, bytes] = field(default_factory=dict)
    #: resolves answered so far (the RateLimit header's remaining count)
    resolves: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    log_file: IO[str] | None = None
    keep_log: bool = True
    errors: list[str] = field(default_factory=list)
    stopping: bool = False

    def add_repos(self, repos: Iterable[HubRepo]) -> None:
        for repo in repos:
            if repo.key in self.repos:
                raise ValueError(f"repo {repo.key} defined twice")
            self.repos[repo.key] = repo
            for revision in repo.built.values():
                for f in revision.files.values():
                    if f.sha256 is not None:
                        self.blobs[f.sha256] = f.data

    def take(self, switch: str) -> bool:
        """Use one of the next-K count ``switch``: True if it was > 0."""
        left = getattr(self.switches, switch)
        if left > 0:
            setattr(self.switches, switch, left - 1)
            return True
        return False

    # -- signed CDN URLs -----------------------------------------------------------
    def signature(self, sha256: str, expires: int) -> str:
        return hmac.new(self.secret, f"{sha256}:{expires}".encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    def cdn_location(self, f: HubFile, expired: bool = False) -> str:
        assert f.sha256 is not None
        expires = int(time.time() - 60 if expired else time.time() + self.url_ttl)
        # a percent-encoded query parameter, as S3 and CloudFront URLs carry (not signed)
        name = quote(f"inline; filename*=UTF-8''{quote(f.path.rsplit('/', 1)[-1])};", safe="")
        return (
            f"{self.cdn_url}/blob/{f.sha256}?response-content-disposition={name}"
            f"&expires={expires}&sig={self.signature(f.sha256, expires)}"
        )

    # -- the request log -------------------------------------------------------------
    def record(self, entry: dict[str, Any]) -> None:
        if self.keep_log:
            self.log.append(entry)
        if self.log_file is not None:
            self.log_file.write(json.dumps(entry) + "\n")
            self.log_file.flush()

    def requests(self, origin: str | None = None) -> list[dict[str, Any]]:
        return [e for e in self.log if origin is None or e["origin"] == origin]

    def clear(self) -> None:
        self.log.clear()
        if self.log_file is not None:
            self.log_file.seek(0)
            self.log_file.truncate(0)
            self.log_file.flush()


HUB_STATE_KEY = web.AppKey("fetchshard_fake_hub_state", HubState)


def _request_key(name: str, kind: type) -> Any:
    """A RequestKey where aiohttp has them (>= 3.13), else the plain name."""
    factory = getattr(web, "RequestKey", None)
    return factory(name, kind) if factory is not None else name


#: body bytes the CDN's or resolve-cache's answer sends (up to a cut)
BODY_KEY = _request_key("fetchshard_fake_hub_body", int)
#: (time.monotonic(), time.time()) when the request arrived
ARRIVAL_KEY = _request_key("fetchshard_fake_hub_arrival", tuple)


def hub_state_of(request: web.Request) -> HubState:
    return request.app[HUB_STATE_KEY]
