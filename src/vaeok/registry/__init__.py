"""The model registry: promote (select, refit, register, alias), the packaged pipeline, serving/predict."""
