"""Optuna samplers and pruners of a study spec, built by `_target_` + Hydra `instantiate`.

A spec names them in short form (`sampler: {type: tpe, seed: 0, ...}`); each short name maps to
an Optuna class, and the remaining keys are that class's keyword arguments.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from vaeok.study.spec import StudySpec

SAMPLER_TARGETS = {
    "tpe": "optuna.samplers.TPESampler",
    "random": "optuna.samplers.RandomSampler",
    "grid": "optuna.samplers.GridSampler",
    "cmaes": "optuna.samplers.CmaEsSampler",
    "gp": "optuna.samplers.GPSampler",
    "nsgaii": "optuna.samplers.NSGAIISampler",
    "one_at_a_time": "optuna.samplers.RandomSampler",  # draws nothing: the design is enqueued
}
PRUNER_TARGETS = {
    "median": "optuna.pruners.MedianPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
    "none": "optuna.pruners.NopPruner",
}
# Short forms whose sampler is fixed by the design: spec options other than the seed do not apply.
_SEED_ONLY = ("random", "one_at_a_time")


def sampler_node(spec: StudySpec, seed_offset: int = 0) -> dict[str, Any]:
    """The spec's sampler as an instantiable node, seeded with spec seed + offset."""
    options = dict(spec.sampler)
    kind, seed = options.pop("type"), int(options.pop("seed", 0)) + seed_offset
    node: dict[str, Any] = {"_target_": SAMPLER_TARGETS[kind], "seed": seed}
    if kind == "grid":
        node["search_space"] = {p.key: p.grid() for p in spec.space}
    if kind not in _SEED_ONLY:
        node.update(options)
    return node


def pruner_node(spec: StudySpec) -> dict[str, Any]:
    """The spec's pruner as an instantiable node."""
    options = dict(spec.pruner)
    return {"_target_": PRUNER_TARGETS[options.pop("type")], **options}


def make_sampler(spec: StudySpec, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler (seed = spec seed + offset: distinct per worker and per session)."""
    import optuna

    from vaeok.config.targets import build

    with warnings.catch_warnings():  # TPE's `group` (conditional spaces) is marked experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return build(sampler_node(spec, seed_offset), "sampler", _convert_="all")


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    """The spec's pruner."""
    from vaeok.config.targets import build

    return build(pruner_node(spec), "pruner", _convert_="all")
