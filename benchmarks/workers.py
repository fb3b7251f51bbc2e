"""Throughput of a sweep with 1 vs 2 worker processes on this host (same run, same trials).

Every trial does the same default work (paper Table 1 config, honest 5-fold, 1000 virtual
samples); the grid over `seed` makes the trial set identical for both worker counts.
Reports trials/minute from the first trial start to the last trial end (storage timestamps)
and over the whole command (including process start-up), and the 2-vs-1 ratio.

    python benchmarks/workers.py [--trials 8] [--storage sqlite|postgres]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def _storage(kind: str, tmp: Path) -> tuple[str, object]:
    if kind == "sqlite":
        return f"sqlite:///{tmp}/mlruns/optuna.db", None
    import psycopg

    name = f"vaeok_bench_{uuid.uuid4().hex[:8]}"
    conn = psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True)
    conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:5432/{name}", (conn, name)


def run(workers: int, trials: int, kind: str) -> dict[str, float]:
    """One sweep with `workers` processes; returns timings."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        seeds = ", ".join(str(s) for s in range(trials))
        (tmp / "bench.yaml").write_text(
            f"name: bench\nsampler: {{type: grid, seed: 0}}\npruner: none\nn_trials: {trials}\n"
            f"space:\n  seed: categorical [{seeds}]\n")
        storage, cleanup = _storage(kind, tmp)
        env = {**os.environ, "VAEOK_CONFIG_DIR": str(REPO / "conf")}
        cmd = [sys.executable, "-m", "vaeok.cli", "sweep", "--spec", "bench.yaml", "--workers", str(workers),
               "--storage", storage, "--no-progress"]
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=tmp, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        study = optuna.load_study(study_name="bench", storage=storage)
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
        if cleanup is not None:
            conn, name = cleanup
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        return {"workers": workers, "trials": len(done), "wall_s": wall, "trial_span_s": span,
                "trials_per_min_span": 60 * len(done) / span, "trials_per_min_wall": 60 * len(done) / wall,
                "mean_trial_s": sum(t.duration.total_seconds() for t in done) / len(done)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--storage", choices=["sqlite", "postgres"], default="sqlite")
    args = ap.parse_args()
    rows = [run(1, args.trials, args.storage), run(2, args.trials, args.storage)]
    ratio_span = rows[1]["trials_per_min_span"] / rows[0]["trials_per_min_span"]
    ratio_wall = rows[1]["trials_per_min_wall"] / rows[0]["trials_per_min_wall"]
    print(f"{'workers':>7} {'trials':>6} {'wall s':>8} {'span s':>8} {'trials/min (span)':>18} "
          f"{'trials/min (wall)':>18} {'mean trial s':>12}")
    for r in rows:
        print(f"{r['workers']:>7} {r['trials']:>6} {r['wall_s']:>8.1f} {r['trial_span_s']:>8.1f} "
              f"{r['trials_per_min_span']:>18.2f} {r['trials_per_min_wall']:>18.2f} {r['mean_trial_s']:>12.2f}")
    print(f"2 vs 1 workers: x{ratio_span:.2f} trials/min (trial span), x{ratio_wall:.2f} (whole command)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {"storage": args.storage, "runs": rows, "ratio_span": ratio_span, "ratio_wall": ratio_wall,
           "cpu_count": os.cpu_count()}
    (RESULTS / f"workers_{args.storage}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
