"""Helpers for promote/predict tests: a tiny Optuna study that follows the `vaeok sweep` contract."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from vaeok.config.compose import load_config
from vaeok.experiment import RunHooks, run_experiment

from .conftest import CONF

# evaluation.holdout_min_rows=0 keeps the 13-row outer holdout of the 86 rows: these tests cover the
# holdout path of promote (data sets large enough for one); test_selection_promote.py the default path.
FAST = ["experiment=smoke", "trainer.max_epochs=5", "generator.n_virtual=50", "regressor.n_estimators=30",
        "tracking.log_figures=false", "evaluation.holdout_min_rows=0"]
STORAGE = "sqlite:///mlruns/optuna.db"


def copy_conf(workdir: Path) -> Path:
    """A private copy of conf/ (promote writes mlruns/conf/experiment/promoted_<study>.yaml next to the store)."""
    dst = workdir / "conf"
    if not dst.exists():
        shutil.copytree(CONF, dst)
    return dst


def _distribution(value: Any) -> BaseDistribution:
    if isinstance(value, int):
        return IntDistribution(1, 1000)
    return CategoricalDistribution([value])


def make_study(name: str, trials: list[dict[str, Any]], base: list[str] | None = None,
               storage: str = STORAGE, log_runs: bool = True) -> optuna.Study:
    """A study whose trials are real (tracked) runs of base + params, like `vaeok sweep` records them:
    trial.params = Hydra override key/values, user_attrs base_overrides / mlflow_run_id, objective
    = pooled held-out R2 on the development rows."""
    Path("mlruns").mkdir(exist_ok=True)
    base = list(base if base is not None else FAST)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("base_overrides", base)
    for number, params in enumerate(trials):
        cfg = load_config([*base, *(f"{k}={v}" for k, v in params.items())])
        attrs: dict[str, Any] = {}
        if log_runs:
            out = run_experiment(cfg, hooks=RunHooks(tags={"vaeok.study": name, "vaeok.trial": str(number)}))
            attrs["mlflow_run_id"] = out.run_id
            value = out.result.objective
        else:
            value = 0.5 + 0.01 * number
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: _distribution(v) for k, v in params.items()},
            value=value, user_attrs=attrs))
    return study


def build_promoted(workdir: Path, second: bool = True) -> dict[str, Any]:
    """In `workdir` (cwd must be it, VAEOK_CONFIG_DIR its conf copy): study 'tpe' with a good trial 0
    and a bad trial 1 (2 trees), promote the best, then (if `second`) promote trial 1.

    These seconds-long configs are no better than no augmentation on the holdout, so the first
    promote overrides the baseline gate (tested on its own in test_baseline_gate.py)."""
    from vaeok.registry.promote import promote

    study = make_study("tpe", [{"model.hidden": 16}, {"model.hidden": 8, "regressor.n_estimators": 2}])
    first = promote("tpe", STORAGE, model_name="rubber", allow_worse_than_baseline=True)
    out: dict[str, Any] = {"workdir": workdir, "study": study, "first": first}
    if second:
        out["second"] = promote("tpe", STORAGE, model_name="rubber", trial=1, allow_worse_than_baseline=True)
    return out
