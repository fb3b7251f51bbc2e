"""Reference points of every study: the no-augmentation baseline and the paper's Table-1 config.

A study is only useful if it says whether augmentation helped. Each new study therefore gets

- ``baseline``: ``generator=none`` with the same regressor and data. If the spec searches
  ``generator`` (with ``none`` among its choices) it is enqueued as the study's first trial;
  otherwise it is evaluated once as a separate MLflow run under the study's parent run (never as
  an Optuna trial, whose parameters would then misinform the sampler).
- ``paper_default``: the config defaults (paper Table 1, VAE-OK) of every searched key, enqueued
  as a trial when they lie inside the search space (not for grid / one-at-a-time designs, whose
  points are fixed).

The parent run records ``baseline/<m>``, ``paper_default/<m>``, ``best/<m>`` and
``gain_over_baseline`` (positive = better than no augmentation, whatever the direction).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from vaeok.config.compose import config_groups, load_config
from vaeok.config.overrides import override
from vaeok.study.spec import Param, StudySpec
from vaeok.tracking.tags import ROLE_TAG

ROLE = ROLE_TAG  # trial user attribute and MLflow tag
BASELINE, PAPER_DEFAULT = "baseline", "paper_default"
BASELINE_ATTR = "baseline"  # study user attribute holding a separately run baseline
NO_AUGMENTATION, PAPER_GENERATOR = "none", "vae_ok"


def _default(cfg: DictConfig, key: str, groups: set[str]) -> Any:
    """The config's value of a searched key (for a config group: the selected option's name)."""
    node = OmegaConf.select(cfg, key)
    if key in groups:
        return node.get("name") if isinstance(node, DictConfig) else None
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def contains(param: Param, value: Any) -> bool:
    """Whether `value` is a point of the parameter's distribution (choices, range and step)."""
    if param.kind == "categorical":
        return value in param.choices
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if not param.low <= value <= param.high:
        return False
    if param.step:
        k = (value - param.low) / param.step
        return abs(k - round(k)) < 1e-9
    return True


def point(spec: StudySpec, base_overrides: list[str], fixed: dict[str, Any]) -> dict[str, Any] | None:
    """Values of the ACTIVE searched keys for the config defaults with `fixed` group choices, or
    None when a value is not inside the search space (then it cannot be enqueued)."""
    groups = config_groups()
    cfg = load_config([*spec.overrides, *base_overrides, *(override(k, v) for k, v in fixed.items())])
    params: dict[str, Any] = {}
    for p in spec.space:
        if not p.active(params):
            continue
        value = fixed[p.key] if p.key in fixed else _default(cfg, p.key, groups)
        if not contains(p, value):
            return None
        params[p.key] = value
    return params


def searches_baseline(spec: StudySpec) -> bool:
    """True if the baseline is a point of the space (`generator` searched with `none` a choice)."""
    gen = next((p for p in spec.space if p.key == "generator"), None)
    return gen is not None and NO_AUGMENTATION in gen.choices and not spec.multi_objective


def baseline_points(spec: StudySpec) -> list[tuple[str, dict[str, Any]]]:
    """(role, fixed choices) of every no-augmentation reference: one per regressor the space
    offers without augmentation (`regressor: categorical [...] if generator=none`), else one with
    the config's regressor. The first is role `baseline`, the others `baseline_<regressor>`."""
    reg = next((p for p in spec.space if p.key == "regressor"), None)
    fixed = {"generator": NO_AUGMENTATION}
    if reg is None or reg.kind != "categorical" or not reg.active(fixed):
        return [(BASELINE, fixed)]
    return [(BASELINE if i == 0 else f"{BASELINE}_{r}", {**fixed, "regressor": r}) for i, r in enumerate(reg.choices)]


def is_baseline(role: str | None) -> bool:
    """True for the role of a no-augmentation reference (`baseline`, `baseline_gpr`, ...)."""
    return bool(role) and (role == BASELINE or role.startswith(f"{BASELINE}_"))


def enqueue_references(study: optuna.Study, spec: StudySpec, base_overrides: list[str]) -> list[str]:
    """Enqueue the baseline (if searchable) and the paper default as the first trials of a new
    study; return notes about references that could not be enqueued."""
    notes: list[str] = []
    if spec.sampler["type"] in ("grid", "one_at_a_time"):
        return ["fixed design: no reference trials enqueued"]
    if searches_baseline(spec):
        for role, fixed in baseline_points(spec):
            base_point = point(spec, base_overrides, fixed)
            if base_point is None:
                notes.append(f"{role}: the config defaults lie outside the search space; not enqueued")
            else:
                study.enqueue_trial(base_point, user_attrs={ROLE: role})
    gen = next((p for p in spec.space if p.key == "generator"), None)
    fixed = {"generator": PAPER_GENERATOR} if gen is not None and PAPER_GENERATOR in gen.choices else {}
    paper = point(spec, base_overrides, fixed)
    if paper is None:
        notes.append("paper_default: the config defaults lie outside the search space; not enqueued")
    else:
        study.enqueue_trial(paper, user_attrs={ROLE: PAPER_DEFAULT})
    return notes


def baseline_overrides(spec: StudySpec, base_overrides: list[str]) -> list[str]:
    """Overrides of the separately run baseline: the study's base config without augmentation."""
    return [*spec.overrides, *base_overrides, f"generator={NO_AUGMENTATION}"]


@dataclass
class Reference:
    """A reference result of a study: where it came from and its objective value(s)."""

    role: str
    values: list[float]
    trial: int | None = None  # None: a separate run (baseline of a study that does not search it)
    mlflow_run_id: str | None = None


def references(study: optuna.Study, spec: StudySpec) -> dict[str, Reference]:
    """The study's completed baseline and paper-default results (by role)."""
    out: dict[str, Reference] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        role = t.user_attrs.get(ROLE)
        if (is_baseline(role) or role == PAPER_DEFAULT) and role not in out:
            out[role] = Reference(role, list(t.values), t.number, t.user_attrs.get("mlflow_run_id"))
    sep = study.user_attrs.get(BASELINE_ATTR)
    if BASELINE not in out and isinstance(sep, dict) and sep.get("metrics"):
        metrics = sep["metrics"]
        if all(m in metrics for m in spec.metrics[:1]):
            values = [metrics.get(m, float("nan")) for m in spec.metrics]
            out[BASELINE] = Reference(BASELINE, values, None, sep.get("mlflow_run_id"))
    return out


def summary_metrics(study: optuna.Study, spec: StudySpec, best: FrozenTrial | None) -> dict[str, float]:
    """`baseline/<m>`, `paper_default/<m>`, `best/<m>` and `gain_over_baseline` for the parent run."""
    name = spec.metrics[0].split("/")[-1]
    sign = 1.0 if spec.directions[0] == "maximize" else -1.0
    out: dict[str, float] = {}
    refs = references(study, spec)
    for role, ref in refs.items():
        out[f"{role}/{name}"] = float(ref.values[0])
    baselines = [float(r.values[0]) for role, r in refs.items() if is_baseline(role)]
    if baselines:
        out[f"best_baseline/{name}"] = sign * max(sign * v for v in baselines)
    if best is not None:
        out[f"best/{name}"] = float(best.values[0])
        if baselines:
            out["gain_over_baseline"] = sign * (float(best.values[0]) - out[f"best_baseline/{name}"])
    return out
