"""NNI-SMOTE: nearest-neighbour interpolation of features and labels (SMOTE for regression).

Source: Li D, Liu J, Liu J. "NNI-SMOTE-XGBoost: A novel small sample analysis method for
properties prediction of polymer materials." Macromol Theory Simul 2021;30:2100010 (reference [23]
of Hu et al. 2024), after Chawla et al., "SMOTE", JAIR 2002. Each virtual row picks a random
training row x_i and one of its k nearest neighbours x_j (Euclidean distance in features
standardised on the fold's training rows), draws lam ~ U(0, 1) and sets
x = x_i + lam (x_j - x_i), y = y_i + lam (y_j - y_i): the label is interpolated with the same weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.neighbors import NearestNeighbors

from vaeok.core.errors import UserError
from vaeok.generators.base import PlainGenerator, TrainSet, VirtualSet


class NNISmoteGenerator(PlainGenerator):
    """SMOTE-style interpolation between a row and one of its k nearest neighbours."""

    def __init__(self, name: str = "nni_smote", n_virtual: int = 1000, k_neighbors: int = 5) -> None:
        if k_neighbors < 1:
            raise UserError(f"generator.k_neighbors must be >= 1, got {k_neighbors}")
        self.name = name
        self.n_virtual = int(n_virtual)
        self.k_neighbors = int(k_neighbors)

    def generate(self, train_sets: Sequence[TrainSet], seed: int) -> list[VirtualSet]:
        """n_virtual interpolated rows (features and label) per training set."""
        out: list[VirtualSet] = []
        for i, train in enumerate(train_sets):
            X, y = np.asarray(train.X, float), np.asarray(train.y, float)
            n, d = X.shape
            if self.n_virtual == 0 or n < 2:
                out.append(VirtualSet(np.zeros((0, d)), np.zeros(0)))
                continue
            rng = np.random.default_rng([seed, i])
            scale = X.std(axis=0)
            scale[scale == 0] = 1.0
            Xs = (X - X.mean(axis=0)) / scale
            k = min(self.k_neighbors, n - 1)
            _, nbrs = NearestNeighbors(n_neighbors=k + 1).fit(Xs).kneighbors(Xs)
            nbrs = nbrs[:, 1:]  # drop the row itself
            base = rng.integers(0, n, self.n_virtual)
            other = nbrs[base, rng.integers(0, k, self.n_virtual)]
            lam = rng.random(self.n_virtual)
            Xv = X[base] + lam[:, None] * (X[other] - X[base])
            yv = y[base] + lam * (y[other] - y[base])
            out.append(VirtualSet(Xv, yv))
        return out
