"""Fig 14: SHAP feature importance of the final regressor trained on real + virtual rows.

TreeExplainer for tree ensembles (exact, fast); KernelExplainer (k-means background) otherwise.
Source: Lundberg & Lee, "A unified approach to interpreting model predictions", NeurIPS 2017.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from vaeok.report.figures import display


@dataclass
class ShapResult:
    """SHAP values of the explained rows and the mean-|SHAP| importance table."""

    values: np.ndarray
    X: np.ndarray
    features: tuple[str, ...]
    importance: pd.DataFrame
    explainer: str


def explain(model, X_background: np.ndarray, X_explain: np.ndarray, features: Sequence[str],
            seed: int = 0) -> ShapResult:
    """SHAP values of `model` at X_explain; importance = mean |SHAP| per feature (descending)."""
    import shap

    values: np.ndarray | None = None
    kind = "tree"
    try:
        values = np.asarray(shap.TreeExplainer(model).shap_values(X_explain))
    except Exception:  # not a supported tree model (pipelines, SVR, MLP, ...)
        kind = "kernel"
    if values is None:
        background = shap.kmeans(X_background, min(10, len(X_background)))
        explainer = shap.KernelExplainer(model.predict, background, seed=seed)
        values = np.asarray(explainer.shap_values(X_explain, nsamples=200, silent=True))
    mean_abs = np.abs(values).mean(axis=0)
    importance = (pd.DataFrame({"feature": list(features), "mean_abs_shap": mean_abs,
                                "mean_shap": values.mean(axis=0)})
                  .sort_values("mean_abs_shap", ascending=False).reset_index(drop=True))
    importance["rank"] = np.arange(1, len(importance) + 1)
    return ShapResult(values, X_explain, tuple(features), importance, kind)


def bar_plot(res: ShapResult, target: str, title: str) -> Figure:
    """Fig 14A: mean |SHAP| per feature, most important on top."""
    imp = res.importance.iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(imp) + 1.8))
    ax.barh([display(f) for f in imp.feature], imp.mean_abs_shap, color="tab:blue")
    for y, v in enumerate(imp.mean_abs_shap):
        ax.text(v, y, f" {v:.1f}", va="center", fontsize=9)
    ax.set_xlabel(f"mean |SHAP value| (impact on predicted {display(target)})")
    ax.set_title(title)
    ax.margins(x=0.15)
    fig.tight_layout()
    return fig


def beeswarm_plot(res: ShapResult, target: str, title: str) -> Figure:
    """Fig 14B: SHAP summary (beeswarm); colour = feature value (red = high)."""
    import shap

    fig = plt.figure(figsize=(8, 0.6 * len(res.features) + 2.2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # shap seeds numpy's global RNG for jitter
        shap.summary_plot(res.values, res.X, feature_names=[display(f) for f in res.features], show=False,
                          plot_size=None)
    ax = plt.gca()
    ax.set_xlabel(f"SHAP value (impact on predicted {display(target)})")
    ax.set_title(title)
    fig = plt.gcf()
    fig.tight_layout()
    return fig
