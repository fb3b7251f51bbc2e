"""Regressors usable as the regressor group's `_target_`: GPR and ordinary kriging used directly."""

from vaeok.regressors.gpr import GPRRegressor
from vaeok.regressors.kriging import KrigingRegressor

__all__ = ["GPRRegressor", "KrigingRegressor"]
