"""How much does a holdout of k rows say? The spread of holdout R² over random holdouts of size k,
for a fixed method (GBR on the real rows), on small public data sets: the measurement behind
`evaluation.holdout_min_rows` (a holdout smaller than that is not made).

    python benchmarks/holdout_size.py            # ~1 min on 2 cores

For each data set and k, 100 random splits: fit on the other rows, score R² on the k held-out rows;
report the standard deviation of that R² and its 5-95 % range. A decision between two configs on
such a holdout is a coin flip when this spread exceeds the configs' difference (0.01-0.05 here).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes, make_friedman1
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.metrics import r2_score

from vaeok.data.datasets import rubber_surrogate

SIZES = (5, 10, 13, 20, 30, 50)


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    X, y = load_diabetes(return_X_y=True)
    idx = rng.choice(len(y), 150, replace=False)
    s = rubber_surrogate()
    fX, fy = make_friedman1(n_samples=150, noise=1.0, random_state=0)
    return {"surrogate86": (s.X, s.y), "diabetes150": (X[idx], y[idx]), "friedman1_150": (fX, fy)}


def spread(X: np.ndarray, y: np.ndarray, k: int, n_splits: int = 100, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_splits):
        hold = rng.choice(len(y), k, replace=False)
        train = np.setdiff1d(np.arange(len(y)), hold)
        model = GradientBoostingRegressor(random_state=0, n_estimators=50).fit(X[train], y[train])
        scores.append(r2_score(y[hold], model.predict(X[hold])))
    a = np.asarray(scores)
    return {"sd": float(a.std(ddof=1)), "p05": float(np.quantile(a, 0.05)), "p95": float(np.quantile(a, 0.95)),
            "mean": float(a.mean())}


def main() -> None:
    out: dict[str, dict[str, dict[str, float]]] = {}
    print("| data set | " + " | ".join(f"k={k}" for k in SIZES) + " |")
    print("|---|" + "---|" * len(SIZES))
    for name, (X, y) in datasets().items():
        out[name] = {str(k): spread(X, y, k) for k in SIZES if k < len(y) // 2}
        cells = [f"sd {v['sd']:.3f} ({v['p05']:.2f}..{v['p95']:.2f})" for v in out[name].values()]
        print(f"| {name} | " + " | ".join(cells) + " |")
    path = Path(__file__).parent / "results" / "holdout_size.json"
    path.write_text(json.dumps(out, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
