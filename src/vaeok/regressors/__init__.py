"""Regressors of this project (scikit-learn estimators): GPR and ordinary kriging used as the model."""
