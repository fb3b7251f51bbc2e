"""Selection from out-of-fold evidence (issue: searching must pay): the study's corrected estimate,
promote without a tiny holdout, refit on all rows, the new regressors through predict, distinct
budgets and model names that cannot collide."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import CategoricalDistribution

from vaeok import cli
from vaeok.config.compose import load_config
from vaeok.data.datasets import Dataset, rubber_surrogate
from vaeok.experiment import RunHooks, run_experiment
from vaeok.registry.promote import default_model_name, promote
from vaeok.study import evidence
from vaeok.study.spec import load_spec
from vaeok.study.sweep import SweepOptions, out_of_fold, run_sweep

from .promote_utils import STORAGE, copy_conf

FAST = ["experiment=smoke", "trainer.max_epochs=5", "generator.n_virtual=50", "tracking.log_figures=false"]


def _oof_study(name: str, trials: list[tuple[str, dict[str, Any]]], base: list[str] = FAST) -> optuna.Study:
    """A study of real tracked runs that stores what `vaeok sweep` stores: params, overrides,
    role, mlflow_run_id and the out-of-fold predictions."""
    Path("mlruns").mkdir(exist_ok=True)
    study = optuna.create_study(study_name=name, storage=STORAGE, direction="maximize")
    study.set_user_attr("base_overrides", base)
    for number, (role, params) in enumerate(trials):
        cfg = load_config([*base, *(f"{k}={v}" for k, v in params.items())])
        out = run_experiment(cfg, hooks=RunHooks(tags={"vaeok.study": name, "vaeok.trial": str(number)}))
        y, oof = out_of_fold(out.result)
        study.set_user_attr(evidence.OOF_Y_ATTR, y)
        attrs = {"mlflow_run_id": out.run_id, evidence.OOF_ATTR: oof, **({"vaeok.role": role} if role else {})}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions={k: CategoricalDistribution([v]) for k, v in params.items()},
            value=out.result.objective, user_attrs=attrs))
    return study


def test_corrected_estimate_is_below_the_raw_best_on_pure_noise() -> None:
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="maximize")
    y = rng.normal(size=40)
    study.set_user_attr(evidence.OOF_Y_ATTR, y.tolist())
    for i in range(20):  # 20 configs that know nothing: predictions are noise around the mean
        oof = (y.mean() + 0.3 * rng.normal(size=40)).tolist()
        study.add_trial(optuna.trial.create_trial(params={"k": i}, distributions={"k": CategoricalDistribution(
            list(range(20)))}, value=0.0, user_attrs={evidence.OOF_ATTR: oof}))
    for rule in ("best", "ensemble"):
        ev = evidence.decide(study, rule)
        assert ev is not None
        raw = evidence.summary_metrics(ev)["selection/raw_best_cv_r2"]
        assert ev.corrected.estimate < raw, (rule, ev.corrected, raw)
        assert ev.corrected.estimate < ev.apparent_r2


def test_promote_without_a_holdout_refits_the_selection_on_all_rows(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(copy_conf(tmp_path)))
    _oof_study("s", [("baseline", {"generator": "none"}), ("", {"model.hidden": 16})])
    res = promote("s", STORAGE, allow_worse_than_baseline=True)
    assert res.holdout_metrics == {}  # 86 rows * 0.15 = 13 < evaluation.holdout_min_rows: no holdout
    assert res.trained_on == "all rows" and res.n_train == 86
    assert res.evidence["selection/corrected_r2"] <= res.evidence["selection/apparent_r2"] + 1e-9
    version = MlflowClient().get_model_version(res.model_name, res.version)
    assert version.tags["trained_on"] == "all rows" and version.tags["n_train_rows"] == "86"
    assert "cv_corrected_r2" in version.tags and version.tags["selection"] == res.selection
    assert res.model_name == default_model_name(load_config(FAST), rubber_surrogate())


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_with_a_holdout_the_champion_is_still_refit_on_all_rows_unless_asked(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(copy_conf(tmp_path)))
    base = [*FAST, "evaluation.holdout_min_rows=0"]  # keep the 13-row holdout
    _oof_study("h", [("baseline", {"generator": "none"}), ("", {"model.hidden": 16})], base)
    all_rows = promote("h", STORAGE, model_name="m", allow_worse_than_baseline=True)
    assert all_rows.holdout_metrics["n_rows"] == 13 and all_rows.n_train == 86
    dev_only = promote("h", STORAGE, model_name="m", allow_worse_than_baseline=True, refit_all=False)
    assert dev_only.n_train == 73 and dev_only.trained_on == "development rows"


@pytest.mark.parametrize(("regressor", "std_col"),
                         [("kriging", "stress_600_kriging_std"), ("gpr", "stress_600_gp_std")])
def test_new_regressors_promote_and_predict_with_their_std(regressor: str, std_col: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(copy_conf(tmp_path)))
    # not experiment=smoke: its overlay sets GBR's n_estimators on whatever regressor is chosen
    _oof_study("r", [("baseline", {"generator": "none", "regressor": regressor})], ["tracking.log_figures=false"])
    res = promote("r", STORAGE, model_name="m")
    rubber_surrogate().frame().drop(columns=["stress_600"]).head(6).to_csv("X.csv", index=False)
    assert cli.main(["predict", "--model", f"models:/m/{res.version}", "--input", "X.csv", "--output", "Y.csv"]) == 0
    pred = pd.read_csv("Y.csv")
    assert len(pred) == 6 and std_col in pred.columns and (pred[std_col] >= 0).all()
    truth = rubber_surrogate().y[:6]
    assert np.corrcoef(pred["stress_600_pred"], truth)[0, 1] > 0.9


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_a_study_ends_with_n_trials_distinct_configs_or_says_the_space_is_exhausted(tmp_path: Path) -> None:
    spec = tmp_path / "d.yaml"
    spec.write_text("name: d\nsampler: {type: random, seed: 0}\npruner: none\nn_trials: 3\n"
                    "space:\n  model.hidden: categorical [4, 8]\n")
    messages: list[str] = []
    study = run_sweep(load_spec(spec), [*FAST, "trainer.max_epochs=2"], SweepOptions(progress=False, max_repeats=6),
                      log=messages.append)
    distinct = [t for t in study.trials if "duplicate_of" not in t.user_attrs and t.state.name == "COMPLETE"]
    assert len({t.params["model.hidden"] for t in distinct}) == len(distinct) == 2
    assert any("no new points left" in m for m in messages)
    dups = [t for t in study.trials if "duplicate_of" in t.user_attrs]
    assert dups and all(t.values == study.trials[t.user_attrs["duplicate_of"]].values for t in dups)


def test_default_model_names_differ_by_data_set_and_columns() -> None:
    a = Dataset(np.zeros((3, 2)), np.zeros(3), ("a", "b"), "y", "x")
    b = Dataset(np.zeros((3, 2)), np.zeros(3), ("a", "c"), "y", "x")
    cfg_a = load_config(["data=csv", "data.path=plant_a.csv", "data.target=y"])
    cfg_b = load_config(["data=csv", "data.path=plant_b.csv", "data.target=y"])
    names = {default_model_name(cfg_a, a), default_model_name(cfg_b, a), default_model_name(cfg_a, b)}
    assert len(names) == 3 and all(n.startswith("vaeok-plant_") for n in names)


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_mlflow_parent_and_console_show_the_honest_picture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "e.yaml"
    spec.write_text("name: e\nsampler: {type: random, seed: 0}\npruner: none\nn_trials: 3\n"
                    "space:\n  generator: categorical [none, vae_ok]\n  model.hidden: int 4..32 if generator=vae_ok\n")
    assert cli.main(["sweep", "--spec", str(spec), "--no-progress", *FAST, "trainer.max_epochs=3"]) == 0
    out = capsys.readouterr().out
    assert "corrected R2" in out and "P(better)" in out and "vaeok promote --study e" in out
    header = out.splitlines()[out.splitlines().index("top trials of study 'e':") + 1]
    assert "val/r2" in header.split()  # the objective column (named by study.set_metric_names)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    parent = next(r for r in mlflow.search_runs(experiment_names=["vaeok"], output_format="list")
                  if r.data.tags.get("vaeok.role") == "study")
    assert {"selection/corrected_r2", "selection/p_better_than_baseline"} <= set(parent.data.metrics)
    assert parent.data.tags["selection_rule"] == "ensemble"
