"""Outer holdout and inner cross-validation splits (fixed by seeds, so they can be logged)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import KFold, LeaveOneOut, RepeatedKFold, train_test_split


@dataclass(frozen=True)
class Fold:
    """One inner fold: indices into the development rows."""

    repeat: int
    index: int
    train: np.ndarray
    test: np.ndarray


def holdout_split(n: int, fraction: float, seed: int, min_rows: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Development and untouched-holdout row indices (sorted). The holdout is empty when fraction
    is 0 or when it would hold fewer than `min_rows` rows: a tiny holdout decides nothing (its R²
    swings by more than any difference between configs) and only takes rows from training."""
    idx = np.arange(n)
    if fraction <= 0 or math.ceil(fraction * n) < min_rows:
        return idx, np.zeros(0, dtype=int)
    dev, hold = train_test_split(idx, test_size=fraction, random_state=seed)
    return np.sort(dev), np.sort(hold)


def outer_split(n: int, evaluation: Any) -> tuple[np.ndarray, np.ndarray]:
    """`holdout_split` with an `evaluation` config's fraction, seed and minimum holdout size."""
    return holdout_split(n, evaluation.holdout_fraction, evaluation.holdout_seed,
                         int(evaluation.get("holdout_min_rows", 0) or 0))


def inner_folds(n: int, protocol: str, n_splits: int, n_repeats: int, loocv_below: int, seed: int) -> list[Fold]:
    """Repeated K-fold, or leave-one-out for protocol=loocv or n < loocv_below."""
    if protocol == "loocv" or n < loocv_below:
        splits = [(0, tr, te) for tr, te in LeaveOneOut().split(np.zeros(n))]
        return [Fold(0, i, tr, te) for i, (_, tr, te) in enumerate(splits)]
    n_splits = min(n_splits, n)
    if n_repeats == 1:
        it = KFold(n_splits, shuffle=True, random_state=seed).split(np.zeros(n))
    else:
        it = RepeatedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed).split(np.zeros(n))
    return [Fold(i // n_splits, i % n_splits, tr, te) for i, (tr, te) in enumerate(it)]
