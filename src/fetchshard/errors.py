"""Every error fetchshard raises, and every kind of failure a URL can end with.

Exceptions (things that stop a command) form one tree::

    FetchshardError                 base; .exit_code says what the CLI returns
    ├── UsageError                  exit 2: the user asked for something impossible
    │   ├── ConfigError             bad key, type or value in YAML / env / flags
    │   ├── InputError              missing or unreadable input file, unknown format
    │   ├── RankError               inconsistent rank / world size (e.g. sbatch without srun)
    │   ├── RunMismatchError        output folder belongs to a different run
    │   ├── PlanError               the plan step's files are incomplete or of another run
    │   ├── RankLockedError         another process holds this rank of this output folder
    │   ├── GenerationError         a generation cannot begin yet, or the rank's has ended
    │   ├── RunFolderError          not a fetchshard output folder, or a document unreadable
    │   │   └── NewerFormatError    a document written by a newer fetchshard than this one
    │   ├── HubError                the Hugging Face Hub refused or failed an hf:// listing
    │   ├── BucketError             an s3:// output cannot be used: no boto3, the endpoint
    │   │                           unreachable, no such bucket, credentials missing or refused
    │   └── WriterConflictError     a key to be created once was created by another writer
    └── RunError                    exit 1: something failed while working
        ├── RankFailedError         a local rank process exited non-zero
        └── StorageError            the output folder's disk refused a write (full, read-only)
            └── ObjectStoreError    a bucket failed a request, after the SDK's own retries

A failed URL is never an exception that escapes a rank: it becomes a row whose
``error_kind`` is one of :class:`ErrorKind`.
"""

from __future__ import annotations

import enum
import errno

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
# Like timeout(1) and SLURM's requeue conventions: a distinct code that means
# "stopped early by a signal, state is consistent, rerun the same command to resume".
EXIT_INTERRUPTED = 75


class FetchshardError(Exception):
    """Base of every error fetchshard raises on purpose."""

    exit_code = EXIT_FAILURE


class UsageError(FetchshardError):
    """The command cannot start as asked; nothing was done."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration key, type or value is wrong."""


class InputError(UsageError):
    """An input file is missing, unreadable or of an unknown format."""


class RankError(UsageError):
    """Rank and world size cannot be determined consistently."""


class RunMismatchError(UsageError):
    """The output folder holds a different run (other inputs, world size or partition)."""


class PlanError(UsageError):
    """The output folder's plan (``fetchshard plan``) is incomplete or was made for another
    input or world size."""


class RankLockedError(UsageError):
    """Another process is running this rank of this output folder."""


class GenerationError(UsageError):
    """A rank of an older generation started after a newer one began, or a new generation
    cannot begin while a rank of the current one runs."""


class RunFolderError(UsageError):
    """A folder is not a fetchshard output folder, or one of its documents is unreadable."""


class NewerFormatError(RunFolderError):
    """A run-folder document was written by a newer fetchshard (a format this one predates)."""


class HubError(UsageError):
    """Listing an ``hf://`` input failed: gated, private or unknown repo, unknown revision or
    path, a refused token, the Hub unreachable or still failing after retries.

    The message is one line naming the URI and what to do; it never holds the token.
    """


class BucketError(UsageError):
    """An ``s3://`` location cannot be used: boto3 is not installed, the endpoint does not
    answer, the bucket does not exist, or the credentials are missing or refused.

    The message names the bucket and the endpoint, never a credential.
    """


class WriterConflictError(UsageError):
    """A key that one writer creates once (``If-None-Match: *``) was created by another
    process: two writers of the same output. What it wrote was not replaced."""


class RunError(FetchshardError):
    """Something failed while the run was working."""


class RankFailedError(RunError):
    """One or more local rank processes failed."""


class StorageError(RunError):
    """Writing a body's file failed (disk full, read-only, no permission): the rank stops.

    Never a failed row: the next URL would fail the same way. What was committed stays
    committed; a rerun once the disk is fixed goes on from there.
    """


class ObjectStoreError(StorageError):
    """A bucket failed a request (a 5xx, a timeout) after the SDK's own retries, or refused an
    object it cannot take (above one PUT's 5 GiB): the command stops; what was uploaded stays."""


_FULL = (errno.ENOSPC, errno.EDQUOT)


def storage_error(exc: BaseException, what: str) -> StorageError | None:
    """The :class:`StorageError` for a failed write of ``what`` (an OSError, or SQLite's
    "database or disk is full"), or None when ``exc`` is not the disk's."""
    if isinstance(exc, StorageError):
        return exc
    if (isinstance(exc, OSError) and exc.errno in _FULL) or "disk is full" in str(exc):
        return StorageError(f"disk full writing {what}: free space and rerun")
    if isinstance(exc, OSError) and exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StorageError(f"cannot write {what}: {exc.strerror}")
    return None


class ErrorKind(str, enum.Enum):
    """Why a URL failed. ``transient`` kinds are retried, the others fail at once.

    The translation from aiohttp/asyncio/ssl/socket exceptions to these kinds lives in one
    place: :func:`fetchshard.http.classify.classify`.
    """

    BAD_URL = "bad_url"  # not an http(s) URL; never sent
    BAD_PATH = "bad_path"  # the input's file path (output.path_column) is not a safe one
    BLOCKED = "blocked"  # host on the block list, or a private address when those are blocked
    ROBOTS_TXT = "robots_txt"  # disallowed by the host's robots.txt
    DNS = "dns"  # the host name did not resolve
    CONNECT = "connect"  # refused, reset or timed out while connecting
    TLS = "tls"  # certificate or handshake failure
    TIMEOUT = "timeout"  # the whole request took longer than fetch.total_timeout
    READ_TIMEOUT = "read_timeout"  # no byte for fetch.read_timeout seconds
    TOO_SLOW = "too_slow"  # below fetch.min_speed bytes/s over fetch.min_speed_window
    TOO_LARGE = "too_large"  # body above fetch.max_body_bytes (cut, not stored)
    REDIRECT_LOOP = "redirect_loop"  # more than fetch.max_redirects redirects
    BAD_REDIRECT = "bad_redirect"  # redirect without a usable http(s) Location
    HTTP_3XX = "http_3xx"
    HTTP_4XX = "http_4xx"
    HTTP_404 = "http_404"
    HTTP_410 = "http_410"
    HTTP_429 = "http_429"
    HTTP_5XX = "http_5xx"
    # 401/403 from a redirect's target on another origin: a signed link that expired (the
    # Hub's CDN); retried from the input URL, which gives a fresh one.
    EXPIRED_REDIRECT = "expired_redirect"
    BAD_CONTENT = "bad_content"  # broken response: wrong length, reset mid-body, bad encoding
    HASH_MISMATCH = "hash_mismatch"  # the body's hash is not the input's expected one
    CHECKSUM_MISMATCH = "checksum_mismatch"  # size or checksum not the input's (retried)
    TOO_SMALL = "too_small"  # below fetch.min_body_bytes: an error page, most likely (retried)
    DECODE = "decode"  # the images stage could not read the image (truncated, not an image)
    FILTERED = "filtered"  # the images stage's size, aspect or pixel-count limits refused it
    OPT_OUT = "opt_out"  # X-Robots-Tag opt-out (noai, ...); the body is not kept
    HOST_UNREACHABLE = "host_unreachable"  # host failed its cool-downs; not tried any more
    RATE_LIMITED = "rate_limited"  # host answered only 429/503 through its cool-downs
    INTERRUPTED = "interrupted"  # the rank stopped while the request ran (recorded, retried)
    INTERNAL = "internal"  # a bug in fetchshard; please report it

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT

    @property
    def host_failure(self) -> bool:
        """Failures that say the host itself is unreachable (they feed host health)."""
        return self in _HOST_FAILURES


_TRANSIENT = frozenset(
    {
        ErrorKind.DNS,
        ErrorKind.CONNECT,
        ErrorKind.TIMEOUT,
        ErrorKind.READ_TIMEOUT,
        ErrorKind.TOO_SLOW,
        ErrorKind.HTTP_429,
        ErrorKind.HTTP_5XX,
        ErrorKind.EXPIRED_REDIRECT,
        ErrorKind.BAD_CONTENT,
        ErrorKind.CHECKSUM_MISMATCH,
        ErrorKind.TOO_SMALL,
        ErrorKind.INTERRUPTED,
        ErrorKind.RATE_LIMITED,
    }
)
_HOST_FAILURES = frozenset({ErrorKind.DNS, ErrorKind.CONNECT})

# What ``--retry-failed`` accepts besides kind names.
TRANSIENT_KINDS = "transient"
ALL_KINDS = "all"
# Kinds that are never a committed row (a stopped request is retried, not recorded).
_NOT_TERMINAL = frozenset({ErrorKind.INTERRUPTED})
KIND_WORDS = frozenset(
    {TRANSIENT_KINDS, ALL_KINDS, *(k.value for k in ErrorKind if k not in _NOT_TERMINAL)}
)


def select_kinds(words: tuple[str, ...]) -> frozenset[str] | None:
    """The error kinds ``words`` name (``transient``: every transient kind), or None for
    ``all``; an unknown word is a :class:`ConfigError`."""
    unknown = [w for w in words if w not in KIND_WORDS]
    if unknown:
        raise ConfigError(
            f"run.retry_failed: unknown error kind {unknown[0]!r} "
            f"(kinds: {', '.join(sorted(KIND_WORDS))})"
        )
    if ALL_KINDS in words:
        return None
    kinds = {w for w in words if w != TRANSIENT_KINDS}
    if TRANSIENT_KINDS in words:
        kinds |= {k.value for k in _TRANSIENT if k not in _NOT_TERMINAL}
    return frozenset(kinds)
