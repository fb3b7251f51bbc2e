"""Adding a Lightning-trained generator touches two files: its module (tests/gauss_generator.py)
and its YAML. It then works in run, sweep (pruned by the evaluation callback), promote and
predict, because evaluation, packaging, preflight and run naming ask the generator's capabilities."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import optuna
import pandas as pd
import pytest

from vaeok import cli
from vaeok.data.datasets import rubber_surrogate

from .conftest import CONF

# a run, a sweep, a promote and a predict (~1 min): slow, run by `make test` and CI
pytestmark = pytest.mark.slow

GAUSS_YAML = """\
_target_: tests.gauss_generator.GaussGenerator
name: gauss
n_virtual: 60
lr: 0.05
_recursive_: false
trainer: ${trainer}
"""
TINY = ["trainer.max_epochs=6", "regressor.n_estimators=10", "generator=gauss"]


@pytest.fixture
def conf_with_gauss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "generator" / "gauss.yaml").write_text(GAUSS_YAML)
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(conf))
    monkeypatch.setenv("VAEOK_ALLOWED_TARGETS", "tests.gauss_generator.*")  # outside the default allowlist
    return conf


def test_a_new_lightning_generator_runs_sweeps_promotes_and_predicts(conf_with_gauss: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", *TINY]) == 0
    assert "pooled held-out" in capsys.readouterr().out
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    run = mlflow.search_runs(experiment_names=["vaeok"], output_format="list")[0]
    assert run.info.run_name == "gauss-GradientBoostingRegressor-lr0.05"  # the generator's describe()
    assert run.info.status == "FINISHED" and run.data.metrics["val/r2"] > 0.5

    spec = tmp_path / "g.yaml"
    spec.write_text("name: g\nsampler: {type: random, seed: 1}\npruner: {type: median, n_startup_trials: 5}\n"
                    "n_trials: 2\noverrides: [evaluation.eval_every_n_epochs=3]\n"
                    "space:\n  generator.lr: float 0.01..0.1 log\n")
    assert cli.main(["sweep", "--spec", str(spec), "--no-progress", *TINY]) == 0
    capsys.readouterr()
    study = optuna.load_study(study_name="g", storage="sqlite:///mlruns/optuna.db")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2
    # intermediate values come from the evaluation callback during Lightning training
    assert all(t.intermediate_values for t in done)

    assert cli.main(["promote", "--study", "g", "--trial", "0", "--model-name", "gauss",
                     "--allow-worse-than-baseline"]) == 0
    capsys.readouterr()
    rubber_surrogate().frame().drop(columns=["stress_600"]).head(4).to_csv(tmp_path / "X.csv", index=False)
    assert cli.main(["predict", "--model", "models:/gauss@champion", "--input", "X.csv",
                     "--output", "Y.csv"]) == 0
    pred = pd.read_csv(tmp_path / "Y.csv")
    assert len(pred) == 4 and {"stress_600_pred", "stress_600_kriging_std"} <= set(pred.columns)
    model = mlflow.pyfunc.load_model("models:/gauss@champion").unwrap_python_model()
    assert model.sample_virtual(7, seed=3).shape == (7, 3)  # exported state, sampled by the generator's class
