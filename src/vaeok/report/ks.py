"""Table 2: Kolmogorov-Smirnov test of virtual against real labels over repeated generations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from vaeok.config.targets import build
from vaeok.data.datasets import Dataset
from vaeok.evaluation.metrics import ks_statistic
from vaeok.evaluation.scoring import apply_variance_policy, make_labeler
from vaeok.generators.base import NoGenerator, TrainSet, VirtualSet


def ks_repeats(cfg: DictConfig, rows: Dataset, repeats: int) -> pd.DataFrame:
    """KS statistic and p-value (scipy.stats.ks_2samp) of `repeats` independent generate+label
    runs of cfg.generator on `rows` (the training rows) against those rows' real labels.

    Each repeat is an independent generator fit with its own random stream: VAE repeats are
    trained as one stacked batch (own initialisation, mini-batch order and latent draws each);
    GMM/SMOTE repeat i uses the seed sequence [seed, i]. Unlabelled virtual rows are labelled by
    kriging fitted on `rows` (one fit serves all repeats: it is deterministic given the rows).
    """
    generator = build(cfg.generator, "generator", _recursive_=False)
    if isinstance(generator, NoGenerator) or generator.n_virtual == 0:
        return pd.DataFrame(columns=["repeat", "ks", "p_value", "n_virtual"])
    train = TrainSet(rows.X, rows.y)
    sets = generator.generate([train] * repeats, cfg.seed)
    if any(v.y is None for v in sets):
        labeler = make_labeler(cfg).fit(train.X, train.y)
        y, std = labeler.predict(np.vstack([v.X for v in sets]), return_std=True)
        bounds = np.cumsum([0] + [len(v.X) for v in sets])
        sets = [VirtualSet(v.X, y[a:b], std[a:b]) for v, a, b in zip(sets, bounds[:-1], bounds[1:], strict=True)]
    out = []
    for i, v in enumerate(sets):
        v = apply_variance_policy(cfg, v)
        stat, p = ks_statistic(train.y, v.y)
        out.append({"repeat": i, "ks": stat, "p_value": p, "n_virtual": len(v.X)})
    return pd.DataFrame(out)


def ks_summary(per_generator: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Table 2 layout: per generator, mean/max/min of the KS statistic and p-value, plus the
    share of repeats with p > 0.05 (same distribution not rejected at the 5 % level)."""
    rows = []
    for gen, df in per_generator.items():
        if df.empty:
            continue
        for stat, fn in (("mean", np.mean), ("max", np.max), ("min", np.min)):
            rows.append({"generator": gen, "stat": stat, "ks": float(fn(df.ks)), "p_value": float(fn(df.p_value))})
        rows.append({"generator": gen, "stat": "share p>0.05", "ks": np.nan,
                     "p_value": float((df.p_value > 0.05).mean())})
    return pd.DataFrame(rows, columns=["generator", "stat", "ks", "p_value"])
