"""Scaling to a 10,000-row x 8-feature synthetic CSV: kriging cost vs training-set size, the effect
of capping kriging's training set (labeler.max_points) on R2 and time, and one trial's cost.

Part A (kriging alone, n-D gstools backend): fit + label 1000 virtual points with
OrdinaryKrigingLabeler on n training rows, score its predictions on 1000 held-out real rows.
  * "full n": every training row is a kriging point (a smaller data set, kriged in full);
  * "cap m of 8000": the 8000-row training pool capped at m points via labeler.max_points.
Times grow ~n^3 (LOO inverse per variogram candidate + gstools' pseudo-inverse of the kriging
matrix), memory ~n^2; the 8000-point cost is extrapolated from the measured exponent unless
--try-full is given.

Part B (one trial through vaeok.evaluation.scoring.evaluate on the 10k CSV, honest 5-fold on 8500
development rows, 6800 training rows per fold), with labeler.max_points (default 1000) and a
REDUCED epoch budget (--epochs, default 10; stated in the output) - training time is
extrapolated linearly to the default 400 epochs.

Run: PYTHONPATH=src python benchmarks/scale.py [--sizes 250 500 1000 2000] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import RESULTS, env_info

N_ROWS, N_FEAT = 10_000, 8


def synthetic(n: int = N_ROWS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Friedman-like smooth response in 8 features (two nearly irrelevant) plus noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, N_FEAT))
    y = (10 * np.sin(np.pi * X[:, 0] * X[:, 1]) + 20 * (X[:, 2] - 0.5) ** 2 + 10 * X[:, 3] + 5 * X[:, 4]
         + 3 * X[:, 5] * X[:, 6] + 0.2 * X[:, 7] + rng.normal(0, 1.0, n))
    return X, y


def write_csv(path: Path) -> Path:
    X, y = synthetic()
    header = ",".join([f"x{i}" for i in range(N_FEAT)] + ["y"])
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", header=header, comments="", fmt="%.6f")
    return path


def kriging_case(X_pool, y_pool, X_test, y_test, X_virtual, n: int, cap: int | None) -> dict:
    from vaeok.evaluation.metrics import regression_metrics
    from vaeok.labelers.kriging import OrdinaryKrigingLabeler

    lab = OrdinaryKrigingLabeler(max_points=cap, seed=42)
    t0 = time.perf_counter()
    lab.fit(X_pool[:n], y_pool[:n])
    t1 = time.perf_counter()
    lab.predict(X_virtual, return_std=True)
    t2 = time.perf_counter()
    r2 = regression_metrics(y_test, lab.predict(X_test))["r2"]
    k = cap if cap is not None else n
    return {"case": f"cap {cap} of {n}" if cap else f"full {n}", "pool": n, "points": k, "fit_s": t1 - t0,
            "label_1000_s": t2 - t1, "r2_heldout": r2, "chosen": lab.chosen_,
            "kriging_matrix_mb": (k + 1) ** 2 * 8 / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--caps", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--max-points", type=int, default=1000)
    ap.add_argument("--try-full", action="store_true", help="really krige 8000 points (minutes, GBs)")
    ap.add_argument("--skip-trial", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    X, y = synthetic()
    X_test, y_test = X[-1000:], y[-1000:]
    X_pool, y_pool = X[:8000], y[:8000]
    X_virtual = np.random.default_rng(1).uniform(0, 1, (1000, N_FEAT))  # stand-in for VAE samples

    rows = []
    for n in args.sizes:
        rows.append(kriging_case(X_pool, y_pool, X_test, y_test, X_virtual, n, None))
        print(f"  {rows[-1]['case']:<18} fit {rows[-1]['fit_s']:7.2f} s  label {rows[-1]['label_1000_s']:6.2f} s  "
              f"R2 {rows[-1]['r2_heldout']:.4f}", flush=True)
    for m in args.caps:
        rows.append(kriging_case(X_pool, y_pool, X_test, y_test, X_virtual, 8000, m))
        print(f"  {rows[-1]['case']:<18} fit {rows[-1]['fit_s']:7.2f} s  label {rows[-1]['label_1000_s']:6.2f} s  "
              f"R2 {rows[-1]['r2_heldout']:.4f}", flush=True)
    if args.try_full:
        rows.append(kriging_case(X_pool, y_pool, X_test, y_test, X_virtual, 8000, None))
    full = [r for r in rows if r["case"].startswith("full")]
    ns = np.log([r["points"] for r in full])
    fit_exp, fit_c = np.polyfit(ns, np.log([r["fit_s"] for r in full]), 1)
    lab_exp, lab_c = np.polyfit(ns, np.log([r["label_1000_s"] for r in full]), 1)
    extrap = {n: {"fit_s": float(np.exp(fit_c) * n**fit_exp), "label_1000_s": float(np.exp(lab_c) * n**lab_exp),
                  "kriging_matrix_mb": (n + 1) ** 2 * 8 / 2**20} for n in (6800, 8000)}

    trial = None
    if not args.skip_trial:
        from trial_overhead import timed_call
        from vaeok.config.compose import load_config
        from vaeok.core.runtime import configure_runtime
        from vaeok.data.datasets import load_dataset
        from vaeok.evaluation.scoring import evaluate

        tmp = Path(tempfile.mkdtemp(prefix="vaeok-scale-"))
        csv = write_csv(tmp / "synthetic_10k.csv")
        cfg = load_config(["tracking.enabled=false", "data=csv", f"data.path={csv}", "data.target=y",
                           f"trainer.max_epochs={args.epochs}", f"labeler.max_points={args.max_points}"])
        configure_runtime(cfg.torch_threads)
        data = load_dataset(cfg.data)
        _, cold, res = timed_call(lambda: evaluate(cfg, data), breakdown=True)
        _, warm, res = timed_call(lambda: evaluate(cfg, data), breakdown=True)
        per_epoch = warm["train"] / args.epochs
        trial = {"epochs": args.epochs, "max_points": args.max_points, "cold": cold, "warm": warm,
                 "val_r2": res.objective, "train_s_per_epoch": per_epoch,
                 "extrapolated_400_epochs_warm_s": warm["total"] - warm["train"] + 400 * per_epoch}

    print(f"\nPart A: kriging (gstools n-D, {N_FEAT} features), 1000 virtual points, R2 on 1000 held-out rows")
    print(f"{'case':<20} {'points':>6} {'fit s':>8} {'label s':>8} {'R2':>7} {'K matrix MB':>11}  variogram")
    for r in rows:
        print(f"{r['case']:<20} {r['points']:>6} {r['fit_s']:8.2f} {r['label_1000_s']:8.2f} {r['r2_heldout']:7.4f} "
              f"{r['kriging_matrix_mb']:11.1f}  {r['chosen']}")
    print(f"growth: fit ~ n^{fit_exp:.2f}, label ~ n^{lab_exp:.2f}")
    for n, e in extrap.items():
        print(f"extrapolated full {n}: fit {e['fit_s']:.0f} s + label {e['label_1000_s']:.0f} s per fold "
              f"(x5 folds), one kriging matrix {e['kriging_matrix_mb']:.0f} MB (several copies live at once)")
    if trial:
        c, w = trial["cold"], trial["warm"]
        print(f"\nPart B: one trial on {N_ROWS}x{N_FEAT} CSV, labeler.max_points={args.max_points}, "
              f"{args.epochs} epochs (REDUCED; default 400)")
        print(f"{'':<6} {'train':>8} {'krige_fit':>10} {'krige_pred':>10} {'gbr':>8} {'total':>8}")
        for name, t in (("cold", c), ("warm", w)):
            print(f"{name:<6} {t['train']:8.2f} {t.get('krige_fit', 0):10.2f} {t['krige_predict']:10.2f} "
                  f"{t['gbr']:8.2f} {t['total']:8.2f}")
        print(f"val/r2 {trial['val_r2']:.4f}; VAE {trial['train_s_per_epoch']:.3f} s/epoch -> a 400-epoch warm trial "
              f"~{trial['extrapolated_400_epochs_warm_s']:.0f} s")
    out = {"env": env_info(), "kriging": rows, "growth": {"fit_exp": fit_exp, "label_exp": lab_exp},
           "extrapolated_full": extrap, "trial": trial}
    (RESULTS / "scale.json").write_text(json.dumps(out, indent=2, default=float))


if __name__ == "__main__":
    main()
