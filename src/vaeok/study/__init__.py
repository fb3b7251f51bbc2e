"""Optuna studies: specs, samplers, the sweep loop, reference trials, selection evidence, reports, workers."""
