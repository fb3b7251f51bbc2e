"""The typed config schema and its checks, Hydra composition, override strings, the `_target_` allowlist."""
