"""Data sets: the embedded surrogate, the CSV reader, holdout and cross-validation splits."""
