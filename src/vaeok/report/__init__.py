"""Reports of `vaeok compare`: generator x regressor tables, KS test, figures, SHAP, audits."""
