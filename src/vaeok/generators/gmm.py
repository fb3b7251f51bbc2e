"""GMM-VSG: virtual samples drawn from a Gaussian mixture fitted to features + target jointly.

Source: Shen L, Qian Q. "A virtual sample generation algorithm supporting machine learning with a
small-sample dataset: a case study for rubber materials." Comput Mater Sci 2022;211:111475
(reference [15] of Hu et al. 2024). The mixture is fitted on the standardised [X, y] rows of one
fold; the number of components is chosen by the Bayesian information criterion (BIC); virtual
rows (features and label) are sampled from the fitted mixture and mapped back to original units.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from vaeok.core.errors import UserError
from vaeok.generators.base import PlainGenerator, TrainSet, VirtualSet

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class GMMGenerator(PlainGenerator):
    """Gaussian-mixture virtual sample generator (labels come from the mixture itself)."""

    def __init__(self, name: str = "gmm_vsg", n_virtual: int = 1000, max_components: int = 8,
                 covariance_type: str = "full", reg_covar: float = 1e-4, n_init: int = 3) -> None:
        if max_components < 1:
            raise UserError(f"generator.max_components must be >= 1, got {max_components}")
        if covariance_type not in COVARIANCE_TYPES:
            raise UserError(f"generator.covariance_type must be one of {COVARIANCE_TYPES}, got '{covariance_type}'")
        self.name = name
        self.n_virtual = int(n_virtual)
        self.max_components = int(max_components)
        self.covariance_type = covariance_type
        self.reg_covar = float(reg_covar)
        self.n_init = int(n_init)
        self.chosen_components_: list[int] = []

    def fit_one(self, train: TrainSet, seed: int) -> tuple[GaussianMixture, np.ndarray, np.ndarray]:
        """Fit mixtures with 1..max_components components on standardised [X, y]; keep the lowest BIC."""
        Z = np.column_stack([train.X, train.y]).astype(float)
        mean, scale = Z.mean(axis=0), Z.std(axis=0)
        scale[scale == 0] = 1.0
        Zs = (Z - mean) / scale
        # a full covariance per component needs more rows than parameters; keep it identifiable
        upper = max(1, min(self.max_components, len(Z) // (Z.shape[1] + 1)))
        best: GaussianMixture | None = None
        best_bic = np.inf
        # one BLAS/OpenMP thread: on tiny matrices thread start-up dominates (measured ~10x faster)
        with threadpool_limits(limits=1):
            for k in range(1, upper + 1):
                gmm = GaussianMixture(k, covariance_type=self.covariance_type, reg_covar=self.reg_covar,
                                      n_init=self.n_init, random_state=seed).fit(Zs)
                bic = gmm.bic(Zs)
                if bic < best_bic:
                    best, best_bic = gmm, bic
        assert best is not None
        return best, mean, scale

    def generate(self, train_sets: Sequence[TrainSet], seed: int) -> list[VirtualSet]:
        """One mixture per training set; n_virtual shuffled draws (features and label) each."""
        out: list[VirtualSet] = []
        self.chosen_components_ = []
        for i, train in enumerate(train_sets):
            d = train.X.shape[1]
            if self.n_virtual == 0:
                out.append(VirtualSet(np.zeros((0, d)), np.zeros(0)))
                continue
            fold_seed = int(np.random.default_rng([seed, i]).integers(2**31 - 1))
            gmm, mean, scale = self.fit_one(train, fold_seed)
            self.chosen_components_.append(int(gmm.n_components))
            gmm.random_state = fold_seed
            Z, _ = gmm.sample(self.n_virtual)
            # sample() returns rows grouped by component; shuffle so any prefix is an iid draw
            Z = Z[np.random.default_rng(fold_seed).permutation(len(Z))] * scale + mean
            out.append(VirtualSet(Z[:, :d], Z[:, d]))
        return out
