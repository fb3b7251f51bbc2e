"""Regression metrics (paper Eqs. 9-12) and the KS distance between label distributions."""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, r2_score, root_mean_squared_error

METRICS = ("r2", "rmse", "mae", "mape")


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R2, RMSE, MAE and MAPE (in percent) of predictions."""
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "mape": float(100.0 * mean_absolute_percentage_error(y_true, y_pred)),
    }


def ks_statistic(real: np.ndarray, virtual: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value (nan if either side is empty)."""
    if len(real) == 0 or len(virtual) == 0:
        return float("nan"), float("nan")
    res = ks_2samp(real, virtual)
    return float(res.statistic), float(res.pvalue)
