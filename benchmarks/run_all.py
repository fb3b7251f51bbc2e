"""Run the fast benchmarks (trial_overhead, memory, overhead, fold_parallel, selection --quick) one after another
and print a summary table.

The slow ones (scale.py, search_efficiency.py) are run by hand; their last results are summarised
from benchmarks/results/*.json if present. `make bench` calls this script.

Run: PYTHONPATH=src python benchmarks/run_all.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from _common import RESULTS

HERE = Path(__file__).resolve().parent


def _direct(r: dict, key: str, label: str) -> list[tuple[str, str, str, str]]:
    """A directly timed overhead row (absent in results from before it was measured)."""
    return [(label, f"{r[key]:+.1%}", "<= 5 %", _ok(r[key] <= 0.05))] if key in r else []


def load(name: str) -> dict | None:
    p = RESULTS / name
    return json.loads(p.read_text()) if p.is_file() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--overhead-repeats", type=int, default=1,
                    help="repeats of overhead.py (sweeps of 5 and 20 trials, run, promote, predict, workers)")
    ap.add_argument("--summary-only", action="store_true", help="only summarise the stored results")
    args = ap.parse_args()
    if not args.summary_only:
        for script, extra in (("trial_overhead.py", ["--repeats", str(args.repeats)]), ("memory.py", []),
                              ("overhead.py", ["--repeats", str(args.overhead_repeats)]),
                              ("fold_parallel.py", []), ("selection.py", ["--quick", "--fresh"])):
            print(f"\n=== {script}", flush=True)
            subprocess.run([sys.executable, str(HERE / script), *extra], check=True)

    rows: list[tuple[str, str, str, str]] = []
    to = load("trial_overhead.json")
    if to:
        r, a = to["ratios"], to["absolute"]
        rows += [
            ("harness / reference (batched), warm", f"{r['harness/ref_batched warm']:.2f}x", "<= 1.30",
             _ok(r["harness/ref_batched warm"] <= 1.3)),
            ("harness / reference (batched), cold", f"{r['harness/ref_batched cold']:.2f}x", "<= 1.30",
             _ok(r["harness/ref_batched cold"] <= 1.3)),
            ("harness / naive sequential reference, warm", f"{r['harness/ref_sequential warm']:.2f}x", "", ""),
            ("MLflow overhead (figures off, as in sweeps), paired", f"{r['mlflow overhead figs off']:+.1%}", "<= 5 %",
             _ok(r["mlflow overhead figs off"] <= 0.05)),
            *_direct(r, "mlflow overhead direct", "MLflow logging alone / harness trial"),
            ("MLflow overhead (figures on, vaeok run)", f"{r['mlflow overhead figs on']:+.1%}", "", ""),
            ("Optuna + Hydra composition overhead, paired", f"{r['optuna+hydra overhead']:+.1%}", "<= 5 %",
             _ok(r["optuna+hydra overhead"] <= 0.05)),
            *_direct(r, "optuna+hydra overhead direct", "Optuna + Hydra alone / run_experiment"),
            ("default sweep trial, warm (s)", f"{a['default sweep trial wall (warm, s)']:.2f}", "<= 3.0",
             _ok(a["default sweep trial wall (warm, s)"] <= 3.0)),
            ("first trial in a process, cold (s)", f"{a['first trial in process (cold, s)']:.2f}", "", ""),
        ]
    mem = load("memory.json")
    if mem:
        s = mem["summary"]
        rows += [
            (f"peak RSS, sweep --n-trials {mem['n_trials']} (MB)", f"{s['sweep_peak_rss_mb']:.0f}", "< 1536",
             _ok(s["sweep_peak_rss_mb"] < 1536)),
            (f"wall, sweep --n-trials {mem['n_trials']} incl. start-up (s)", f"{s['sweep_wall_s']:.1f}", "", ""),
            ("CLI start-up: import vaeok.experiment+sweep (s)", f"{s['import_s']:.2f}", "", ""),
        ]
    ov = load("overhead.json")
    if ov:  # issue #15: what a user waits for around the trials (through the CLI, fresh stores)
        rows += [tuple(g) for g in ov["goals"]]
        rows.append((f"  (overhead.py: load average {ov['env']['loadavg_at_start']:.1f} at start, "
                     f"{ov['repeats']} repeat(s))", "", "", ""))
    fp = load("fold_parallel.json")
    if fp:
        med = fp["median"]
        for case in (c for c in med if c != "serial"):
            rows.append((f"fold scoring in {case} / serial (identical: {'yes' if fp['identical'] else 'NO'})",
                         f"{med['serial'] / med[case]:.2f}x", "", ""))
    sc = load("scale.json")
    if sc and sc.get("trial"):
        t = sc["trial"]
        rows.append((f"10k x 8 trial, max_points={t['max_points']}, 400 ep (extrap., s)",
                     f"{t['extrapolated_400_epochs_warm_s']:.0f}", "", ""))
    se = load("search_efficiency.json")
    if se:
        for sampler in ("tpe", "random"):
            st = [s for s in se["studies"] if sampler in s["spec"]]
            hits = [s["reach_grid_best"] for s in st]
            rows.append((f"{sampler}: trials to reach paper-grid best (per seed)",
                         " ".join(str(h) if h else "-" for h in hits), f"budget {se['n_trials']}", ""))
    width = max(len(r[0]) for r in rows) if rows else 40
    print(f"\n{'measure':<{width}} {'value':>12} {'target':>10}  ok")
    print("-" * (width + 30))
    for name, val, tgt, ok in rows:
        print(f"{name:<{width}} {val:>12} {tgt:>10}  {ok}")


def _ok(flag: bool) -> str:
    return "yes" if flag else "NO"


if __name__ == "__main__":
    main()
