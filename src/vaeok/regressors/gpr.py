"""Gaussian-process regression on standardised features (ARD Matern 5/2 + white noise)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted


class GPRRegressor(RegressorMixin, BaseEstimator):
    """Standardise X, then a GP with ConstantKernel * Matern(nu, ARD length scales) + WhiteKernel.

    normalize_y=True; the ARD length-scale vector is sized to the number of features at fit time.
    `n_restarts_optimizer` extra optimiser starts (drawn from `random_state`) guard against the
    noise-only local optimum that tiny data sets often have.
    """

    def __init__(self, nu: float = 2.5, n_restarts_optimizer: int = 3, length_scale: float = 1.0,
                 length_scale_bounds: tuple[float, float] = (1e-2, 1e3),
                 noise_level: float = 0.1, noise_level_bounds: tuple[float, float] = (1e-6, 1.0),
                 random_state: int | None = 0) -> None:
        self.nu = nu
        self.n_restarts_optimizer = n_restarts_optimizer
        self.length_scale = length_scale
        self.length_scale_bounds = length_scale_bounds
        self.noise_level = noise_level
        self.noise_level_bounds = noise_level_bounds
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> GPRRegressor:
        """Fit the scaler and the GP (kernel hyperparameters by maximum marginal likelihood)."""
        X = np.asarray(X, dtype=float)
        y = np.asarray(y, dtype=float).reshape(-1)
        if X.ndim != 2 or len(X) != len(y) or len(y) < 2:
            raise ValueError(f"GPRRegressor needs a 2-D X with one row per label (>= 2), got X {X.shape}, y {y.shape}")
        self.scaler_ = StandardScaler().fit(X)
        kernel = (ConstantKernel(1.0, (1e-3, 1e3))
                  * Matern(length_scale=np.full(X.shape[1], float(self.length_scale)),
                           length_scale_bounds=tuple(self.length_scale_bounds), nu=self.nu)
                  + WhiteKernel(self.noise_level, tuple(self.noise_level_bounds)))
        self.gp_ = GaussianProcessRegressor(kernel=kernel, normalize_y=True,
                                            n_restarts_optimizer=self.n_restarts_optimizer,
                                            random_state=self.random_state)
        with warnings.catch_warnings():  # bound hits are expected on tiny data (a flat ARD direction)
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.gp_.fit(self.scaler_.transform(X), y)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):
        """Posterior mean at X (and the predictive standard deviation, noise included, if return_std)."""
        check_is_fitted(self, "gp_")
        Z = self.scaler_.transform(np.asarray(X, dtype=float))
        return self.gp_.predict(Z, return_std=return_std)
