"""An hf:// input made an ordinary one: the repo resolved and listed once for the whole run,
into the run folder, and the run configured as a mirror of it.

Whichever process gets there first (the ``--ranks`` launcher, or one of the ``srun`` tasks,
under the listing's lock) resolves the revision to a commit and lists the tree at that
commit; it writes the listing (Parquet: ``url`` pinned to the commit, ``path``, ``size``,
``checksum`` as ``sha256:<hex>`` or ``git-sha1:<hex>``, ``commit``), then its
:class:`HubListing` document, last. Every rank then plans from the listing as from any
Parquet input, so 400 ranks cost one listing, and all see one commit. A rerun, or a rank
started later, reads the document and asks the Hub nothing; the listing's file name holds
the commit, so the run's fingerprint names it.

The run becomes a mirror: files at their repo paths in the output folder, the run folder
inside it (``.fetchshard/``), each file's size and checksum checked, the token only to the
endpoint's origin (a ``fetch.hosts`` entry's secret header), the endpoint's pace within the
Hub's resolver quota.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from yarl import URL

from fetchshard.config import Config, HostOverride
from fetchshard.errors import ConfigError
from fetchshard.hub.auth import HubToken, hub_endpoint, token_source
from fetchshard.hub.listing import RepoListing, list_repo
from fetchshard.hub.uri import HfUri, is_hf_uri, parse_hf_uri, resolve_url
from fetchshard.runfolder.documents import HubListing
from fetchshard.runfolder.layout import RunPaths, mirror_state, tmp_of
from fetchshard.runfolder.storage import LOCAL

log = logging.getLogger("fetchshard")

# Resolve requests per second over all ranks: the Hub's resolver quota per 5-minute window
# (3,000 anonymous, 5,000 for a free account; docs, September 2025) with a 10 % margin.
ANONYMOUS_RATE = 9.0
TOKEN_RATE = 15.0
LISTING_SCHEMA = pa.schema(
    [
        pa.field("url", pa.string()),
        pa.field("path", pa.string()),
        pa.field("size", pa.int64()),
        pa.field("checksum", pa.string()),
        pa.field("commit", pa.string()),
    ]
)
_POLL = 0.25


def hub_uri(config: Config) -> HfUri | None:
    """The run's hf:// input, or None; checks that it goes alone."""
    paths = config.input.paths
    hubs = [p for p in paths if is_hf_uri(p)]
    if not hubs:
        if config.input.include or config.input.exclude:
            raise ConfigError("input.include / input.exclude: they choose an hf:// input's files")
        return None
    if len(paths) > 1:
        raise ConfigError(
            f"an hf:// input goes alone: one repo per run, no other input ({len(paths)} given)"
        )
    return parse_hf_uri(hubs[0])


def prepare(
    config: Config,
    environ: Mapping[str, str] | None = None,
    *,
    lister: Callable[..., RepoListing] = list_repo,
) -> Config:
    """``config`` itself without an hf:// input; else the run over its listing (made now,
    once for the run, or read back) as a mirror in ``output.dir``."""
    uri = hub_uri(config)
    if uri is None:
        return config
    if config.output.bucket is not None:
        raise ConfigError(
            "an hf:// input is mirrored into a folder; into a bucket (-o s3://) is not built "
            "yet: mirror to a folder, then upload it"
        )
    env = os.environ if environ is None else environ
    endpoint = (config.hub.endpoint or hub_endpoint(env)).rstrip("/")
    found = token_source(env, explicit=config.hub.token, flag="--token (hub.token)")
    token = found.value if found is not None else None
    paths = RunPaths(mirror_state(config.output.root))
    key = listing_key(uri, endpoint, config.input.include, config.input.exclude)
    with _locked(paths.hub_lock(key), uri):
        listing = HubListing.read(paths.hub_document(key))
        if listing is None:
            listing = _list(config, uri, endpoint, found, key, paths, lister)
    listing_file = paths.hub_listing(key, listing.commit)
    return mirror_config(config, listing_file, paths.root, endpoint, token)


def listing_key(
    uri: HfUri, endpoint: str, include: tuple[str, ...], exclude: tuple[str, ...]
) -> str:
    """The name of an input's listing in the run folder: what was asked, not what it gave."""
    asked = "\0".join([endpoint, uri.to_uri(), *include, "\0", *exclude])
    return "listing-" + xxhash.xxh3_64_hexdigest(asked.encode())


@contextlib.contextmanager
def _locked(path: Path, uri: HfUri) -> Iterator[None]:
    """The listing's lock: one process lists, the others wait for its document."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        told = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if not told:
                    log.info("%s: another process is listing it; waiting", uri)
                    told = True
                time.sleep(_POLL)
        yield
    finally:
        os.close(fd)


def _list(
    config: Config,
    uri: HfUri,
    endpoint: str,
    token: HubToken | None,
    key: str,
    paths: RunPaths,
    lister: Callable[..., RepoListing],
) -> HubListing:
    from fetchshard.http.client import user_agent

    started = time.monotonic()
    fetch = config.fetch
    verify: bool | str = fetch.ca_bundle if fetch.ca_bundle else fetch.verify_tls
    listing = lister(
        uri,
        endpoint=endpoint,
        token=token,
        include=config.input.include,
        exclude=config.input.exclude,
        verify=verify,
        timeout=fetch.total_timeout,
        user_agent=user_agent(fetch.contact),
    )
    files = listing.files
    table = pa.table(
        {
            "url": [
                resolve_url(endpoint, uri.repo_type, uri.repo_id, listing.commit, f.path)
                for f in files
            ],
            "path": [f.path for f in files],
            "size": [f.size for f in files],
            "checksum": [
                f"sha256:{f.sha256}" if f.sha256 else f"git-sha1:{f.blob_id}" for f in files
            ],
            "commit": [listing.commit] * len(files),
        },
        schema=LISTING_SCHEMA,
    )
    final = paths.hub_listing(key, listing.commit)
    tmp = tmp_of(final)
    pq.write_table(table, tmp, compression="zstd")
    LOCAL.publish(tmp, final)
    doc = HubListing(
        uri=uri.to_uri(),
        endpoint=endpoint,
        commit=listing.commit,
        include=list(config.input.include),
        exclude=list(config.input.exclude),
        files=len(files),
        bytes=sum(f.size for f in files),
        listed_at=time.time(),
    )
    doc.write(paths.hub_document(key), durable=True)  # last: the listing is whole
    log.info(
        "%s: commit %s, %d files (%d bytes) listed in %.1fs",
        uri,
        listing.commit,
        doc.files,
        doc.bytes,
        time.monotonic() - started,
    )
    return doc


def endpoint_host(endpoint: str) -> str:
    """The ``fetch.hosts`` pattern of the endpoint: its host, and its port when not the
    scheme's default (the token must not reach another port of the same host: a CDN)."""
    url = URL(endpoint)
    host = (url.host_subcomponent or "").lower()
    default = {"http": 80, "https": 443}.get(url.scheme)
    return host if url.explicit_port in (None, default) else f"{host}:{url.port}"


def mirror_config(
    config: Config,
    listing_file: Path,
    state: Path,
    endpoint: str,
    token: str | None,
) -> Config:
    """The run over ``listing_file``: a mirror whose run folder is ``state``."""
    inp = dataclasses.replace(
        config.input,
        paths=(str(listing_file),),
        format="parquet",
        url_column="url",
        id_column=None,
        extra_columns=None,  # path, size, checksum, commit: into the rows too
        size_column="size",
        checksum_column="checksum",
        checksum_algorithm="auto",
        hash_column=None,
    )
    output = dataclasses.replace(
        config.output, dir=str(state), mode="files", path_column="path", body_file_above=0
    )
    host = endpoint_host(endpoint)
    hosts = dict(config.fetch.hosts)
    own = hosts.get(host, HostOverride())
    rate = config.hub.rate or own.rate or (TOKEN_RATE if token else ANONYMOUS_RATE)
    headers = dict(own.headers)
    if token and not any(name.lower() == "authorization" for name in headers):
        headers["Authorization"] = f"Bearer {token}"
    hosts[host] = dataclasses.replace(own, rate=rate, headers=headers)
    fetch = dataclasses.replace(config.fetch, hosts=hosts)
    return dataclasses.replace(config, input=inp, output=output, fetch=fetch)
