"""Promote a study's best trial to the MLflow Model Registry; reproduce logged runs from their config.

`promote` takes a trial of an Optuna study (the best one unless told otherwise), composes its
config (study.user_attrs["base_overrides"] + trial.params as Hydra overrides), refits the whole
pipeline on the development rows, scores it ONCE on the untouched outer holdout (fixed by
evaluation.holdout_fraction/holdout_seed, never seen by run/sweep), logs a promote run with the
packaged model, registers a model version and moves alias ``champion`` only if the new version
beats the current champion on that holdout (else alias ``challenger``).

Baseline gate: the same holdout also scores the no-augmentation baseline (the candidate's config
with ``generator=none``, refitted on the same development rows). A candidate worse than that
baseline never becomes champion (it is registered as ``challenger``) unless
``allow_worse_than_baseline`` is set, which the version's tags record.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import yaml
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vaeok.config.compose import config_dir, load_config, overlay_root, to_yaml
from vaeok.config.overrides import override
from vaeok.config.schema import Config, validate_config
from vaeok.config.targets import check_container_strings, check_overrides
from vaeok.core.errors import UserError, message
from vaeok.core.paths import safe_name
from vaeok.core.redact import redact_text, redact_url
from vaeok.core.runtime import configure_runtime
from vaeok.data.datasets import Dataset
from vaeok.data.splits import outer_split
from vaeok.evaluation.metrics import METRICS, regression_metrics
from vaeok.evaluation.preflight import load_checked_dataset
from vaeok.evaluation.scoring import development_rows
from vaeok.registry.packaged import EnsemblePipeline, FittedPipeline, fit_pipeline, log_pipeline
from vaeok.registry.serving import predict  # noqa: F401  (re-exported; lives there: imports only what predicting needs)
from vaeok.study import baseline as bl
from vaeok.study.evidence import DEFAULT_RULE, RULES, Evidence, decide, summary_metrics
from vaeok.study.report import top_trials
from vaeok.study.sweep import DEFAULT_STORAGE
from vaeok.tracking import runs as tracking
from vaeok.tracking.tags import PROMOTE_TAG, STUDY_TAG, TRIAL_TAG

CHAMPION = "champion"
CHALLENGER = "challenger"
GATE_PASSED, GATE_REFUSED, GATE_OVERRIDDEN, GATE_IS_BASELINE = "passed", "refused", "overridden", "is_baseline"
HIGHER_IS_BETTER = {"r2": True, "rmse": False, "mae": False, "mape": False}
_ABSENT = object()


# --- studies and trials ----------------------------------------------------------------------

@dataclass
class TrialChoice:
    """One trial of a study and the Hydra overrides that rebuild its config."""

    study: str
    number: int
    values: list[float]
    params: dict[str, Any]
    base_overrides: list[str]
    mlflow_run_id: str | None

    @property
    def overrides(self) -> list[str]:
        """Base overrides of the study followed by the trial's sampled values."""
        return [*self.base_overrides, *(override(k, v) for k, v in self.params.items())]


def _check_storage(storage: str) -> None:
    """A missing SQLite file would be created empty by Optuna; report it instead."""
    if storage.startswith("sqlite:///"):
        path = Path(storage.removeprefix("sqlite:///"))
        if not path.is_file():
            raise UserError(f"no Optuna storage at {redact_url(storage)} (run `vaeok sweep` first or pass --storage)")


def open_study_readonly(study_name: str, storage: str = DEFAULT_STORAGE) -> Any:
    """An existing Optuna study; UserError if the storage or the study does not exist."""
    import optuna

    from vaeok.tracking.stores import open_optuna_storage

    _check_storage(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = tracking.absolute_sqlite_uri(storage, "--storage")
    rdb = open_optuna_storage(url, "--storage", engine_kwargs={"connect_args": {"timeout": 60}}
                              if url.startswith("sqlite") else {"pool_pre_ping": True})
    try:
        return optuna.load_study(study_name=study_name, storage=rdb)
    except KeyError:
        names = optuna.get_all_study_names(rdb)
        known = ", ".join(sorted(names)) if names else "none"
        raise UserError(f"unknown study '{study_name}' in {redact_url(storage)} (studies: {known})") from None
    except Exception as exc:  # bad URL, unreachable database, ...
        raise UserError(redact_text(f"cannot open Optuna storage {storage}: {message(exc)}")) from None


def trial_choice(study: Any, trial_number: int | None = None) -> TrialChoice:
    """The study's best completed trial (or trial `trial_number`); UserError if absent or empty."""
    from optuna.trial import TrialState

    study_name = study.study_name
    try:
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    except Exception as exc:  # values Optuna cannot read back (an edited or foreign database)
        raise UserError(f"study '{study_name}': cannot read its trials ({message(exc)}); no completed trial "
                        "with a finite value to promote") from None
    if not complete:
        raise UserError(f"study '{study_name}' has no completed trials")
    if not any(t.values and all(v is not None and math.isfinite(v) for v in t.values) for t in complete):
        raise UserError(f"study '{study_name}' has no completed trial with a finite value "
                        f"({len(complete)} completed trial(s), all with NaN, inf or missing values)")
    if trial_number is not None:
        match = [t for t in complete if t.number == trial_number]
        if not match:
            numbers = ", ".join(str(t.number) for t in complete)
            raise UserError(f"study '{study.study_name}': trial {trial_number} is not a completed trial "
                            f"(completed: {numbers})")
        trial = match[0]
    else:  # the study's best (multi-objective: the Pareto trial best on the first objective)
        top = top_trials(study, 1)
        if not top:
            raise UserError(f"study '{study_name}': every completed trial only repeats another one's parameters "
                            "(user attr duplicate_of); pass --trial N to promote one of them")
        trial = top[0]
    base = study.user_attrs.get("base_overrides") or []
    if not isinstance(base, list) or not all(isinstance(b, str) for b in base):
        raise UserError(f"study '{study.study_name}': user_attrs['base_overrides'] must be a list of strings")
    return TrialChoice(study.study_name, trial.number, list(trial.values or []), dict(trial.params), list(base),
                       trial.user_attrs.get("mlflow_run_id"))


def load_trial(study_name: str, storage: str = DEFAULT_STORAGE, trial_number: int | None = None) -> TrialChoice:
    """`trial_choice` of a study opened by name."""
    return trial_choice(open_study_readonly(study_name, storage), trial_number)


# --- hashes, splits, overlays ----------------------------------------------------------------

def config_hash(cfg: DictConfig) -> str:
    """Short hash of the resolved config without the tracking section (where results are logged)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    container.pop("tracking", None)
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:12]


def holdout_key(cfg: DictConfig, data: Dataset) -> str:
    """Identifies the outer holdout: data hash, fraction, seed and a hash of the row indices."""
    _, hold = outer_split(data.n_rows, cfg.evaluation)
    rows = hashlib.sha256(np.asarray(hold, dtype=np.int64).tobytes()).hexdigest()[:8]
    return f"{data.fingerprint()}:{cfg.evaluation.holdout_fraction:g}:{cfg.evaluation.holdout_seed}:{rows}"


def _group_choice(group: str, node: Any) -> str | None:
    """The conf/<group>/*.yaml option whose _target_ (and name, if any) match a resolved node."""
    if node is None or "_target_" not in node:
        return None
    for path in sorted((config_dir() / group).glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        if spec.get("_target_") == node.get("_target_") and spec.get("name", node.get("name")) == node.get("name"):
            return path.stem
    raise UserError(f"no conf/{group}/*.yaml matches {group}._target_={node.get('_target_')}")


def _restore_interpolations(body: dict[str, Any], strict: bool = False) -> None:
    """Put back the interpolations of the generator/regressor options (generator.model: ${model},
    regressor.random_state: ${seed}, ...) into a resolved config container, where the resolved value
    equals what the interpolation gives; so an override of model.hidden reaches the generator again.
    Without `strict`, an option that no conf/ file matches is left as it is."""
    probe = OmegaConf.create(body)
    for group in ("generator", "regressor"):
        try:
            choice = _group_choice(group, probe.get(group))
        except UserError:
            if strict:
                raise
            continue
        if choice is None:
            continue
        spec = yaml.safe_load((config_dir() / group / f"{choice}.yaml").read_text()) or {}
        for key, value in spec.items():
            if not (isinstance(value, str) and value.startswith("${") and key in body[group]):
                continue
            target = OmegaConf.select(probe, value[2:-1], default=_ABSENT)
            target = OmegaConf.to_container(target) if isinstance(target, DictConfig) else target
            if target is not _ABSENT and target == body[group][key]:
                body[group][key] = value


def overlay_yaml(cfg: DictConfig, header: str) -> str:
    """A `# @package _global_` experiment overlay that recomposes exactly `cfg` (tracking excluded)."""
    body = OmegaConf.to_container(cfg, resolve=True)
    body.pop("tracking", None)
    defaults = []
    for group in ("generator", "regressor"):
        choice = _group_choice(group, cfg[group])
        if choice is not None:
            defaults.append({f"override /{group}": choice})
    _restore_interpolations(body, strict=True)
    text = yaml.safe_dump({"defaults": defaults, **body}, sort_keys=False, default_flow_style=False)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return f"# @package _global_\n{comment}{text}"


def overlay_path(cfg: DictConfig, name: str) -> Path:
    """promoted_<name>.yaml in the experiment/ folder next to the store the config logs to."""
    safe_name(name, "promoted config name")
    return overlay_root(str(cfg.tracking.uri)) / "experiment" / f"promoted_{name}.yaml"


def stage_overlay(cfg: DictConfig, name: str) -> Path:
    """Check that an overlay recomposes exactly `cfg` (composed from a scratch copy) and that its
    place is writable (a hidden temporary file is written there); return that temporary file.
    UserError if either fails."""
    import tempfile

    path = overlay_path(cfg, name)
    text = overlay_yaml(cfg, "")
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "experiment").mkdir()
        (Path(scratch) / "experiment" / path.name).write_text(text)
        try:
            again = load_config([f"hydra.searchpath=[file://{scratch}]", f"experiment={path.stem}"])
        except UserError as exc:
            raise UserError(f"promote: the trial's config cannot be written as an experiment overlay ({exc})") from None
    if config_hash(again) != config_hash(cfg):
        raise UserError(f"promote: an overlay does not recompose the promoted config (hash {config_hash(again)} != "
                        f"{config_hash(cfg)}; is there an older {path.name} in conf/experiment?)")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text)
    except OSError as exc:
        raise UserError(f"promote: cannot write the overlay {path}: {exc.strerror or exc}") from None
    return tmp


def write_overlay(cfg: DictConfig, name: str, header: str, staged: Path | None = None) -> Path:
    """Write promoted_<name>.yaml next to the store (see `overlay_path`), checked to recompose `cfg`;
    the file appears whole (written to the staged temporary file, then renamed)."""
    staged = staged or stage_overlay(cfg, name)
    path = overlay_path(cfg, name)
    try:
        staged.write_text(overlay_yaml(cfg, header))
        os.replace(staged, path)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        raise UserError(f"promote: cannot write the overlay {path}: {exc.strerror or exc}") from None
    return path


# --- logged runs -------------------------------------------------------------------------------

def logged_config_yaml(run_id: str) -> str:
    """The config.yaml artifact of a logged run (in the currently configured MLflow store)."""
    try:
        MlflowClient().get_run(run_id)
    except MlflowException:
        raise UserError(f"run '{run_id}' not found in {redact_url(mlflow.get_tracking_uri())}") from None
    try:
        return mlflow.artifacts.load_text(f"runs:/{run_id}/config.yaml")
    except (MlflowException, OSError):
        raise UserError(f"run '{run_id}' has no config.yaml artifact") from None


def config_from_yaml(text: str, overrides: Sequence[str] = (), tracking_cfg: DictConfig | None = None) -> DictConfig:
    """A logged (resolved) config checked against the schema, with `key=value` overrides applied.

    Group switches (e.g. generator=none) need the config groups and are refused here.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        logged = yaml.safe_load(text)
        if not isinstance(logged, dict):
            raise UserError("logged config.yaml is not a mapping")
        check_container_strings(logged, "logged config.yaml")  # a tampered artifact must not read the env
        check_overrides(overrides)
        _restore_interpolations(logged)
        cfg = OmegaConf.merge(OmegaConf.structured(Config), OmegaConf.create(logged))
        if tracking_cfg is not None:
            cfg.tracking = tracking_cfg
        for ov in OverridesParser.create().parse_overrides(list(overrides)):
            key = ov.key_or_group
            if ov.is_delete() or ov.is_add() or OmegaConf.select(cfg, key, default=_ABSENT) is _ABSENT:
                raise UserError(f"--from-run accepts key=value overrides of existing keys only, got '{ov.input_line}'")
            if isinstance(OmegaConf.select(cfg, key), DictConfig) and isinstance(ov.value(), str):
                raise UserError(f"--from-run cannot switch config groups ('{ov.input_line}'); "
                                "use `vaeok run group=option ...` instead")
            OmegaConf.update(cfg, key, ov.value(), merge=True)
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException, ValueError, yaml.YAMLError) as exc:
        raise UserError(f"bad logged config or override: {message(exc)}") from None
    try:
        validate_config(cfg)
    except OmegaConfBaseException as exc:  # e.g. a key the logged config leaves missing
        raise UserError(f"bad logged config: {message(exc)}") from None
    return cfg


def config_from_run(run_id: str, overrides: Sequence[str] = ()) -> DictConfig:
    """Config of logged run `run_id` (from its config.yaml) plus `overrides`, tracking set to this project's store."""
    current = load_config()
    configure_runtime(current.torch_threads)
    tracking.setup(current.tracking)
    return config_from_yaml(logged_config_yaml(run_id), overrides, tracking_cfg=current.tracking)


# --- promote ----------------------------------------------------------------------------------

@dataclass
class PromoteResult:
    """What `promote` did."""

    model_name: str
    version: str
    alias: str
    metric: str
    trial: TrialChoice  # the largest member of the selection
    run_id: str
    overlay: Path
    config_hash: str
    selection: str  # 'trial 7 (paper_default)' or 'ensemble of trials ...'
    evidence: dict[str, float] = field(default_factory=dict)  # selection/* metrics (corrected R2, ...)
    holdout_metrics: dict[str, float] = field(default_factory=dict)  # empty: no holdout
    baseline_metrics: dict[str, float] = field(default_factory=dict)  # the baseline on the same holdout
    trained_on: str = "all rows"
    n_train: int = 0
    champion_before: str | None = None
    champion_value: float | None = None
    decided_by: str = ""
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    gate: str = GATE_PASSED

    @property
    def moved_champion(self) -> bool:
        """True if this version is now the champion."""
        return self.alias == CHAMPION

    def summary(self) -> list[str]:
        """Human-readable lines (printed by the CLI)."""
        ev = self.evidence
        lines = [f"study '{self.trial.study}': promoted {self.selection} (config {self.config_hash})"]
        if ev:
            lines.append(f"  corrected CV R2 {ev['selection/corrected_r2']:.4f} (95% CI "
                         f"{ev['selection/corrected_r2_ci_low']:.4f} .. {ev['selection/corrected_r2_ci_high']:.4f}); "
                         f"raw best trial CV R2 {ev['selection/raw_best_cv_r2']:.4f}")
            if "selection/p_better_than_baseline" in ev:
                p, d = ev["selection/p_better_than_baseline"], ev["selection/gain_over_baseline"]
                lo, hi = ev["selection/gain_ci_low"], ev["selection/gain_ci_high"]
                lines.append(f"  vs best no-augmentation reference: P(better) {p:.2f}, R2 difference {d:+.4f} "
                             f"(95% CI {lo:+.4f} .. {hi:+.4f})")
        m = self.holdout_metrics
        if m:
            lines.append(f"  holdout R2 {m['r2']:.4f}  RMSE {m['rmse']:.2f}  MAE {m['mae']:.2f}  MAPE {m['mape']:.2f}% "
                         f"on {int(m['n_rows'])} untouched rows")
            b = self.baseline_metrics.get(self.metric)
            if b is not None and self.gate != GATE_IS_BASELINE:
                lines.append(f"  baseline on the same holdout: {self.metric} {b:.4f}")
        else:
            lines.append("  no holdout (fewer rows than evaluation.holdout_min_rows would make one): decided on the "
                         "cross-validated evidence above")
        if self.gate == GATE_IS_BASELINE:
            lines.append("  the selection is a no-augmentation reference: augmentation did not earn its place here")
        if self.gate == GATE_OVERRIDDEN:
            lines.append("  warning: the selection is worse than the no-augmentation baseline; promoted anyway because "
                         "of --allow-worse-than-baseline (tag allow_worse_than_baseline=true)")
        if self.gate == GATE_REFUSED:
            lines.append(f"REFUSED: the selection is worse than the no-augmentation baseline ({self.decided_by}); "
                         f"'{CHAMPION}' does not move, version {self.version} gets '{CHALLENGER}' "
                         "(--allow-worse-than-baseline overrides)")
        elif self.champion_before is None:
            lines.append(f"no current champion of '{self.model_name}': version {self.version} becomes '{CHAMPION}'")
        else:
            better = "beats" if self.moved_champion else "does not beat"
            lines.append(f"{self.decided_by}: new version {self.version} {better} champion version "
                         f"{self.champion_before}"
                         + (f" ({self.champion_value:.4f})" if self.champion_value is not None else "") + " -> "
                         + (f"'{CHAMPION}' moves to version {self.version}" if self.moved_champion
                            else f"'{CHAMPION}' stays on version {self.champion_before}; "
                                 f"version {self.version} gets '{CHALLENGER}'"))
        lines.append(f"  refit on {self.trained_on} ({self.n_train} rows) before registering")
        lines.extend(self.notes)
        lines.append(f"registered models:/{self.model_name}/{self.version} (models:/{self.model_name}@{self.alias}); "
                     f"MLflow run {self.run_id}")
        lines.append(f"reproduce with: vaeok run experiment={self.overlay.stem}  ({self.overlay})")
        lines.append(f"done in {self.seconds:.1f} s")
        return lines


def _better(new: float, old: float, metric: str) -> bool:
    """Strictly better on `metric` (ties keep the champion)."""
    return new > old if HIGHER_IS_BETTER[metric] else new < old


def _champion(client: MlflowClient, name: str) -> Any | None:
    """The version holding alias `champion`, or None (no model or no alias yet)."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def _holdout_value(champion: Any, metric: str, key: str) -> float | None:
    """The champion's holdout metric when it was scored on THIS holdout and never trained on it."""
    tags = champion.tags or {}
    if tags.get("holdout_key") == key and tags.get("trained_on") == DEV_ROWS and f"holdout_{metric}" in tags:
        return float(tags[f"holdout_{metric}"])
    return None


def default_model_name(cfg: DictConfig, data: Dataset) -> str:
    """vaeok-<data set>-<digest of target and feature names>, the data set being the CSV's file stem
    (or the embedded set's name): promotes from different data never compete for one champion."""
    stem = Path(str(cfg.data.path)).stem if cfg.data.source == "csv" and cfg.data.path else str(cfg.data.name)
    digest = hashlib.sha256("|".join([data.target_name, *data.feature_names]).encode()).hexdigest()[:8]
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._") or "data"
    return safe_name(f"vaeok-{label[:80]}-{digest}", "model name (pass --model-name)")


def _fit_members(cfgs: list[DictConfig], rows: Dataset, weights: list[float]) -> FittedPipeline | EnsemblePipeline:
    """The selection fitted on `rows`: one pipeline, or the weighted ensemble of its members'."""
    fitted = [fit_pipeline(c, rows) for c in cfgs]
    return fitted[0] if len(fitted) == 1 else EnsemblePipeline(fitted, list(weights), fitted[0].config_yaml)


def _choose(study_obj: Any, trial: int | None, rule: str) -> tuple[Evidence | None, list[tuple[int, float]]]:
    """The evidence and the (trial number, weight) members to promote."""
    ev = decide(study_obj, rule if trial is None else f"fixed:{trial}")
    if ev is not None:
        return ev, [(c.number, w) for c, w in ev.members]
    if trial is not None:
        return None, [(trial, 1.0)]
    top = top_trials(study_obj, 1)
    if not top:
        raise UserError(f"study '{study_obj.study_name}' has no completed trials")
    return None, [(top[0].number, 1.0)]


DEV_ROWS, ALL_ROWS = "development rows", "all rows"


def promote(study: str, storage: str = DEFAULT_STORAGE, metric: str = "r2", model_name: str | None = None,
            trial: int | None = None, extra_overrides: Sequence[str] = (),
            allow_worse_than_baseline: bool = False, rule: str | None = None, refit_all: bool = True) -> PromoteResult:
    """Select from a study's evidence, refit, register, and move alias `champion` if it wins.

    The selection is the study's rule (spec `selection.rule`, or `rule`) applied to every trial's
    out-of-fold predictions; `trial` promotes that trial instead. With an outer holdout (data sets
    large enough for evaluation.holdout_min_rows) the selection and the best no-augmentation
    reference are also scored on it. The registered model is refit on all rows unless `refit_all`
    is False (then on the development rows only).
    """
    start = time.perf_counter()
    safe_name(study, "--study")  # names the promoted_<study>.yaml overlay: checked before any work
    if model_name is not None:
        safe_name(model_name, "--model-name")
    if metric not in HIGHER_IS_BETTER:
        raise UserError(f"--metric must be one of {', '.join(METRICS)}, got '{metric}'")
    st = open_study_readonly(study, storage)
    spec = st.user_attrs.get("spec") or {}
    rule = rule or (spec.get("selection") or {}).get("rule") or DEFAULT_RULE
    if rule not in RULES:
        raise UserError(f"--rule must be one of {', '.join(RULES)}, got '{rule}'")
    trial_choice(st, trial)  # readable trials with a finite value (and `trial` among them), else one line
    ev, members = _choose(st, trial, rule)
    choices = [trial_choice(st, n) for n, _ in members]
    weights = [w for _, w in members]
    cfgs = [load_config([*c.overrides, *extra_overrides]) for c in choices]
    cfg, choice = cfgs[0], choices[0]
    if not cfg.tracking.enabled:
        raise UserError("promote needs tracking.enabled=true (the registry lives in the MLflow store)")
    configure_runtime(cfg.torch_threads)
    data = load_checked_dataset(cfg)
    dev, holdout = development_rows(cfg, data)
    name = model_name or default_model_name(cfg, data)
    exp_id = tracking.setup(cfg.tracking)
    client = MlflowClient()
    notes: list[str] = []
    if choice.mlflow_run_id:
        _compare_with_logged(choice.mlflow_run_id, cfg, notes)
    evidence = summary_metrics(ev) if ev is not None else {}
    # the selection has no augmented member: a no-augmentation reference (or an ensemble of them)
    is_baseline = all(bl.is_baseline(st.trials[n].user_attrs.get(bl.ROLE)) or c.generator.name == "none"
                      for (n, _), c in zip(members, cfgs))

    hold_metrics: dict[str, float] = {}
    base_m: dict[str, float] = {}
    gate, decided_by = (GATE_IS_BASELINE if is_baseline else GATE_PASSED), ""
    pred = None
    if holdout.n_rows:  # scored once on rows no trial, fit or selection has seen
        pred = _fit_members(cfgs, dev, weights).predict_array(holdout.X)
        hold_metrics = {**regression_metrics(holdout.y, pred.iloc[:, 0].to_numpy()), "n_rows": float(holdout.n_rows)}
        if is_baseline:  # the selection is its own baseline
            base_m = {k: v for k, v in hold_metrics.items() if k != "n_rows"}
        else:
            base_overrides = (trial_choice(st, ev.baseline.number).overrides if ev is not None and
                              ev.baseline is not None else [*choice.overrides])
            base_m = baseline_holdout(cfg, [*base_overrides, *extra_overrides], dev, holdout)
            if _better(base_m[metric], hold_metrics[metric], metric):
                gate, decided_by = GATE_REFUSED, f"holdout {metric} {hold_metrics[metric]:.4f} vs {base_m[metric]:.4f}"
    elif ev is not None and ev.vs_baseline is not None and not is_baseline and ev.vs_baseline.p_a_better < 0.5:
        gate = GATE_REFUSED
        decided_by = f"cross-validated P(better than baseline) {ev.vs_baseline.p_a_better:.2f} < 0.5"
    if gate == GATE_REFUSED and allow_worse_than_baseline:
        gate = GATE_OVERRIDDEN

    rows = data if refit_all else dev
    trained_on = ALL_ROWS if refit_all or not holdout.n_rows else DEV_ROWS
    pipeline = _fit_members(cfgs, rows, weights)
    chash, key = config_hash(cfg), holdout_key(cfg, data)
    selection_text = ev.describe() if ev is not None else f"trial {choice.number}"

    from vaeok.experiment import log_datasets, run_params, run_tags

    tags = {**run_tags(cfg, data), STUDY_TAG: study, TRIAL_TAG: str(choice.number), PROMOTE_TAG: "true",
            "config_hash": chash, "holdout_key": key, "baseline_gate": gate, "selection": selection_text[:500],
            "selection_rule": rule if trial is None else "fixed", "trained_on": trained_on}
    # Registration, alias move and overlay succeed or fail together: both possible overlays are
    # checked (and their place written to) before the promote run starts; the version is registered
    # inside the run, and any failure after that deletes it and gives the alias back.
    staged = {n: stage_overlay(cfg, n) for n in (study, f"{study}_{CHALLENGER}")}
    try:
        with tracking.run(exp_id, f"promote-{study}-trial{choice.number}", tags) as active:
            run_id = active.info.run_id
            cv = {f"trial/value{i}" if i else "trial/value": v for i, v in enumerate(choice.values)}
            tracking.log_batch(run_id, metrics={**{f"holdout/{k}": v for k, v in hold_metrics.items()}, **cv,
                                                **evidence, **{f"baseline_holdout/{k}": v for k, v in base_m.items()},
                                                **_holdout_gain(hold_metrics, base_m, metric),
                                                "train/n_rows": float(rows.n_rows)},
                               params=run_params(cfg))
            # the rows the registered model is refit on, and the holdout it was scored on (if any)
            log_datasets(cfg, data, ("development", "holdout") if holdout.n_rows else ("development",))
            mlflow.log_text(to_yaml(cfg), "config.yaml")
            mlflow.log_dict({"rule": rule, "members": [{"trial": c.number, "weight": w, "overrides": c.overrides}
                                                       for c, w in zip(choices, weights)]}, "selection.json")
            if holdout.n_rows:
                _, hold_idx = outer_split(data.n_rows, cfg.evaluation)
                mlflow.log_dict({"holdout_fraction": cfg.evaluation.holdout_fraction,
                                 "holdout_seed": cfg.evaluation.holdout_seed, "data_hash": data.fingerprint(),
                                 "rows": [int(i) for i in hold_idx]}, "holdout_split.json")
                mlflow.log_text(pd.concat([pd.DataFrame(holdout.X, columns=list(holdout.feature_names)),
                                           pd.DataFrame({holdout.target_name: holdout.y}), pred], axis=1)
                                .to_csv(index=False), "holdout_predictions.csv")
            example = pd.DataFrame(rows.X[:5], columns=list(rows.feature_names))
            info = log_pipeline(pipeline, example)

            version_tags = {"study": study, "trial": str(choice.number), "config_hash": chash,
                            "data_hash": data.fingerprint(), "holdout_key": key, "run_id": run_id,
                            "selection": selection_text[:500], "trained_on": trained_on,
                            "n_train_rows": str(rows.n_rows),
                            "overrides": redact_text(" ".join(choice.overrides + list(extra_overrides)))[:5000],
                            **{f"holdout_{k}": f"{v:.6g}" for k, v in hold_metrics.items() if k != "n_rows"},
                            **{f"baseline_holdout_{k}": f"{v:.6g}" for k, v in base_m.items()},
                            **{k.replace("selection/", "cv_"): f"{v:.6g}" for k, v in evidence.items()},
                            "baseline_gate": gate,
                            "allow_worse_than_baseline": str(allow_worse_than_baseline).lower()}
            champion = _champion(client, name)
            champ_value, alias = None, CHAMPION
            if gate == GATE_REFUSED:
                alias = CHALLENGER
            elif champion is not None:
                alias, champ_value, decided_by = _against_champion(champion, data, metric, key, hold_metrics,
                                                                   evidence, notes)
            previous = _alias_holder(client, name, alias)
            with contextlib.redirect_stderr(io.StringIO()):  # MLflow's "Successfully registered ..." lines:
                version = mlflow.register_model(info.model_uri, name, tags=version_tags)  # the summary says it
            try:
                client.set_registered_model_alias(name, alias, version.version)
                client.set_model_version_tag(name, version.version, "promoted_as", alias)
                header = (f"Promoted by `vaeok promote --study {study}`: {selection_text}, model "
                          f"{name} version {version.version} ({alias}), config hash {chash}.\n"
                          + ("This file reproduces the largest member of the ensemble.\n" if len(choices) > 1 else "")
                          + "Reproduce the trial's cross-validated evaluation with: "
                            "vaeok run experiment=<this file's name>")
                # the champion's overlay is never overwritten by a losing promote
                overlay_name = study if alias == CHAMPION else f"{study}_{CHALLENGER}"
                overlay = write_overlay(cfg, overlay_name, header, staged[overlay_name])
            except BaseException:
                with suppress(Exception):
                    client.delete_model_version(name, version.version)  # its aliases go with it
                    if previous is not None:
                        client.set_registered_model_alias(name, alias, previous)
                raise
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)
    return PromoteResult(name, str(version.version), alias, metric, choice, run_id, overlay, chash, selection_text,
                         evidence, hold_metrics, base_m, trained_on, rows.n_rows,
                         None if champion is None else str(champion.version), champ_value, decided_by, notes,
                         time.perf_counter() - start, gate)


def _holdout_gain(hold: dict[str, float], base: dict[str, float], metric: str) -> dict[str, float]:
    """holdout/gain_over_baseline (positive = better than the baseline) when both were scored."""
    if not hold or metric not in base:
        return {}
    return {"holdout/gain_over_baseline": (hold[metric] - base[metric]) * (1 if HIGHER_IS_BETTER[metric] else -1)}


def _against_champion(champion: Any, data: Dataset, metric: str, key: str, hold: dict[str, float],
                      evidence: dict[str, float], notes: list[str]) -> tuple[str, float | None, str]:
    """(alias, champion's value, what decided) for a candidate against the current champion.

    On a holdout the champion never trained on: the holdout metric. Else, on the same data: the
    corrected CV R2 of each promote. Otherwise they cannot be compared and the champion stays."""
    tags = champion.tags or {}
    if hold and (old := _holdout_value(champion, metric, key)) is not None:
        return (CHAMPION if _better(hold[metric], old, metric) else CHALLENGER), old, f"holdout {metric}"
    new = evidence.get("selection/corrected_r2")
    if tags.get("data_hash") == data.fingerprint() and "cv_corrected_r2" in tags and new is not None:
        old = float(tags["cv_corrected_r2"])
        return (CHAMPION if new > old else CHALLENGER), old, "corrected CV R2 on the same rows"
    notes.append(f"note: champion version {champion.version} cannot be compared with this one (no holdout that "
                 "neither trained on, and no corrected CV R2 on the same rows); it keeps the alias. Move it "
                 "deliberately if you want: mlflow's set_registered_model_alias, or the Models page of the UI")
    return CHALLENGER, None, "not comparable"


def baseline_holdout(cfg: DictConfig, overrides: Sequence[str], dev: Dataset, holdout: Dataset) -> dict[str, float]:
    """Holdout metrics of a no-augmentation config (same rows): the given overrides with
    generator=none (the knobs of the replaced generator dropped)."""
    kept = [o for o in overrides if not o.lstrip("+~").startswith("generator.")]
    base_cfg = load_config([*kept, "generator=none"])
    pred = fit_pipeline(base_cfg, dev).predict_array(holdout.X)
    return regression_metrics(holdout.y, pred.iloc[:, 0].to_numpy())


def _alias_holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version currently holding `alias` of model `name`, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _compare_with_logged(run_id: str, cfg: DictConfig, notes: list[str]) -> None:
    """Warn when the trial's logged config differs from the one recomposed from its overrides."""
    try:
        logged = config_from_yaml(logged_config_yaml(run_id))
    except UserError as exc:
        notes.append(f"note: could not read the trial's logged config ({exc})")
        return
    if config_hash(logged) != config_hash(cfg):
        notes.append(f"warning: the trial's logged config (run {run_id}) differs from the config recomposed "
                     "from its overrides (conf/ changed since the sweep?); promoted the recomposed one")

