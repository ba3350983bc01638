"""Run the README example offline: serve examples/site.py, fetch examples/urls.txt into out/.

    python examples/demo.py [-o out/]

It starts the local site, runs exactly ``fetchshard run examples/urls.txt -o out/``, prints
what landed in the Parquet parts, stops the site (by its PID), then runs
``fetchshard report out/`` and ``fetchshard merge out/`` (the dataset in ``out/merged``).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PORT = 8765


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the example site exited early (is port {port} in use?)")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"the example site did not start on port {port}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the README example offline.")
    parser.add_argument("-o", "--output", default="out/")
    args = parser.parse_args()
    site = subprocess.Popen([sys.executable, str(HERE / "site.py"), "--port", str(PORT)])
    try:
        wait_for_port(PORT, site)
        exe = shutil.which("fetchshard")
        cmd = [exe] if exe else [sys.executable, "-m", "fetchshard"]
        cmd += ["run", str(HERE / "urls.txt"), "-o", args.output]
        print("$ fetchshard run examples/urls.txt -o", args.output, flush=True)
        code = subprocess.call(cmd)
    finally:
        site.terminate()
        site.wait(timeout=10)
    if code != 0:
        return code
    import pyarrow.dataset as ds

    table = ds.dataset(Path(args.output) / "shards", format="parquet").to_table(
        columns=["url", "status", "error_kind", "http_status", "size", "attempts"]
    )
    print(f"\n{table.num_rows} rows in {args.output}shards/:")
    for row in sorted(table.to_pylist(), key=lambda r: r["url"]):
        what = f"{row['size']} bytes" if row["status"] == "ok" else row["error_kind"]
        print(f"  {row['status']:6} {what:>12}  attempts={row['attempts']}  {row['url']}")
    base = cmd[: cmd.index("run")]
    for step in (["report", args.output], ["merge", args.output]):
        print(f"\n$ fetchshard {' '.join(step)}", flush=True)
        code = subprocess.call([*base, *step])
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
