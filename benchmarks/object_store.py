"""The cost of writing a run to a bucket against writing it to a local folder (issue 34).

    python benchmarks/object_store.py [--urls 20000] [--repeat 3] [--part-bytes 16777216]
        [--json out.json] [--md out.md] [--work DIR] [--fetchshard-src live|REV]

Serves the JPEG corpus (benchmarks/servers.py), writes N URLs, starts moto's S3 server as a
process of its own on 127.0.0.1, and runs the same fetchshard command in alternation for
--repeat rounds: ``local`` (``-o OUT``) and ``s3`` (``-o s3://bench/run-K --state-dir STATE
--s3-endpoint http://127.0.0.1:PORT``), with small parts (``output.part_max_bytes``) so that
many parts go up. For each run: wall, URLs ok (read back from the parts: the folder's, or the
bucket's objects), CPU of fetchshard's process tree (``wait4``; moto's CPU is its own process's,
reported apart), and the staging disk: the bytes of the part files being written or waiting to
be published, sampled every 50 ms (``STATE/shards`` for s3; ``OUT/shards/**/*.tmp`` for local,
where finished parts are the output itself), against the bound PartWriter documents:
(pending commits 2 + the open part 1) x part_max_bytes + one row group.

moto keeps its objects in memory (those above ~5 MiB in temporary files, put in the work
folder here): it is a correctness tool, not a fast store, so the s3 figures are fetchshard's
cost of the protocol (PUT bodies read from disk, requests, signing), not a store's speed.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from corpus import ensure_corpus
from measure import (
    PeriodicSampler,
    _read_rss,
    machine_busy_cpu,
    result_header,
    run_measured,
    session_cpu,
)
from peers import (
    FETCHSHARD_UNLIMITED,
    Counted,
    count_fetchshard,
    count_tables,
    fetchshard_source,
    snapshot_fetchshard,
)
from run import _interrupt
from servers import start_server, stop_process
from urllist import UrlList, write_url_list

HERE = Path(__file__).resolve().parent
_T0 = time.monotonic()
MiB = 1 << 20
BUCKET = "bench"
LOOPBACK = "127.0.0.1"
VARIANTS = ("local", "s3")
# PartWriter (output/parts.py): closed parts waiting for their commit, plus the open one.
PENDING_COMMITS = 2
REGION = "us-east-1"
FAKE_KEY_ID = "AKIAFETCHSHARDBENCH1"
FAKE_SECRET = "fsk-bench-not-a-secret"
# What could take the SDK beyond loopback or to a real account (as tests/server/s3.py).
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
_PROXIES = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


def log(message: str) -> None:
    print(f"[{time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


def sdk_env(work: Path) -> dict[str, str]:
    """Our environment for fetchshard and moto: the fake keys, no profile, config file or
    metadata probe, no proxy for loopback."""
    env = {k: v for k, v in os.environ.items() if k not in _CLEARED and k not in _PROXIES}
    env.update(
        AWS_ACCESS_KEY_ID=FAKE_KEY_ID,
        AWS_SECRET_ACCESS_KEY=FAKE_SECRET,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_CONFIG_FILE=str(work / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(work / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_REQUEST_CHECKSUM_CALCULATION="when_required",
        AWS_RESPONSE_CHECKSUM_VALIDATION="when_required",
        NO_PROXY="127.0.0.0/8,localhost",
        no_proxy="127.0.0.0/8,localhost",
    )
    return env


# --- moto -------------------------------------------------------------------------------


class Moto:
    """``python -m moto.server`` on 127.0.0.1 in a session of its own (its CPU apart from
    fetchshard's), stopped by its PID. Objects above ~5 MiB go to temporary files in
    ``tmp`` (moto's SpooledTemporaryFile), removed with it."""

    def __init__(self, work: Path, env: dict[str, str]) -> None:
        self.tmp = work / "moto-tmp"
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        probe = socket.socket()
        probe.bind((LOOPBACK, 0))
        self.port = int(probe.getsockname()[1])
        probe.close()
        self.endpoint = f"http://{LOOPBACK}:{self.port}"
        self.log_path = work / "moto.log"
        self._env = {**env, "TMPDIR": str(self.tmp)}
        self._client: Any = None
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", LOOPBACK, "-p", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env,
                start_new_session=True,
            )
        self._wait_ready()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with self._opener.open(f"{self.endpoint}/moto-api/", timeout=5) as answer:
                    answer.read()
                return
            except Exception as exc:  # starting: retry until the deadline
                last = f"{type(exc).__name__}: {exc}"
                time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"moto not answering on {self.endpoint} ({last}); log:\n{tail}")

    def reset(self) -> None:
        """Every bucket and object gone (POST /moto-api/reset), then the bucket again."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        with self._opener.open(request, timeout=60) as answer:
            answer.read()
        self.client().create_bucket(Bucket=BUCKET)

    def client(self) -> Any:
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

    def objects(self, prefix: str) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for page in (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        ):
            found.extend((o["Key"], int(o["Size"])) for o in page.get("Contents", ()))
        return found

    def get(self, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=BUCKET, Key=key)["Body"].read())

    def rss(self) -> int:
        return _read_rss(str(self.proc.pid))

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)
        shutil.rmtree(self.tmp, ignore_errors=True)


# --- the staging disk -------------------------------------------------------------------


def folder_bytes(folder: Path, *, tmp_only: bool = False) -> tuple[int, int]:
    """(bytes, files) of the regular files under ``folder`` (apparent sizes); with
    ``tmp_only`` only ``*.tmp``. Files removed while walked are skipped."""
    total = files = 0
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and (
                    not tmp_only or entry.name.endswith(".tmp")
                ):
                    total += entry.stat(follow_symlinks=False).st_size
                    files += 1
            except FileNotFoundError:
                continue
    return total, files


class StagingSampler(PeriodicSampler):
    """Every ``interval`` s until stopped (or ``limit`` s): the bytes under ``folder`` (its
    ``*.tmp`` only if asked) and moto's RSS; the peaks are kept."""

    def __init__(
        self, folder: Path, tmp_only: bool, moto: Moto | None, limit: float, interval: float = 0.05
    ) -> None:
        super().__init__("staging-sampler", interval, limit=limit, join_timeout=10)
        self.folder = folder
        self.tmp_only = tmp_only
        self.moto = moto
        self.peak_bytes = 0
        self.peak_files = 0
        self.peak_moto_rss = 0

    def sample(self) -> None:
        size, files = folder_bytes(self.folder, tmp_only=self.tmp_only)
        self.peak_bytes = max(self.peak_bytes, size)
        self.peak_files = max(self.peak_files, files)
        if self.moto is not None:
            self.peak_moto_rss = max(self.peak_moto_rss, self.moto.rss())
        self.samples += 1


# --- counting ---------------------------------------------------------------------------


def count_bucket(urls: UrlList, moto: Moto, prefix: str) -> tuple[Counted, dict[str, Any]]:
    """The rows of the parts in the bucket under ``prefix``, and what the bucket holds."""
    listed = moto.objects(prefix + "/")
    by_top: dict[str, dict[str, int]] = {}
    for key, size in listed:
        top = key[len(prefix) + 1 :].split("/", 1)[0]
        entry = by_top.setdefault(top, {"objects": 0, "bytes": 0})
        entry["objects"] += 1
        entry["bytes"] += size
    parts = sorted(
        k for k, _ in listed if k.startswith(f"{prefix}/shards/") and k.endswith(".parquet")
    )
    columns = ["url", "status", "error_kind"]
    tables = (pq.read_table(io.BytesIO(moto.get(key)), columns=columns) for key in parts)
    counted = count_tables(urls, tables, len(parts))
    stray = [
        k for k, _ in listed if k.startswith(f"{prefix}/shards/") and not k.endswith(".parquet")
    ]
    return counted, {"objects": by_top, "stray_shard_objects": stray[:10]}


# --- one run ----------------------------------------------------------------------------


def run_once(
    variant: str,
    round_no: int,
    run_no: int,
    urls: UrlList,
    args: argparse.Namespace,
    work: Path,
    env: dict[str, str],
    moto: Moto,
    server_pid: int,
    bound: int,
) -> dict[str, Any]:
    base = work / "object-store"
    out = base / "out"  # local: the run folder; s3: unused
    state = base / "state"  # s3: the state folder
    for folder in (out, state):
        shutil.rmtree(folder, ignore_errors=True)
    base.mkdir(parents=True, exist_ok=True)
    prefix = f"run-{run_no}"
    argv = [sys.executable, "-m", "fetchshard", "run", str(urls.path)]
    if variant == "local":
        argv += ["-o", str(out)]
        staged, tmp_only, state_folder = out / "shards", True, out
    else:
        moto.reset()  # the previous run's objects gone: moto's memory does not grow
        argv += ["-o", f"s3://{BUCKET}/{prefix}", "--state-dir", str(state)]
        argv += ["--s3-endpoint", moto.endpoint]
        staged, tmp_only, state_folder = state / "shards", False, state
    argv += [*FETCHSHARD_UNLIMITED, "--log-level", "warning"]
    argv += ["--set", f"output.part_max_bytes={args.part_bytes}"]
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    stderr_path = logs / f"object-store-{variant}-{len(urls)}-r{round_no}.err"
    os.sync()  # the previous run's dirty pages must not be written back during this one
    timeout = max(300.0, len(urls) / 50)
    server0, moto0, busy0 = session_cpu(server_pid), session_cpu(moto.pid), machine_busy_cpu()
    with (
        StagingSampler(staged, tmp_only, moto, limit=timeout + 60) as sampler,
        open(stderr_path, "wb") as err,
    ):
        m = run_measured(argv, timeout=timeout, stderr=err, env=env)
    server_cpu = session_cpu(server_pid) - server0
    moto_cpu = session_cpu(moto.pid) - moto0
    busy = machine_busy_cpu() - busy0
    state_bytes, state_files = folder_bytes(state_folder)
    left_tmp, left_tmp_files = folder_bytes(staged, tmp_only=True)
    record: dict[str, Any] = {
        "variant": variant,
        "round": round_no,
        "urls": len(urls),
        "argv": argv,
        **m.to_dict(),
    }
    if variant == "local":
        counted = count_fetchshard(urls, out, stderr_path)
        shards_bytes, shards_files = folder_bytes(out / "shards")
        record["output"] = {"shards_bytes": shards_bytes, "shards_files": shards_files}
        # The run folder is the output: its state is what is not a part.
        state_bytes -= shards_bytes
        state_files -= shards_files
    else:
        counted, bucket = count_bucket(urls, moto, prefix)
        record["output"] = bucket
    n = len(urls)
    record.update(
        ok=counted.ok,
        errors=counted.errors,
        bytes=counted.bytes,
        detail=counted.detail,
        urls_per_s=round(counted.ok / m.wall_s, 1),
        cpu_ms_per_url=round(m.cpu_s / n * 1000, 4),
        sys_ms_per_url=round(m.cpu_sys_s / n * 1000, 4),
        staging_peak_bytes=sampler.peak_bytes,
        staging_peak_mib=round(sampler.peak_bytes / MiB, 1),
        staging_peak_files=sampler.peak_files,
        staging_samples=sampler.samples,
        staging_tmp_left_bytes=left_tmp,
        staging_tmp_left_files=left_tmp_files,
        staging_bound_bytes=bound,
        staging_bound_held=sampler.peak_bytes <= bound,
        state_final_bytes=state_bytes,
        state_final_files=state_files,
        server_cpu_s=round(server_cpu, 2),
        moto_cpu_s=round(moto_cpu, 2) if variant == "s3" else None,
        moto_rss_peak_mb=round(sampler.peak_moto_rss / MiB, 1) if variant == "s3" else None,
        other_cpu_s=round(busy - m.cpu_s - server_cpu - moto_cpu, 2),
    )
    if m.exit_code != 0:
        record["stderr_tail"] = stderr_path.read_text(errors="replace").strip().splitlines()[-8:]
    if not args.keep_output:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
    if variant == "s3":
        moto.reset()
    log(
        f"{variant} round {round_no}: {counted.ok}/{n} ok, {m.wall_s:.1f} s, "
        f"CPU {m.cpu_s:.1f} s ({record['cpu_ms_per_url']:.3f} ms/URL), staging peak "
        f"{sampler.peak_bytes / MiB:.1f} MiB in {sampler.peak_files} files "
        f"({sampler.samples} samples), state {state_bytes / MiB:.1f} MiB, "
        f"moto CPU {moto_cpu:.1f} s, server CPU {server_cpu:.1f} s, exit {m.exit_code}"
        f"{' TIMEOUT' if m.timed_out else ''}"
    )
    return record


# --- summary ----------------------------------------------------------------------------

_MEDIAN_KEYS = (
    "wall_s",
    "urls_per_s",
    "cpu_s",
    "cpu_ms_per_url",
    "sys_ms_per_url",
    "peak_rss_tree_mb",
    "staging_peak_bytes",
    "state_final_bytes",
    "server_cpu_s",
    "moto_cpu_s",
    "moto_rss_peak_mb",
)


def summarize(runs: list[dict[str, Any]], bound: int) -> dict[str, Any]:
    medians: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        mine = [r for r in runs if r["variant"] == variant]
        if not mine:
            continue
        med: dict[str, Any] = {"runs": len(mine), "ok_min": min(r["ok"] for r in mine)}
        for key in _MEDIAN_KEYS:
            values = [r[key] for r in mine if r.get(key) is not None]
            med[key] = round(statistics.median(values), 4) if values else None
        med["staging_peak_max_bytes"] = max(r["staging_peak_bytes"] for r in mine)
        medians[variant] = med
    summary: dict[str, Any] = {"medians": medians, "bound_bytes": bound}
    if "local" in medians and "s3" in medians:
        local, s3 = medians["local"], medians["s3"]
        summary["cpu_per_url_s3_over_local"] = round(
            s3["cpu_ms_per_url"] / local["cpu_ms_per_url"], 3
        )
        summary["wall_s3_over_local"] = round(s3["wall_s"] / local["wall_s"], 3)
        per_round = []
        for round_no in sorted({r["round"] for r in runs}):
            pair = {r["variant"]: r for r in runs if r["round"] == round_no}
            if set(pair) == set(VARIANTS):
                per_round.append(
                    round(pair["s3"]["cpu_ms_per_url"] / pair["local"]["cpu_ms_per_url"], 3)
                )
        summary["cpu_per_url_s3_over_local_per_round"] = per_round
    summary["bound_held"] = all(r["staging_peak_bytes"] <= bound for r in runs)
    summary["all_ok"] = all(r["ok"] == r["urls"] and r["exit_code"] == 0 for r in runs)
    return summary


def _mib(value: float | None) -> str:
    return "–" if value is None else f"{value / MiB:,.1f}"


def table(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    head = (
        "| variant | round | URLs ok | wall s | URLs/s | CPU s | CPU ms / URL (sys) | "
        "peak staging MiB (files) | state after MiB | peak RSS MB | moto CPU s | moto RSS MB |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in runs:
        lines.append(
            f"| {r['variant']} | {r['round']} | {r['ok']:,} | {r['wall_s']:.1f} | "
            f"{r['urls_per_s']:,.0f} | {r['cpu_s']:.1f} | {r['cpu_ms_per_url']:.3f} "
            f"({r['sys_ms_per_url']:.3f}) | {_mib(r['staging_peak_bytes'])} "
            f"({r['staging_peak_files']}) | {_mib(r['state_final_bytes'])} | "
            f"{r['peak_rss_tree_mb']:.0f} | "
            f"{'–' if r['moto_cpu_s'] is None else r['moto_cpu_s']} | "
            f"{'–' if r['moto_rss_peak_mb'] is None else r['moto_rss_peak_mb']} |"
        )
    for variant, med in summary["medians"].items():
        moto_cpu = "–" if med["moto_cpu_s"] is None else f"{med['moto_cpu_s']:.1f}"
        moto_rss = "–" if med["moto_rss_peak_mb"] is None else f"{med['moto_rss_peak_mb']:.0f}"
        lines.append(
            f"| **{variant}, median** | | {med['ok_min']:,} (min) | {med['wall_s']:.1f} | "
            f"{med['urls_per_s']:,.0f} | {med['cpu_s']:.1f} | {med['cpu_ms_per_url']:.3f} "
            f"({med['sys_ms_per_url']:.3f}) | {_mib(med['staging_peak_bytes'])} | "
            f"{_mib(med['state_final_bytes'])} | {med['peak_rss_tree_mb']:.0f} | {moto_cpu} | "
            f"{moto_rss} |"
        )
    return "\n".join(lines)


def verdict(summary: dict[str, Any], part_bytes: int, row_group: int) -> str:
    bound = summary["bound_bytes"]
    worst = max(m["staging_peak_max_bytes"] for m in summary["medians"].values())
    text = (
        f"bound: {PENDING_COMMITS + 1} x part_max_bytes ({_mib(part_bytes)} MiB) + row group "
        f"({_mib(row_group)} MiB) = {_mib(bound)} MiB; largest peak {_mib(worst)} MiB: "
        f"{'held' if summary['bound_held'] else 'NOT held'}"
    )
    if "cpu_per_url_s3_over_local" in summary:
        text += (
            f"\nCPU per URL s3 / local: {summary['cpu_per_url_s3_over_local']} (medians), "
            f"per round {summary['cpu_per_url_s3_over_local_per_round']}; "
            f"wall s3 / local: {summary['wall_s3_over_local']}"
        )
    return text


def markdown(result: dict[str, Any]) -> str:
    s = result["summary"]
    return "\n".join(
        [
            "# Object store against local output (benchmarks/object_store.py)",
            "",
            f"`{' '.join(Path(a).name if i == 0 else a for i, a in enumerate(result['command']))}`",
            "",
            f"{result['started']} – {result['finished']}; {result['machine']['cpus']} cores, "
            f"Python {result['machine']['python']}; server {result['server']['kind']} "
            f"({result['server']['version']}), {result['server']['hosts']} loopback hosts; "
            f"moto {result['moto']['version']} (a process of its own); fetchshard "
            f"{result['fetchshard_source'].get('commit') or result['fetchshard_src']}; "
            f"{result['urls']:,} URLs, corpus "
            f"{result['corpus']['files']} JPEGs (mean {result['corpus']['mean_kb']} KB); "
            f"output.part_max_bytes = {_mib(result['part_bytes'])} MiB.",
            "",
            table(result["runs"], s),
            "",
            verdict(s, result["part_bytes"], result["row_group_bytes"]),
            "",
        ]
    )


# --- main -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=20_000, help="URLs per run")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of local then s3")
    parser.add_argument(
        "--part-bytes", type=int, default=16 * MiB, help="output.part_max_bytes (16 MiB)"
    )
    parser.add_argument("--json", default=str(HERE / "results" / "object-store-latest.json"))
    parser.add_argument("--md", default=None, help="also write the rounds as Markdown here")
    parser.add_argument("--work", default=str(HERE / ".work"), help="corpus, outputs, logs")
    parser.add_argument("--server", choices=["auto", "nginx", "aiohttp"], default="auto")
    parser.add_argument("--hosts", type=int, default=64, help="loopback hosts 127.0.0.2...")
    parser.add_argument("--corpus-files", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-output", action="store_true", help="do not delete outputs")
    parser.add_argument(
        "--fetchshard-src",
        default="live",
        metavar="live|REV",
        help="live: the installed fetchshard; REV (e.g. HEAD): that commit's src/",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    import moto as moto_package

    from fetchshard.config import OutputConfig

    row_group = int(OutputConfig.__dataclass_fields__["row_group_bytes"].default)
    bound = (PENDING_COMMITS + 1) * args.part_bytes + row_group
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    started_at = datetime.datetime.now().astimezone()
    log(f"corpus ({args.corpus_files} JPEGs) in {work}")
    corpus = ensure_corpus(work, args.corpus_files, args.seed)
    env = sdk_env(work)
    source: Any = fetchshard_source()
    if args.fetchshard_src != "live":
        snap, sha = snapshot_fetchshard(args.fetchshard_src, work)
        path = env.get("PYTHONPATH")
        env["PYTHONPATH"] = f"{snap}{os.pathsep}{path}" if path else str(snap)
        source = {"commit": sha, "snapshot": str(snap)}
        log(f"fetchshard from commit {sha} ({snap})")
    probe = f"/img/{corpus.names[0]}"
    server = start_server(args.server, corpus.root, work, args.hosts, probe, corpus.sizes[0])
    moto: Moto | None = None
    runs: list[dict[str, Any]] = []
    try:
        moto = Moto(work, env)
        moto.reset()
        log(
            f"server {server.kind} ({server.version}) pid {server.pid}; moto "
            f"{moto_package.__version__} pid {moto.pid} at {moto.endpoint}"
        )
        urls = write_url_list(
            work / f"urls-object-store-{args.urls}.txt",
            corpus,
            server.addresses,
            server.port,
            args.urls,
            args.seed,
        )
        run_no = 0
        for round_no in range(1, args.repeat + 1):
            for variant in VARIANTS:
                run_no += 1
                runs.append(
                    run_once(
                        variant, round_no, run_no, urls, args, work, env, moto, server.pid, bound
                    )
                )
    finally:
        if moto is not None:
            moto.stop()
        server.stop()
        log("moto and the image server stopped")
    summary = summarize(runs, bound)
    result: dict[str, Any] = {
        **result_header(started_at),
        "server": server.describe(),
        "moto": {"version": moto_package.__version__, "how": "python -m moto.server, own process"},
        "fetchshard_src": args.fetchshard_src,
        "fetchshard_source": source,
        "corpus": corpus.summary(),
        "urls": args.urls,
        "repeat": args.repeat,
        "part_bytes": args.part_bytes,
        "row_group_bytes": row_group,
        "runs": runs,
        "summary": summary,
    }
    print(f"\n{args.urls:,} URLs, {args.repeat} round(s), medians per variant\n")
    print(table(runs, summary))
    print("\n" + verdict(summary, args.part_bytes, row_group))
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if args.md:
        Path(args.md).write_text(markdown(result), encoding="utf-8")
    log(f"results in {out}")
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
