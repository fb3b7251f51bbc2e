"""Virtual-label fidelity on the embedded surrogate: the analogue of the paper's Fig 10 MD check.

The paper re-simulated 30 virtual samples by MD and found all labels within 5 %. Here the
surrogate's noise-free generating function (`vaeok.data.datasets.surrogate_oracle`) plays the role of MD.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vaeok.data.datasets import surrogate_oracle


def relative_errors(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(label - oracle) / oracle at rows X."""
    oracle = surrogate_oracle(X)
    return (np.asarray(y, float) - oracle) / oracle


def fidelity_table(real_X: np.ndarray, real_y: np.ndarray, virtual: dict[str, tuple[np.ndarray, np.ndarray]],
                   tol: float) -> pd.DataFrame:
    """Share of labels within ±tol of the oracle and error quantiles, per generator, with the
    real rows (measurement noise only) as the reference row."""
    rows = []
    for name, (X, y) in {"real rows (noise only)": (real_X, real_y), **virtual}.items():
        if len(X) == 0:
            continue
        e = relative_errors(X, y)
        rows.append({"labels": name, "n": len(e), f"share_within_{100 * tol:g}pct": float(np.mean(np.abs(e) <= tol)),
                     "median_abs_err_pct": float(100 * np.median(np.abs(e))),
                     "p95_abs_err_pct": float(100 * np.quantile(np.abs(e), 0.95))})
    return pd.DataFrame(rows)
