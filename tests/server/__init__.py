"""Loopback HTTP test server for fetchshard's tests and benchmarks.

Two ways to use it:

* In-process, inside the test's own event loop::

      async with running_server(hosts=2) as srv:
          url = srv.url("/ok/a", host=1)
          ...
          assert srv.requests()[0]["path"] == "/ok/a"

* As a separate process (so that the code under test can own its event loop, or run
  as CLI subprocesses)::

      with ServerProcess(hosts=4) as srv:
          subprocess.run(["fetchshard", ..., srv.url("/ok/x", host=3)])
          print(srv.requests())

  or from a shell, with the tests folder on the path:
  ``PYTHONPATH=tests python -m server --hosts 4 --log requests.jsonl``.  The first
  stdout line is ``{"ports": [...], "base_urls": [...]}``; every request is appended
  as one JSON line to the ``--log`` file (flushed per line).

Every listener is a distinct "host" (a distinct ``ip:port`` origin), which lets tests
exercise per-host limits.  ``address_mode="ports"`` opens N listeners on 127.0.0.1
with ephemeral ports; ``address_mode="addresses"`` opens N listeners on
127.0.0.2 .. 127.0.0.(N+1) sharing one port (Linux routes all of 127/8 to loopback)
and falls back to "ports" where those addresses cannot be bound.

Routes (all GET unless noted):

=====================================  ==============================================
``/ok/{name}?size=N``                  200 ``ok {name}`` padded with ``.`` to N bytes
``/image/{n}?w=W&h=H``                 200 small deterministic JPEG, colour varies by n
``/status/{code}``                     that status, short body
``/flaky/{key}/{fails}?code=503``      ``code`` for the first ``fails`` hits per key,
                                       then 200 ``ok``
``/retry-after/{key}/{seconds}``       first hit per key: 429 + ``Retry-After``;
                                       then 200 ``ok`` (``?code=`` overrides 429)
``/slow/{seconds}``                    sleeps, then 200 ``slow``
``/paced/{seconds}``                   sleeps ``seconds`` x ``ServerState.pace``, then
                                       200 ``paced``
``/pace/{factor}`` (PUT)               sets ``ServerState.pace`` (1 at start; not logged):
                                       0 makes every later ``/paced`` answer at once
``/trickle?chunks=N&delay=S``          N chunks, S seconds apart, chunked encoding
``/endless``                           a chunk every 50 ms until the client leaves
``/big/{n}``                           n bytes with Content-Length
``/big-nolength/{n}``                  n bytes, chunked, no Content-Length
``/redirect/{n}``                      302 to /redirect/{n-1}; /redirect/0 -> /ok/final
``/redirect-loop``                     302 to itself
``/reset``                             promises more bytes than it sends, then closes
``/echo-headers``                      JSON object of the request headers
``/optout/{directive}``                200 with ``X-Robots-Tag: {directive}``
                                       (URL-decoded, e.g. ``otherbot%3A%20noai``)
``/gzip-bomb/{mb}``                    200 ``Content-Encoding: gzip``: ``mb`` MiB of
                                       zeros compressed ~1000:1 (built once, cached)
``/wrong-length/{declared}/{actual}``  ``Content-Length: declared``; sends
                                       min(actual, declared) bytes; closes early if
                                       actual < declared
``/slow-first-byte/{seconds}``         alias of ``/slow``: no headers before the sleep
``/status-retry-after/{code}/{value}`` that status + ``Retry-After: {value}`` verbatim
                                       (URL-decoded; may be an HTTP-date), every time
``/redirect-to?url=U&code=302``        ``code`` with ``Location: U`` verbatim
``/robots.txt``                        ``ServerState.robots_txt`` (None -> 404)
``/private/{name}``                    200 ``secret`` (disallowed by default robots)
``/requests`` (GET / DELETE)           JSON request log / clear it (not itself logged)
=====================================  ==============================================

Raw TCP helpers: :class:`ResetServer` (accepts and immediately resets every
connection), :func:`closed_port` (a loopback port with nothing listening) and
:class:`CannedServer` (answers each request path with canned raw bytes, :class:`Canned`: a
10 MB header, a body longer than its Content-Length).

A fake Hugging Face Hub and its CDN (two origins) for the ``hf://`` input: :class:`HubRepo`
defines a repo, :func:`running_hub` / :class:`FakeHub` run it in-process, :class:`HubProcess`
(``python -m server --hub SPEC``) in a subprocess; see ``hub.py``.

Modules: ``state`` (ServerState and its app key), ``params`` (query and path
parameters), ``streaming`` (writes and sleeps that stop for a gone client or a
shutdown), ``bodies`` (deterministic bodies), ``routes_content``, ``routes_faults`` and
``routes_control`` (the handlers), ``app`` (make_app: middleware and route table),
``loopback`` (address modes), ``inprocess`` (serve, running_server), ``process``
(ServerProcess), ``raw`` (ResetServer, closed_port), ``hostile`` (CannedServer, Canned),
``cli`` and ``__main__`` (the command line); the fake Hub: ``hub_repos`` (HubRepo, Generated),
``hub_state`` (HubState, HubSwitches), ``hub_routes``, ``hub_cdn`` and ``hub`` (FakeHub,
running_hub, HubProcess).
"""

from __future__ import annotations

from .app import make_app
from .bodies import gzip_zeros, jpeg_bytes
from .cli import main
from .hostile import Canned, CannedServer
from .hub import FakeHub, HubControls, HubProcess, hub_spec, running_hub, serve_hub
from .hub_repos import (
    PARQUET_REF,
    SAMPLE_FILES,
    SAMPLE_PARQUET_FILES,
    SAMPLE_TOKEN,
    Generated,
    HubFile,
    HubRepo,
    git_blob_sha1,
    sample_repos,
)
from .hub_state import HubState, HubSwitches
from .inprocess import RunningServer, running_server, serve
from .loopback import LOOPBACK, AddressMode
from .process import ServerProcess
from .raw import ResetServer, closed_port
from .state import DEFAULT_ROBOTS_TXT, STATE_KEY, ServerState

__all__ = [
    "DEFAULT_ROBOTS_TXT",
    "LOOPBACK",
    "PARQUET_REF",
    "SAMPLE_FILES",
    "SAMPLE_PARQUET_FILES",
    "SAMPLE_TOKEN",
    "STATE_KEY",
    "AddressMode",
    "Canned",
    "CannedServer",
    "FakeHub",
    "Generated",
    "HubControls",
    "HubFile",
    "HubProcess",
    "HubRepo",
    "HubState",
    "HubSwitches",
    "ResetServer",
    "RunningServer",
    "ServerProcess",
    "ServerState",
    "closed_port",
    "git_blob_sha1",
    "gzip_zeros",
    "hub_spec",
    "jpeg_bytes",
    "main",
    "make_app",
    "running_hub",
    "running_server",
    "sample_repos",
    "serve",
    "serve_hub",
]
