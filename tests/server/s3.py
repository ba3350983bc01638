"""A real S3 API on loopback for the object-store tests: moto's server, in a thread.

    with MotoS3() as s3:               # 127.0.0.1, a free port
        os.environ.update(s3.env(tmp))  # the SDK chain: fake keys, nothing beyond loopback
        s3.client().create_bucket(Bucket="bkt")
        s3.reset()                      # POST /moto-api/reset: every bucket gone

moto answers as S3 does for what fetchshard uses (PutObject with ``If-None-Match: *``, user
metadata, listings, multipart uploads) but checks no signature, so a credential test needs
no real key: :data:`FAKE_SECRET` is a string found nowhere else, which a test can look for in
everything a command wrote. ``../shared/notes/object-store.md`` lists moto's gaps.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from .loopback import LOOPBACK

FAKE_KEY_ID = "AKIAFETCHSHARDTEST01"
FAKE_SECRET = "fsk-test-2bd83f1c6e0a4d79-secret"  # a needle: in no file, object or line
REGION = "us-east-1"
# What could take the SDKs (boto3, pyarrow's C++ one) beyond loopback or to a real account:
# a profile, a configured endpoint, a role to assume, the container credential endpoint.
_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_MAX_ATTEMPTS",
    "AWS_RETRY_MODE",
    "FETCHSHARD_S3_ENDPOINT",
    "FETCHSHARD_S3_REGION",
)


class MotoS3:
    """moto's S3 server on 127.0.0.1 (port 0: a free one), stopped on exit."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
        self._server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
        self.endpoint = ""
        self._client: Any = None

    def __enter__(self) -> MotoS3:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.stop()

    def reset(self) -> None:
        """Every bucket, object and upload gone."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=10) as answer:
            answer.read()

    def env(self, home: Path) -> dict[str, str | None]:
        """The environment for the SDKs (None: unset): the fake keys, no credential or
        config file (``home`` holds none), no instance-metadata probe, no proxy."""
        values: dict[str, str | None] = {name: None for name in _CLEARED}
        values.update(
            AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
            AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
            AWS_DEFAULT_REGION=REGION,
            AWS_REGION=REGION,
            AWS_CONFIG_FILE=str(home / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(home / "no-aws-credentials"),
            # Never the link-local metadata address (169.254.169.254).
            AWS_EC2_METADATA_DISABLED="true",
            # botocore >= 1.36 adds CRC checksums that S3-compatible stores may refuse.
            AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
            AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
            NO_PROXY=f"{LOOPBACK},localhost",
        )
        return values

    def client(self) -> Any:
        """A boto3 client on the server, for what a test sets up or inspects (one, kept:
        making a client takes a few tenths of a second)."""
        import boto3
        from botocore.config import Config

        if self._client is None:
            self._client = boto3.client(
                "s3",
                endpoint_url=self.endpoint,
                region_name=REGION,
                aws_access_key_id=FAKE_KEY_ID,
                aws_secret_access_key=FAKE_SECRET,
                config=Config(s3={"addressing_style": "path"}),
            )
        return self._client

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of ``bucket``, key -> bytes (small test buckets only)."""
        client = self.client()
        found: dict[str, bytes] = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", ()):
                body = client.get_object(Bucket=bucket, Key=entry["Key"])["Body"]
                found[entry["Key"]] = body.read()
        return found


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Within the block, a Python socket of this process that connects beyond 127.0.0.0/8
    raises instead (boto3, s3fs and aiohttp connect through ``socket.connect``)."""
    original = socket.socket.connect
    original_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if not (host.startswith("127.") or host in ("::1", "localhost")):
                raise OSError(f"test traffic beyond loopback: {host}")

    def connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        original(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return original_ex(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]
        socket.socket.connect_ex = original_ex  # type: ignore[method-assign]
