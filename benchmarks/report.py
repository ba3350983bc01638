"""Medians over repeated runs, ratios to fetchshard, and the Markdown tables printed."""

from __future__ import annotations

import statistics
from typing import Any

BASELINE = "fetchshard"

# Per-run figures that get a median (keys of a run record).
MEDIAN_KEYS = [
    "urls_per_s",
    "mb_per_s",
    "cpu_s_per_1000",
    "sys_s_per_1000",
    "peak_rss_tree_mb",
    "peak_rss_largest_mb",
    "maxrss_wait4_mb",
    "wall_s",
    "errors",
    "server_cpu_s",
    "other_cpu_s",
    "other_cores",
]


def medians(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per peer: the median of each figure over its completed runs, plus ratios to fetchshard."""
    by_peer: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_peer.setdefault(run["peer"], []).append(run)
    out: dict[str, dict[str, Any]] = {}
    for peer, peer_runs in by_peer.items():
        done = [r for r in peer_runs if r.get("status") == "ok"]
        for r in done:  # records written before other_cores existed
            if "other_cores" not in r and r.get("other_cpu_s") is not None:
                r["other_cores"] = round(r["other_cpu_s"] / r["wall_s"], 2)
        entry: dict[str, Any] = {
            "runs": len(peer_runs),
            "completed_runs": len(done),
            "urls": peer_runs[0]["urls"],
        }
        for key in MEDIAN_KEYS:
            values = [r[key] for r in done if r.get(key) is not None]
            entry[key] = round(statistics.median(values), 3) if values else None
        entry["errors_total"] = sum(r.get("errors", 0) or 0 for r in peer_runs)
        out[peer] = entry
    base = out.get(BASELINE)
    for entry in out.values():
        entry["urls_per_s_vs_fetchshard"] = _ratio(entry, base, "urls_per_s")
        entry["cpu_per_url_vs_fetchshard"] = _ratio(entry, base, "cpu_s_per_1000")
    return out


def _ratio(entry: dict[str, Any], base: dict[str, Any] | None, key: str) -> float | None:
    if base is None or not entry.get(key) or not base.get(key):
        return None
    return round(float(entry[key]) / float(base[key]), 2)


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def peer_table(
    order: list[str], med: dict[str, dict[str, Any]], unavailable: dict[str, str]
) -> str:
    lines = [
        "| client | URLs | URLs/s | MB/s | CPU s / 1000 URLs (of which kernel) | peak RSS MB: tree "
        "(largest process) | errors | URLs/s vs fetchshard | CPU/URL vs fetchshard "
        "| other load, cores |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in order:
        if name in unavailable:
            lines.append(f"| {name} | {unavailable[name]} | | | | | | | | |")
            continue
        m = med.get(name)
        if m is None:
            continue
        if not m["completed_runs"]:
            lines.append(f"| {name} | no completed run (see runs in the JSON) | | | | | | | | |")
            continue
        rss = f"{_fmt(m['peak_rss_tree_mb'])} ({_fmt(m['peak_rss_largest_mb'])})"
        lines.append(
            f"| {name} | {m['urls']:,} | {_fmt(m['urls_per_s'])} | {_fmt(m['mb_per_s'])} "
            f"| {_fmt(m['cpu_s_per_1000'], 2)} ({_fmt(m.get('sys_s_per_1000'), 2)}) "
            f"| {rss} | {_fmt(m['errors'])} "
            f"| {_fmt(m['urls_per_s_vs_fetchshard'], 2)} "
            f"| {_fmt(m['cpu_per_url_vs_fetchshard'], 2)} | {_fmt(m.get('other_cores'), 2)} |"
        )
    return "\n".join(lines)


def scale_summary(runs: list[dict[str, Any]], plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Per input size: median URLs/s and RSS; ratios of the largest size to the middle one."""
    sizes = sorted({r["urls"] for r in runs} | {p["urls"] for p in plans})
    per_size: dict[int, dict[str, Any]] = {}
    for n in sizes:
        done = [r for r in runs if r["urls"] == n and r.get("status") == "ok"]
        planned = [p for p in plans if p["urls"] == n and p.get("planned_s") is not None]
        per_size[n] = {
            "runs": len(done),
            "urls_per_s": _median(done, "urls_per_s"),
            "peak_rss_tree_mb": _median(done, "peak_rss_tree_mb"),
            "peak_rss_largest_mb": _median(done, "peak_rss_largest_mb"),
            "maxrss_wait4_mb": _median(done, "maxrss_wait4_mb"),
            "errors": _median(done, "errors"),
            "planned_s": _median(planned, "planned_s"),
            "plan_rows_per_s": _median(planned, "rows_per_s"),
            "plan_rows_per_s_net": _median(planned, "rows_per_s_net"),
            "plan_peak_rss_tree_mb": _median(planned, "peak_rss_tree_mb"),
        }
    summary: dict[str, Any] = {"sizes": {str(n): v for n, v in per_size.items()}}
    if len(sizes) >= 2:
        big, mid = per_size[sizes[-1]], per_size[sizes[len(sizes) // 2 - (len(sizes) % 2 == 0)]]
        for key in ("peak_rss_tree_mb", "urls_per_s", "plan_rows_per_s"):
            if big[key] and mid[key]:
                summary[f"{key}_largest_over_middle"] = round(big[key] / mid[key], 3)
    return summary


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 3) if values else None


def scale_table(summary: dict[str, Any]) -> str:
    lines = [
        "| URLs | URLs/s | peak RSS MB: tree (largest process) | errors | planning s | plan rows/s "
        "(net of start-up) | planning peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for n, v in summary["sizes"].items():
        rss = f"{_fmt(v['peak_rss_tree_mb'])} ({_fmt(v['peak_rss_largest_mb'])})"
        plan = f"{_fmt(v['plan_rows_per_s'])} ({_fmt(v['plan_rows_per_s_net'])})"
        lines.append(
            f"| {int(n):,} | {_fmt(v['urls_per_s'])} | {rss} | {_fmt(v['errors'])} "
            f"| {_fmt(v['planned_s'], 1)} | {plan} | {_fmt(v['plan_peak_rss_tree_mb'])} |"
        )
    extra = [f"{k} = {v}" for k, v in summary.items() if k.endswith("_largest_over_middle")]
    return "\n".join(lines + (["", *extra] if extra else []))


def main() -> None:
    """Reprint the tables of a saved result: python benchmarks/report.py RESULT.json"""
    import json
    import sys
    from pathlib import Path

    result = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    if result.get("runs"):
        med = medians(result["runs"])
        unavailable = {k: v["unavailable"] for k, v in result["peers"].items() if v["unavailable"]}
        print(peer_table(list(result["peers"]), med, unavailable))
    if result.get("scale"):
        scale = result["scale"]
        print(scale_table(scale_summary(scale["runs"], scale["plans"])))


if __name__ == "__main__":
    main()
