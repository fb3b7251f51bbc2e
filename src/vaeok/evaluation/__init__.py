"""Scoring a config: per-fold generate -> label -> regress, pooled metrics, the Lightning callback, preflight."""
