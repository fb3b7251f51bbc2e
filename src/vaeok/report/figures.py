"""Figures of `vaeok compare`, numbered after Hu et al. 2024 (Figs 4, 5, 7, 9, 10, 11, 12, 13).

Every function returns a matplotlib Figure with labelled axes and a legend; the caller saves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import gaussian_kde
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from vaeok.generators.base import VirtualSet

# Readable axis names for the embedded surrogate's columns (others are shown as they are).
DISPLAY_NAMES = {
    "omega": "ω (mass fraction phospholipids+proteins)",
    "eps_h": "ε_H (H-bond strength)",
    "eps_nh": "ε_NH (non-H-bond strength)",
    "stress_600": "stress at 600 % strain",
}
GENERATOR_LABELS = {
    "none": "no augmentation",
    "nni_smote": "NNI-SMOTE",
    "gmm_vsg": "GMM-VSG",
    "vae_vsg": "VAE-VSG",
    "vae_ok": "VAE-OK",
}
REAL_COLOR = "tab:red"
VIRTUAL_COLOR = "0.45"


def display(name: str) -> str:
    """Axis label of a column name."""
    return DISPLAY_NAMES.get(name, name)


def gen_label(name: str) -> str:
    """Legend label of a generator (variants like 'vae_ok+drop90' keep their suffix)."""
    base, _, suffix = name.partition("+")
    label = GENERATOR_LABELS.get(base, base)
    return f"{label} ({suffix})" if suffix else label


def r2_bars(tables: Mapping[str, pd.DataFrame]) -> Figure:
    """Fig 11: grouped bars of R² per regressor (groups) and generator (bars); one panel per
    protocol (e.g. 'honest', 'paper (leaky)')."""
    n = len(tables)
    fig, axes = plt.subplots(1, n, figsize=(7.5 * n, 4.8), squeeze=False, sharey=True)
    for ax, (title, table) in zip(axes[0], tables.items(), strict=True):
        gens, regs = list(table.index), list(table.columns)
        width = 0.8 / len(gens)
        x = np.arange(len(regs))
        for i, g in enumerate(gens):
            vals = table.loc[g].to_numpy(dtype=float)
            ax.bar(x + (i - (len(gens) - 1) / 2) * width, vals, width, label=gen_label(g))
        ax.set_xticks(x, [r.upper() for r in regs])
        ax.set_xlabel("regressor")
        ax.set_ylabel("pooled held-out R²")
        lo = float(np.nanmin(table.to_numpy(dtype=float)))
        ax.set_ylim(min(0.0, lo - 0.05) if lo < 0.5 else max(0.0, lo - 0.1), 1.0)
        ax.set_title(f"R² by generator and regressor: {title}")
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(title="generator", fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def sample_count_curves(curve: pd.DataFrame, baseline: Mapping[str, float]) -> Figure:
    """Fig 12: honest R² against the number of virtual samples per generator, one panel per
    regressor; the dashed line is the regressor without augmentation (0 virtual samples)."""
    regs = list(dict.fromkeys(curve.regressor))
    fig, axes = plt.subplots(1, len(regs), figsize=(6 * len(regs), 4.5), squeeze=False)
    for ax, reg in zip(axes[0], regs, strict=True):
        sub = curve[curve.regressor == reg]
        for gen, g in sub.groupby("generator", sort=False):
            g = g.sort_values("n_virtual")
            ax.plot(g.n_virtual, g.r2, marker="o", label=gen_label(gen))
        if reg in baseline:
            ax.axhline(baseline[reg], color="k", ls="--", lw=1, label="no augmentation")
        ax.set_xlabel("number of virtual samples per fold")
        ax.set_ylabel("pooled held-out R² (honest)")
        ax.set_title(f"{reg.upper()}: R² vs number of virtual samples")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def predicted_vs_true_grid(preds: Mapping[str, pd.DataFrame], target: str, title: str) -> Figure:
    """Fig 13: pooled held-out predictions vs true values, one panel per regressor."""
    n = len(preds)
    cols = min(n, 3)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.4 * rows), squeeze=False)
    all_vals = np.concatenate([np.r_[p.y_true, p.y_pred] for p in preds.values()])
    lo, hi = float(all_vals.min()), float(all_vals.max())
    pad = 0.03 * (hi - lo)
    for ax, (reg, p) in zip(axes.flat, preds.items(), strict=False):
        virtual = p["is_virtual"].to_numpy(bool) if "is_virtual" in p else np.zeros(len(p), bool)
        r2 = 1 - np.sum((p.y_true - p.y_pred) ** 2) / np.sum((p.y_true - p.y_true.mean()) ** 2)
        ax.scatter(p.y_true[~virtual], p.y_pred[~virtual], s=16, alpha=0.8, label="real held-out rows")
        if virtual.any():
            ax.scatter(p.y_true[virtual], p.y_pred[virtual], s=5, alpha=0.3, label="virtual rows in test folds")
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1, label="y = x")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_title(f"{reg.upper()}  (R² = {r2:.3f})")
        ax.set_xlabel(f"true {display(target)}")
        ax.set_ylabel(f"predicted {display(target)}")
        ax.legend(fontsize=8, loc="upper left")
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def label_distributions(real_y: np.ndarray, virtual: Mapping[str, np.ndarray], target: str) -> Figure:
    """Fig 9B: histogram + KDE of real labels against each generator's virtual labels."""
    n = len(virtual)
    fig, axes = plt.subplots(1, n, figsize=(4.6 * n, 4), squeeze=False, sharey=True)
    vals = np.concatenate([real_y, *[v for v in virtual.values() if len(v)]])
    lo, hi = np.percentile(vals, [0.5, 99.5])
    pad = 0.1 * (hi - lo)
    grid = np.linspace(lo - pad, hi + pad, 300)
    bins = np.linspace(lo - pad, hi + pad, 30)
    for ax, (gen, vy) in zip(axes[0], virtual.items(), strict=True):
        ax.hist(real_y, bins=bins, density=True, alpha=0.35, color=REAL_COLOR, label=f"real (n={len(real_y)})")
        ax.plot(grid, gaussian_kde(real_y)(grid), color=REAL_COLOR)
        if len(vy) > 1 and np.ptp(vy) > 0:
            ax.hist(vy, bins=bins, density=True, alpha=0.35, color=VIRTUAL_COLOR, label=f"virtual (n={len(vy)})")
            ax.plot(grid, gaussian_kde(vy)(grid), color=VIRTUAL_COLOR)
        ax.set_title(gen_label(gen))
        ax.set_xlabel(display(target))
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density (histogram and KDE)")
    fig.suptitle("Label distributions: real vs virtual (generated from all development rows)")
    fig.tight_layout()
    return fig


def _pca(real_X: np.ndarray) -> tuple[StandardScaler, PCA]:
    scaler = StandardScaler().fit(real_X)
    return scaler, PCA(n_components=min(2, real_X.shape[1])).fit(scaler.transform(real_X))


def _scatter3d_axes(real_X: np.ndarray, real_y: np.ndarray, features: Sequence[str], target: str) -> tuple:
    """Coordinates and axis names of the 3-D panel: 3 features, or 2 features + target."""
    if real_X.shape[1] >= 3:
        return [0, 1, 2], [display(f) for f in features[:3]]
    return [0, 1, None], [display(features[0]), display(features[1]), display(target)]


def feature_scatter(real_X: np.ndarray, real_y: np.ndarray, features: Sequence[str], target: str,
                    virtual: VirtualSet | None = None, title: str = "") -> Figure:
    """Fig 4 (virtual=None: real rows coloured by the target) and Fig 5 (real vs virtual):
    3-D scatter of the first three features (or two features + target) and a 2-D PCA view."""
    fig = plt.figure(figsize=(14, 5.6))
    fig.subplots_adjust(wspace=0.45)
    ax3 = fig.add_subplot(1, 2, 1, projection="3d")
    ax2 = fig.add_subplot(1, 2, 2)
    cols, names = _scatter3d_axes(real_X, real_y, features, target)

    def coords(X: np.ndarray, y: np.ndarray | None) -> list[np.ndarray]:
        return [X[:, c] if c is not None else (y if y is not None else np.full(len(X), np.nan)) for c in cols]

    scaler, pca = _pca(real_X)
    pr = pca.transform(scaler.transform(real_X))
    if pr.shape[1] == 1:
        pr = np.column_stack([pr, np.zeros(len(pr))])
    if virtual is None:
        ax3.scatter(*coords(real_X, real_y), c=real_y, cmap="viridis", s=20)
        sc = ax2.scatter(pr[:, 0], pr[:, 1], c=real_y, cmap="viridis", s=24)
        cb = fig.colorbar(sc, ax=ax2, shrink=0.9)
        cb.set_label(display(target))
    else:
        pv = pca.transform(scaler.transform(virtual.X))
        if pv.shape[1] == 1:
            pv = np.column_stack([pv, np.zeros(len(pv))])
        vlabel = f"virtual (n={len(virtual.X)})"
        ax3.scatter(*coords(virtual.X, virtual.y), s=3, alpha=0.35, color=VIRTUAL_COLOR, label=vlabel)
        ax3.scatter(*coords(real_X, real_y), s=22, facecolors="none", edgecolors=REAL_COLOR,
                    label=f"real (n={len(real_X)})")
        ax2.scatter(pv[:, 0], pv[:, 1], s=3, alpha=0.35, color=VIRTUAL_COLOR, label=vlabel)
        ax2.scatter(pr[:, 0], pr[:, 1], s=26, facecolors="none", edgecolors=REAL_COLOR, label=f"real (n={len(real_X)})")
        ax2.legend(fontsize=8, loc="best")
        ax3.legend(fontsize=8, loc="upper left")
    ax3.set_xlabel(names[0], fontsize=8)
    ax3.set_ylabel(names[1], fontsize=8)
    ax3.set_zlabel(names[2], fontsize=8)
    ax3.set_title("feature space (3-D)")
    ev = pca.explained_variance_ratio_
    ax2.set_xlabel(f"PC1 ({100 * ev[0]:.0f} % of variance, standardised features)")
    ax2.set_ylabel(f"PC2 ({100 * ev[1]:.0f} % of variance)" if len(ev) > 1 else "PC2 (n/a)")
    ax2.set_title("PCA projection (fitted on real rows)")
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def count_panels(real_X: np.ndarray, virtual: VirtualSet, counts: Sequence[int], title: str) -> Figure:
    """Fig 5 A-D: PCA view of real rows (red circles) and the first n virtual rows for each count."""
    counts = [c for c in counts if 0 < c <= len(virtual.X)] or [len(virtual.X)]
    fig, axes = plt.subplots(1, len(counts), figsize=(4.2 * len(counts), 4.2), squeeze=False, sharex=True,
                             sharey=True)
    scaler, pca = _pca(real_X)
    pr = pca.transform(scaler.transform(real_X))
    pv = pca.transform(scaler.transform(virtual.X))
    if pr.shape[1] == 1:
        pr, pv = np.column_stack([pr, np.zeros(len(pr))]), np.column_stack([pv, np.zeros(len(pv))])
    for ax, n in zip(axes[0], counts, strict=True):
        ax.scatter(pv[:n, 0], pv[:n, 1], s=4, alpha=0.5, color=VIRTUAL_COLOR, label=f"virtual (n={n})")
        ax.scatter(pr[:, 0], pr[:, 1], s=22, facecolors="none", edgecolors=REAL_COLOR, label="real")
        ax.set_title(f"{n} virtual samples")
        ax.set_xlabel("PC1 (standardised features)")
        ax.legend(fontsize=8, loc="upper right")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("PC2")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def label_fidelity(oracle: np.ndarray, labels: np.ndarray, errors: Mapping[str, np.ndarray], tol: float,
                   focus: str) -> Figure:
    """Fig 10 analogue: virtual labels of the focus generator against the noise-free oracle
    (sorted, with the ±tol band), and the distribution of relative label errors per generator."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.6))
    order = np.argsort(oracle)
    idx = np.arange(1, len(order) + 1)
    o, lab = oracle[order], labels[order]
    ax1.plot(idx, o, "k-", lw=1.2, label="oracle (noise-free surrogate; the paper's MD check)")
    ax1.fill_between(idx, o * (1 - tol), o * (1 + tol), color="0.8", alpha=0.6, label=f"±{100 * tol:.0f} % band")
    inside = np.abs(lab - o) <= tol * np.abs(o)
    ax1.scatter(idx[inside], lab[inside], s=22, color="tab:blue", label="virtual label, inside band", zorder=3)
    ax1.scatter(idx[~inside], lab[~inside], s=28, marker="x", color="tab:red", label="virtual label, outside band",
                zorder=3)
    ax1.set_xlabel("virtual sample (sorted by oracle value)")
    ax1.set_ylabel("stress at 600 % strain")
    ax1.set_title(f"{gen_label(focus)}: {len(o)} random virtual samples, {inside.mean():.0%} within ±{100 * tol:.0f} %")
    ax1.legend(fontsize=8)
    names = list(errors)
    data = [100 * errors[n] for n in names]
    ax2.boxplot(data, showfliers=False)
    ax2.set_xticks(np.arange(1, len(names) + 1), [gen_label(n) for n in names], rotation=20, fontsize=8)
    ax2.axhspan(-100 * tol, 100 * tol, color="0.85", alpha=0.6, label=f"±{100 * tol:.0f} %")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("label error vs oracle (%)")
    ax2.set_title("relative label error of all virtual samples (box: quartiles, whiskers: 1.5 IQR)")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(fig: Figure, path) -> None:
    """Save a figure as PNG (150 dpi) and close it."""
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
