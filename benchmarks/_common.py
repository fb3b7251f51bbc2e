"""Shared helpers for the benchmark scripts: result paths, environment info, median tables."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RESULTS.mkdir(parents=True, exist_ok=True)
SRC = ROOT / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))
os.environ.setdefault("VAEOK_CONFIG_DIR", str(ROOT / "conf"))


def env_info() -> dict:
    """Machine and library versions, so numbers can be compared across runs."""
    import subprocess

    import torch

    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "machine": platform.machine(), "git_commit": commit,
        "loadavg_at_start": os.getloadavg()[0],
    }


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def median_table(rows: list[dict], cols: list[str], key: str = "case") -> dict:
    """Median of each timing column per case, as text and as rows (plus min/max of `total`)."""
    cases: dict[str, list[dict]] = {}
    for r in rows:
        cases.setdefault(r[key], []).append(r)
    out = []
    for case, rs in cases.items():
        row = {key: case, "n": len(rs)}
        for c in cols:
            row[c] = median([r["times"][c] for r in rs if c in r["times"]])
        totals = [r["times"]["total"] for r in rs if "total" in r["times"]]
        if totals:
            row["total_min"], row["total_max"] = min(totals), max(totals)
        if "r2" in rs[0]:
            row["r2"] = rs[0]["r2"]
        out.append(row)
    head = f"{key:<34} {'n':>2} " + " ".join(f"{c:>13}" for c in cols) + f" {'r2':>8}"
    lines = [head, "-" * len(head)]
    for row in out:
        vals = " ".join(f"{row[c]:13.3f}" for c in cols)
        lines.append(f"{row[key]:<34} {row['n']:>2} {vals} {row.get('r2', float('nan')):8.4f}")
    return {"text": "\n".join(lines), "rows": out}
