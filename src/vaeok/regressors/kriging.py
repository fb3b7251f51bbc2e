"""Ordinary kriging used directly as the regression model (no generator, no second regressor)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from vaeok.kriging import OrdinaryKrigingLabeler


class KrigingRegressor(RegressorMixin, BaseEstimator):
    """The project's `OrdinaryKrigingLabeler` (same settings as the labeler group) as an estimator."""

    def __init__(self, variogram: str = "auto",
                 candidates: tuple[str, ...] | list[str] = ("linear", "power", "gaussian", "spherical", "exponential"),
                 nugget: float | None = None, nugget_fraction: float | None = None, backend: str = "auto",
                 exact: bool = True, max_points: int | None = None, random_state: int = 0) -> None:
        self.variogram = variogram
        self.candidates = candidates
        self.nugget = nugget
        self.nugget_fraction = nugget_fraction
        self.backend = backend
        self.exact = exact
        self.max_points = max_points
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> KrigingRegressor:
        """Fit the variogram (chosen by leave-one-out when variogram=auto) on these rows."""
        X = np.asarray(X, dtype=float)
        self.labeler_ = OrdinaryKrigingLabeler(
            variogram=self.variogram, candidates=list(self.candidates), nugget=self.nugget,
            nugget_fraction=self.nugget_fraction, backend=self.backend, exact=self.exact,
            max_points=self.max_points, seed=self.random_state,
        ).fit(X, np.asarray(y, dtype=float).reshape(-1))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: np.ndarray, return_std: bool = False):
        """Kriged values at X (and the kriging standard deviation if return_std)."""
        check_is_fitted(self, "labeler_")
        return self.labeler_.predict(np.asarray(X, dtype=float), return_std=return_std)
