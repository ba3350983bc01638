"""Run configuration: embedded defaults < YAML file < FETCHSHARD_* environment < CLI flags.

Each section is a small frozen dataclass; :func:`load_config` merges the layers and
validates every value before any work starts, raising :class:`ConfigError` with one line
that names the key.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from fetchshard.environment import NOT_OPTIONS, OPTION_PREFIX
from fetchshard.errors import ConfigError, select_kinds
from fetchshard.redact import redact_settings
from fetchshard.runfolder.objectstore import (
    MAX_PUT_BYTES,
    BucketURL,
    S3Settings,
    output_location,
)

MiB = 1024 * 1024
GiB = 1024 * MiB

# Module-level defaults: one place to read what a run does when nothing is configured.
DEFAULT_MAX_IN_FLIGHT = 512
DEFAULT_PER_HOST_CONCURRENCY = 16
DEFAULT_PER_HOST_RATE = 10.0
DEFAULT_PER_HOST_BURST = 5
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_TOTAL_TIMEOUT = 120.0
DEFAULT_MAX_BODY_BYTES = 64 * MiB
DEFAULT_MAX_REDIRECTS = 10
DEFAULT_MAX_ATTEMPTS = 3
MAX_SEGMENTS = 64  # connections for one file: more only burdens its host
# A plan rank's sort: below this its merge could not read 4 runs a MiB at a time (and a
# budget meant in MiB but written as a number of bytes is caught).
MIN_PLAN_MEMORY = 16 * MiB


@dataclass(frozen=True, kw_only=True)
class InputConfig:
    """Where the URLs come from and which columns travel with them."""

    paths: tuple[str, ...] = ()
    format: str = "auto"
    url_column: str = "url"
    id_column: str | None = None
    extra_columns: tuple[str, ...] | None = None
    # The column holding each item's expected hash (hex) of its body; a body that does not
    # match fails as hash_mismatch (an empty value is not checked). It travels as an extra.
    hash_column: str | None = None
    hash_algorithm: str = "sha256"  # or md5 (GBIF-style archives)
    # A file list's expected size (bytes) and checksum (hex) of each body: a body that does
    # not match fails as checksum_mismatch, is removed and fetched again up to
    # fetch.max_attempts (a transfer cut or corrupted on the way). Empty values are not checked.
    size_column: str | None = None
    checksum_column: str | None = None
    # or md5, sha1, git-sha1 (git's blob id), auto: each value names its own ("md5:<hex>")
    checksum_algorithm: str = "sha256"
    # An hf:// input's files to take or leave (fnmatch on the repo path, like `hf download`;
    # a pattern ending in "/" is a folder and everything in it). Empty include: every file.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_url_length: int = 4096
    # 16 Ki rows: planning 1 M rows peaked at 221 MB RSS (245 MB with 64 Ki) at the same speed
    # for small world sizes; at world size 400 (1/400 of the rows kept) 64 Ki is ~10 % faster.
    batch_rows: int = 16384


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    """The output folder and how Parquet parts are cut."""

    dir: str = "out"
    part_max_rows: int = 100_000
    part_max_bytes: int = 256 * MiB
    # Row groups are buffered in memory about three times over (filling, queued, written).
    row_group_bytes: int = 8 * MiB
    compression: str = "zstd"
    # "auto": none for parts whose bodies are mostly already compressed (images, video,
    # archives), where zstd burns CPU for nothing; ``compression`` otherwise.
    body_compression: str = "auto"
    store_body: bool = True
    # A part is committed at the latest this many seconds after its first row, so a crash
    # never costs more than this much work.
    commit_interval: float = 30.0
    # "files": every body is written to a file under files/ (named after its URL) and the
    # row holds its path; "parquet": bodies go in the parts, those above body_file_above
    # bytes (0: none) to files the same way.
    mode: str = "parquet"
    body_file_above: int = 0
    # Bodies written to files may be this large (0: no limit); fetch.max_body_bytes caps
    # only the bodies kept in memory.
    max_file_bytes: int = 0
    fsync_files: bool = True  # each file (and its folder) fsynced before its row counts
    # An input column holding each file's path under the files folder (checked: relative,
    # no ".."), instead of a name made from its URL. An hf:// input sets it: its repo paths.
    path_column: str | None = None
    # With ``dir`` an s3:// URL: the folder of what must be a POSIX file (the live ledger,
    # locks, logs, partial transfers, staged parts); None: .fetchshard-state/BUCKET/PREFIX
    # in the working directory. Under SLURM, a shared filesystem.
    state_dir: str | None = None
    # The S3-compatible store's http(s)://HOST:PORT and the bucket's region (None:
    # FETCHSHARD_S3_ENDPOINT / FETCHSHARD_S3_REGION, else AWS S3 and the SDK's region).
    s3_endpoint: str | None = None
    s3_region: str | None = None

    @functools.cached_property
    def bucket(self) -> BucketURL | None:
        """Where the run's data goes when ``dir`` is an s3:// URL, else None."""
        return output_location(self.dir, what="output.dir")

    @property
    def file_limit(self) -> int:
        """The largest body written to a file (0: no limit): ``max_file_bytes``, and into a
        bucket at most one PUT's 5 GiB."""
        if self.bucket is None:
            return self.max_file_bytes
        return min(self.max_file_bytes or MAX_PUT_BYTES, MAX_PUT_BYTES)

    @property
    def root(self) -> Path:
        """The run folder on this machine: ``dir``, or the state folder of a run in a bucket."""
        bucket = self.bucket
        if bucket is None:
            return Path(self.dir)
        if self.state_dir:
            return Path(self.state_dir)
        return Path(DEFAULT_STATE_DIR, bucket.bucket, *bucket.prefix.split("/"))


# The state folder of a run in a bucket when output.state_dir is not set.
DEFAULT_STATE_DIR = ".fetchshard-state"


@dataclass(frozen=True, kw_only=True)
class PartitionConfig:
    """How URLs are spread over ranks (planning/placement.py): ``auto``, each host over as many
    ranks as its item count needs (counted while planning), or a fixed number of hash buckets."""

    spread: int | str = "auto"


@dataclass(frozen=True, kw_only=True)
class HostOverride:
    """Settings for one host (``fetch.hosts: {"img.example.org": {rate: 2}}``)."""

    rate: float | None = None  # requests per second over all ranks
    burst: int | None = None
    concurrency: int | None = None  # per rank
    headers: dict[str, str] = field(default_factory=dict)


DEFAULT_OPT_OUT = ("noai", "noimageai", "noindex", "noimageindex")


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    """HTTP behaviour. Rates are requests per second for a host over all ranks together."""

    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    per_host_concurrency: int = DEFAULT_PER_HOST_CONCURRENCY
    per_host_rate: float = DEFAULT_PER_HOST_RATE
    per_host_burst: int = DEFAULT_PER_HOST_BURST
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    total_timeout: float = DEFAULT_TOTAL_TIMEOUT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    retry_after_max: float = 300.0  # a longer Retry-After is cut to this (it bounds the tail)
    # Transient failures left after max_attempts get one more chance at the end of the slice.
    final_pass_attempts: int = 1
    final_pass_delay: float = 5.0
    final_pass_timeout_factor: float = 2.0
    # A transfer slower than min_speed bytes/s over min_speed_window seconds is too_slow.
    min_speed: int = 1024
    # A body smaller than this (a "suspiciously small" file: an error page) is too_small,
    # retried like a transient failure; 0: no check.
    min_body_bytes: int = 0
    min_speed_window: float = 30.0
    # One large file over several connections, like aria2c -x (output/segments.py): with
    # bodies to files, a file whose size the input gives (input.size_column; an hf:// listing)
    # and is at least segment_above bytes is fetched as byte ranges, `segments` at a time,
    # into one .part, each range resumed on its own after a cut or a crash. A file of unknown
    # size is fetched with one GET, as ever: no request is made to learn a size. The ranges
    # are extra connections to the file's host beyond per_host_concurrency (the file holds
    # one slot), which is what this setting asks for. 1: off.
    segments: int = 1
    segment_above: int = 256 * MiB
    # No range is larger than this: a CDN's limit on one GET (CloudFront's 50 GB). A larger
    # file is cut into ranges even with segments 1 (then fetched one after another).
    segment_max_bytes: int = 50 * 1000**3
    # 429/503 halve a host's rate on this rank, down to this floor (req/s over all ranks).
    per_host_min_rate: float = 0.1
    # Host health: this many connect/DNS failures in a row park a host for host_cooldown s;
    # after host_max_cooldowns parkings its remaining items fail as host_unreachable.
    host_max_failures: int = 5
    host_cooldown: float = 30.0
    host_max_cooldowns: int = 3
    # A host that answers only 429/503, with no success, for this many seconds is cooled down
    # the same way; after host_max_cooldowns its remaining items fail as rate_limited.
    host_throttle_window: float = 120.0
    contact: str | None = None
    # Sent with every request; those that are secrets (http/credentials.py) only to the
    # input URL's origin. Never written to any file.
    headers: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, HostOverride] = field(default_factory=dict)
    # Header names that are secrets besides Authorization, Proxy-Authorization, Cookie and
    # names holding auth, token, key, secret, session, password or signature.
    secret_headers: tuple[str, ...] = ()
    block_hosts: tuple[str, ...] = ()  # "example.org" or "*.example.org"
    block_private_addresses: bool = False  # refuse loopback/private/link-local/metadata IPs
    # Networks (CIDR) exempt from block_private_addresses: an internal mirror, say.
    allow_addresses: tuple[str, ...] = ()
    resolve: dict[str, str] = field(default_factory=dict)  # host -> IP, like curl --resolve
    opt_out_directives: tuple[str, ...] = DEFAULT_OPT_OUT  # X-Robots-Tag values honoured
    robots_txt: bool = False
    verify_tls: bool = True
    ca_bundle: str | None = None
    trust_env: bool = True


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """How this process runs: ranks, restart, progress."""

    rank: int | None = None
    world_size: int | None = None
    ranks: int = 1
    restart: bool = False
    progress_interval: float = 5.0
    log_level: str = "info"
    # On SIGTERM/SIGINT/SIGUSR1: how long in-flight fetches may finish before they are dropped
    # (kept well under SLURM's default KillWait of 30 s).
    grace_period: float = 10.0
    # A second process for a rank that is running waits this long for it to end (a requeued
    # step may start while the old one flushes), then refuses.
    lock_wait: float = 60.0
    # Error kinds (or "transient", "all") whose committed failures this run fetches again;
    # empty: none. The command line's --retry-failed sets it for one invocation.
    retry_failed: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ImagesConfig:
    """The images stage (images/): off, verify each image, or resize and re-encode it."""

    mode: str = "off"  # off | verify | resize
    resize_mode: str = "border"  # no | keep_ratio | keep_ratio_largest | center_crop | border
    image_size: int = 256
    resize_only_if_bigger: bool = False  # never scale up
    encode_format: str = "jpeg"  # jpeg | png | webp
    encode_quality: int = 95  # jpeg and webp, 1..100
    skip_reencode: bool = False  # keep the original bytes when nothing would change
    downscale_interpolation: str = "area"
    upscale_interpolation: str = "bicubic"
    background: str = "white"  # behind transparency and around "border": a CSS colour
    max_pixels: int = 100_000_000  # larger images are not decoded (decompression bombs)
    min_image_size: int = 0  # smaller side below this: filtered
    max_aspect_ratio: float | None = None  # larger side / smaller side above this: filtered
    hash: str = "sha256"  # or md5: the hash columns of the original and stored bytes
    workers: int = 0  # image workers; 0: the rank's CPUs
    pool: str = "threads"  # or processes: a crashing decoder cannot take the rank down
    queue_per_worker: int = 4  # images waiting per worker before fetches wait


@dataclass(frozen=True, kw_only=True)
class HubConfig:
    """An hf:// input: which Hugging Face Hub, with which token, how fast."""

    endpoint: str | None = None  # None: HF_ENDPOINT, else https://huggingface.co
    # None: HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the token file (HF_TOKEN_PATH, HF_HOME).
    # Sent only to the endpoint's origin, never written anywhere.
    token: str | None = None
    # Resolve requests per second over all ranks. None: the Hub's resolver quota per 5
    # minutes with a margin: 3,000 anonymous (9/s), 5,000 for a free account (15/s).
    rate: float | None = None


@dataclass(frozen=True, kw_only=True)
class PlanConfig:
    """The plan step (``fetchshard plan``): what one plan rank may hold."""

    # Bytes a plan rank's sort of its slice may take: it holds rows up to a third of it
    # (Arrow's count; the heap they leave and their sorted copy take the rest), a larger slice
    # is sorted in runs spilled to the plan folder and merged. The interpreter and the input
    # being read come on top (~250 MB): 1 GiB peaked at 1,115 MB RSS on a 25 M-row slice, so
    # the default keeps a rank under 1 GB.
    memory: int = 768 * MiB


@dataclass(frozen=True, kw_only=True)
class Config:
    input: InputConfig = field(default_factory=InputConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    fetch: FetchConfig = field(default_factory=FetchConfig)
    run: RunConfig = field(default_factory=RunConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)


_SECTION_TYPES: dict[str, type[Any]] = {
    "input": InputConfig,
    "output": OutputConfig,
    "partition": PartitionConfig,
    "fetch": FetchConfig,
    "run": RunConfig,
    "images": ImagesConfig,
    "hub": HubConfig,
    "plan": PlanConfig,
}

# Options holding a path: in a config file, relative to the file's folder (rebase_paths);
# from the environment or the command line, relative to the working directory.
PATH_OPTIONS = frozenset({"input.paths", "output.dir", "output.state_dir", "fetch.ca_bundle"})

_CHOICES: dict[str, tuple[str, ...]] = {
    "input.format": ("auto", "txt", "csv", "tsv", "jsonl", "parquet"),
    "input.hash_algorithm": ("sha256", "md5"),
    "input.checksum_algorithm": ("sha256", "md5", "sha1", "git-sha1", "auto"),
    "output.mode": ("parquet", "files"),
    "output.compression": ("zstd", "snappy", "gzip", "lz4", "none"),
    "output.body_compression": ("auto", "zstd", "snappy", "gzip", "lz4", "none"),
    "run.log_level": ("debug", "info", "warning", "error"),
    "images.mode": ("off", "verify", "resize"),
    "images.resize_mode": ("no", "keep_ratio", "keep_ratio_largest", "center_crop", "border"),
    "images.encode_format": ("jpeg", "png", "webp"),
    "images.downscale_interpolation": ("area", "lanczos", "bicubic", "bilinear", "nearest"),
    "images.upscale_interpolation": ("lanczos", "bicubic", "bilinear", "nearest"),
    "images.hash": ("sha256", "md5"),
    "images.pool": ("threads", "processes"),
}
_OFF_WORDS = frozenset({"images.mode"})  # choices that include "off"
_POSITIVE = {
    "input.max_url_length",
    "input.batch_rows",
    "output.part_max_rows",
    "output.part_max_bytes",
    "output.row_group_bytes",
    "output.commit_interval",
    "partition.spread",
    "fetch.max_in_flight",
    "fetch.per_host_concurrency",
    "fetch.per_host_rate",
    "fetch.per_host_burst",
    "fetch.connect_timeout",
    "fetch.read_timeout",
    "fetch.total_timeout",
    "fetch.max_body_bytes",
    "fetch.max_attempts",
    "fetch.final_pass_timeout_factor",
    "fetch.min_speed_window",
    "fetch.per_host_min_rate",
    "fetch.host_max_failures",
    "fetch.host_cooldown",
    "fetch.host_throttle_window",
    "fetch.retry_base_delay",
    "fetch.retry_after_max",
    "fetch.retry_max_delay",
    "fetch.segments",
    "fetch.segment_above",
    "fetch.segment_max_bytes",
    "run.world_size",
    "run.ranks",
    "run.progress_interval",
    "images.image_size",
    "images.encode_quality",
    "images.max_pixels",
    "images.max_aspect_ratio",
    "images.queue_per_worker",
    "hub.rate",
    "plan.memory",
}
_NON_NEGATIVE = {
    "fetch.max_redirects",
    "fetch.final_pass_attempts",
    "fetch.final_pass_delay",
    "fetch.min_speed",
    "fetch.min_body_bytes",
    "output.body_file_above",
    "output.max_file_bytes",
    "fetch.host_max_cooldowns",
    "run.rank",
    "run.grace_period",
    "run.lock_wait",
    "images.min_image_size",
    "images.workers",
}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "list of " + _type_name(typing.get_args(tp)[0])
    if origin is dict:
        return "mapping"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the field's shape."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        (item_tp, _) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return tuple(_coerce(key, v, item_tp) for v in value)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        item_tp = typing.get_args(tp)[1]
        if dataclasses.is_dataclass(item_tp):
            return {str(k): _coerce_section(f"{key}.{k}", v, item_tp) for k, v in value.items()}
        out: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str | int | float):
                shown = type(v).__name__  # not the value: it may be a secret (a header's)
                raise ConfigError(f"{key}: expected a mapping of strings, got {k!r}: a {shown}")
            out[k] = str(v)
        return out
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{key}: expected a finite number, got {value!r}")
            return float(value)
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover


def _coerce_section(key: str, value: Any, cls: Any) -> Any:
    """A nested mapping (like one host's overrides) checked into its dataclass."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, item in value.items():
        if name not in hints:
            raise ConfigError(f"unknown key {key}.{name} (known: {', '.join(sorted(hints))})")
        value = kwargs[name] = _coerce(f"{key}.{name}", item, hints[name])
        if isinstance(value, int | float) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"{key}.{name}: must be greater than 0, got {item!r}")
    return cls(**kwargs)


def _check_value(key: str, value: Any) -> None:
    if key == "partition.spread" and isinstance(value, str):
        if value != "auto":
            raise ConfigError(f"{key}: must be auto or a number of ranks, got {value!r}")
        return
    if key in _CHOICES and value not in _CHOICES[key]:
        raise ConfigError(f"{key}: must be one of {', '.join(_CHOICES[key])}, got {value!r}")
    if value is None or isinstance(value, bool):
        return
    if key in _POSITIVE and value <= 0:
        raise ConfigError(f"{key}: must be greater than 0, got {value!r}")
    if key in _NON_NEGATIVE and value < 0:
        raise ConfigError(f"{key}: must be 0 or more, got {value!r}")


def _merge(layers: list[tuple[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Merge ``{section: {key: value}}`` layers, later ones winning; check every key."""
    merged: dict[str, dict[str, Any]] = {name: {} for name in _SECTION_TYPES}
    for origin, layer in layers:
        for section, values in layer.items():
            if section not in _SECTION_TYPES:
                raise ConfigError(
                    f"unknown section {section!r} in {origin} (known: {', '.join(_SECTION_TYPES)})"
                )
            if not isinstance(values, Mapping):
                raise ConfigError(f"{section}: expected a mapping in {origin}, got {values!r}")
            known = {f.name: f for f in fields(_SECTION_TYPES[section])}
            for key, value in values.items():
                if key not in known:
                    raise ConfigError(
                        f"unknown key {section}.{key} in {origin} "
                        f"(known: {', '.join(sorted(known))})"
                    )
                merged[section][key] = value
    return merged


def _build(merged: dict[str, dict[str, Any]]) -> Config:
    sections: dict[str, Any] = {}
    for section, cls in _SECTION_TYPES.items():
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in merged[section].items():
            full = f"{section}.{key}"
            if full in _OFF_WORDS and value is False:  # YAML 1.1 reads a bare off as false
                value = "off"
            kwargs[key] = _coerce(full, value, hints[key])
            _check_value(full, kwargs[key])
        sections[section] = cls(**kwargs)
    config = Config(**sections)
    fetch = config.fetch
    if fetch.per_host_min_rate > fetch.per_host_rate:
        raise ConfigError("fetch.per_host_min_rate: must not exceed fetch.per_host_rate")
    if fetch.total_timeout < fetch.connect_timeout:
        raise ConfigError("fetch.total_timeout: must not be shorter than fetch.connect_timeout")
    _check_fetch(fetch)
    run = config.run
    select_kinds(run.retry_failed)
    if run.rank is not None and run.world_size is not None and run.rank >= run.world_size:
        raise ConfigError(f"run.rank: {run.rank} is not below run.world_size {run.world_size}")
    _check_images(config.images)
    if config.plan.memory < MIN_PLAN_MEMORY:
        raise ConfigError(
            f"plan.memory: at least {MIN_PLAN_MEMORY} (16 MiB), got {config.plan.memory}"
        )
    _check_output(config.output)
    if config.output.mode == "files" and not config.output.store_body:
        raise ConfigError(
            "output.store_body: must be true with output.mode files (files are bodies)"
        )
    if config.output.mode == "files" and config.images.mode != "off":
        raise ConfigError(
            "images.mode: the images stage needs bodies in memory, not with output.mode files"
        )
    return config


def _check_output(output: OutputConfig) -> None:
    bucket = output.bucket  # a bad s3:// URL: one line, before any work
    if bucket is None:
        if output.state_dir or output.s3_endpoint or output.s3_region:
            raise ConfigError(
                "output.state_dir, output.s3_endpoint, output.s3_region: only with an s3:// "
                "output.dir"
            )
        return
    S3Settings(endpoint=output.s3_endpoint, region=output.s3_region)  # checks both
    if output.part_max_bytes > MAX_PUT_BYTES:
        raise ConfigError("output.part_max_bytes: at most 5GiB with an s3:// output (one upload)")


_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token


def _check_fetch(fetch: FetchConfig) -> None:
    named = [("fetch.headers", fetch.headers)]
    named += [(f"fetch.hosts.{host}.headers", o.headers) for host, o in fetch.hosts.items()]
    for key, headers in named:
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ConfigError(f"{key}: {name!r} is not a header name")
            if any(c in value for c in "\r\n\0"):  # the value itself is never shown
                raise ConfigError(f"{key}.{name}: a header value must be one line")
    if fetch.segments > MAX_SEGMENTS:
        raise ConfigError(f"fetch.segments: at most {MAX_SEGMENTS}, got {fetch.segments}")
    if fetch.segment_max_bytes < MiB:  # a request per few bytes of a file: never meant
        raise ConfigError(
            f"fetch.segment_max_bytes: at least {MiB} (1 MiB), got {fetch.segment_max_bytes}"
        )
    for name in fetch.secret_headers:
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigError(f"fetch.secret_headers: {name!r} is not a header name")
    for network in fetch.allow_addresses:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(
                f"fetch.allow_addresses: {network!r} is not an address or network (CIDR)"
            ) from None


def _check_images(images: ImagesConfig) -> None:
    if images.encode_quality > 100:
        raise ConfigError(f"images.encode_quality: must be 1..100, got {images.encode_quality}")
    if images.max_aspect_ratio is not None and images.max_aspect_ratio < 1:
        raise ConfigError(
            f"images.max_aspect_ratio: must be at least 1, got {images.max_aspect_ratio:g}"
        )
    background_rgb(images.background)


def background_rgb(colour: str) -> tuple[int, int, int]:
    """``images.background`` as RGB (Pillow's colour names and #rrggbb)."""
    from PIL import ImageColor

    try:
        rgb = ImageColor.getrgb(colour)
    except ValueError:
        raise ConfigError(
            f"images.background: {colour!r} is not a colour (a name like white or #rrggbb)"
        ) from None
    return rgb[0], rgb[1], rgb[2]


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a config file; a missing or malformed file is a ConfigError."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}{where}: {problem}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def env_layer(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """``FETCHSHARD_FETCH_PER_HOST_RATE=5`` -> ``{"fetch": {"per_host_rate": 5}}``."""
    layer: dict[str, dict[str, Any]] = {}
    for name, raw in environ.items():
        if not name.startswith(OPTION_PREFIX) or name in NOT_OPTIONS:
            continue
        rest = name[len(OPTION_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in _SECTION_TYPES or not key:
            raise ConfigError(
                f"unknown environment variable {name} "
                f"(expected {OPTION_PREFIX}<SECTION>_<KEY>, sections: {', '.join(_SECTION_TYPES)})"
            )
        layer.setdefault(section, {})[key] = parse_value(f"{section}.{key}", raw)
    return layer


def parse_value(dotted: str, raw: str) -> Any:
    """Parse a string for ``section.key``: kept as text where the option is text, so
    ``FETCHSHARD_OUTPUT_DIR=2024`` is the folder "2024"; YAML for every other option."""
    section, _, key = dotted.partition(".")
    cls = _SECTION_TYPES.get(section)
    if cls is not None:
        hint = typing.get_type_hints(cls).get(key)
        if hint is str or hint == (str | None):
            return raw
    return parse_scalar(raw)


def parse_scalar(raw: str) -> Any:
    """Parse a string from the environment or ``--set`` as YAML (``5`` -> 5, ``[a, b]``)."""
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def dotted_layer(pairs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"fetch.per_host_rate": 5}`` -> ``{"fetch": {"per_host_rate": 5}}``."""
    layer: dict[str, dict[str, Any]] = {}
    for dotted, value in pairs.items():
        section, sep, key = dotted.partition(".")
        if not sep or not key:
            raise ConfigError(f"option {dotted!r}: expected SECTION.KEY, like fetch.per_host_rate")
        layer.setdefault(section, {})[key] = value
    return layer


def load_config(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the validated :class:`Config` from all layers (defaults < file < env < overrides)."""
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if config_file is not None:
        data = rebase_paths(read_yaml(config_file), config_file.parent)
        layers.append((str(config_file), data))
    layers.append(("the environment", env_layer(os.environ if environ is None else environ)))
    if overrides:
        layers.append(("the command line", dotted_layer(overrides)))
    return _build(_merge(layers))


def rebase_paths(data: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A config file's mapping with the relative paths of its :data:`PATH_OPTIONS` joined
    to ``base``, the file's folder. Absolute paths, ``~`` paths, empty strings and values
    of the wrong type (left for validation to reject) are kept as they are."""
    out = dict(data)
    for dotted in PATH_OPTIONS:
        section, _, key = dotted.partition(".")
        values = out.get(section)
        if not isinstance(values, Mapping) or key not in values:
            continue
        value = values[key]
        if isinstance(value, str):
            value = _rebased(value, base)
        elif isinstance(value, list) and typing.get_origin(_hint(dotted)) is tuple:
            value = [_rebased(v, base) if isinstance(v, str) else v for v in value]
        out[section] = {**values, key: value}
    return out


def _hint(dotted: str) -> Any:
    section, _, key = dotted.partition(".")
    return typing.get_type_hints(_SECTION_TYPES[section])[key]


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")  # hf://, s3://: not a path to rebase


def _rebased(path: str, base: Path) -> str:
    if not path or path.startswith("~") or _URL.match(path) or os.path.isabs(path):
        return path
    return str(base / path)


def to_plain(config: Config) -> dict[str, Any]:
    """The config as plain data fit to write (documents, the dataset card): secrets hidden."""
    settings: dict[str, Any] = redact_settings(dataclasses.asdict(config))
    return settings
