"""Figures logged with every run: VAE loss curves and predicted vs true."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure


def loss_curves(history: dict[str, np.ndarray]) -> Figure:
    """Per-sample VAE loss per epoch (mean over fold-VAEs, band = min..max over folds)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(1, len(history["loss"]) + 1)
    curves = (("loss", "total (recon + KLD)"), ("recon", "reconstruction (sum MSE)"), ("kld", "KL divergence"))
    for key, label in curves:
        h = history[key]
        ax.plot(epochs, h.mean(axis=1), label=label)
        ax.fill_between(epochs, h.min(axis=1), h.max(axis=1), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss per training sample (standardised units)")
    ax.set_title("VAE training loss (band: spread over fold models)")
    ax.legend()
    fig.tight_layout()
    return fig


def predicted_vs_true(pred: pd.DataFrame, target: str, title: str) -> Figure:
    """Pooled held-out predictions against true values with the y = x line."""
    fig, ax = plt.subplots(figsize=(5, 5))
    virtual = pred["is_virtual"].to_numpy() if "is_virtual" in pred else np.zeros(len(pred), bool)
    ax.scatter(pred.y_true[~virtual], pred.y_pred[~virtual], s=18, alpha=0.8, label="real held-out rows")
    if virtual.any():
        ax.scatter(pred.y_true[virtual], pred.y_pred[virtual], s=6, alpha=0.3,
                   label="virtual rows in test folds (leaky)")
    lo = float(min(pred.y_true.min(), pred.y_pred.min()))
    hi = float(max(pred.y_true.max(), pred.y_pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
    ax.set_xlabel(f"true {target}")
    ax.set_ylabel(f"predicted {target}")
    ax.set_title(textwrap.fill(title, 48), fontsize=9)  # run names are long: wrap, never cut
    ax.legend()
    fig.tight_layout()
    return fig
