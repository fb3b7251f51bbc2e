"""Numerical faults end cleanly: a diverging VAE, degenerate kriging rows, a regressor whose fit raises.

Each ends in a one-line error (exit 2: the chosen config or data cannot be evaluated), an MLflow run
FAILED with the reason in tag `vaeok.error`, and inside a sweep a FAIL trial (user attr `error`)
while the sweep goes on to its budget.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from sklearn.base import BaseEstimator, RegressorMixin

from vaeok import cli
from vaeok.config.compose import load_config
from vaeok.core.errors import NumericalError, UserError
from vaeok.data.datasets import rubber_surrogate
from vaeok.evaluation.scoring import RegressorFitError
from vaeok.experiment import run_experiment
from vaeok.labelers.kriging import KrigingError, OrdinaryKrigingLabeler
from vaeok.study.spec import load_spec
from vaeok.study.sweep import SweepOptions, run_sweep

from .conftest import TINY


@pytest.fixture(autouse=True)
def _allow_test_estimators(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test-only estimators below are outside the default `_target_` allowlist."""
    monkeypatch.setenv("VAEOK_ALLOWED_TARGETS", f"{__name__}.*")


class ExplodingRegressor(RegressorMixin, BaseEstimator):
    """Test-only estimator whose fit raises when `explode` (stands for any third-party regressor
    failure that parameter validation cannot foresee)."""

    def __init__(self, explode: bool = True) -> None:
        self.explode = explode

    def fit(self, X: np.ndarray, y: np.ndarray) -> ExplodingRegressor:
        if self.explode:
            raise RuntimeError("solver exploded")
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.zeros(len(X))


def _runs(tmp_path: Path) -> list:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = mlflow.get_experiment_by_name("vaeok")
    return MlflowClient().search_runs([exp.experiment_id], max_results=1000)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- a diverging VAE ------------------------------------------------------------------------------
@pytest.mark.parametrize("knob", ["model.lr=1e6", "model.beta=1e300"])
def test_non_finite_vae_loss_fails_the_run_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           knob: str) -> None:
    assert cli.main(["run", *TINY, knob]) == 2
    line = _one_line(capsys)
    assert "VAE loss is not finite at epoch" in line and "(fold " in line and knob.split("=")[0] in line
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED" and run.data.tags["vaeok.state"] == "FAILED"
    assert run.data.tags["vaeok.error"].startswith("NumericalError: VAE loss is not finite at epoch")


def test_non_finite_samples_are_caught_before_kriging() -> None:
    import torch

    from vaeok.generators.vae import build_module

    module = build_module([np.random.default_rng(0).random((20, 3))] * 2, {"hidden": 4}, 8, 0)
    with torch.no_grad():
        module.vae.out.weight[1, 0, 0] = float("nan")  # fold 1's decoder
    with pytest.raises(NumericalError, match=r"non-finite virtual samples \(fold 1\)"):
        module.sample(5)


# -- a regressor whose fit raises -----------------------------------------------------------------
def test_regressor_fit_failure_fails_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", *TINY, "regressor.n_estimators=0"]) == 2  # refused before any work now
    assert "n_estimators" in _one_line(capsys)
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # no run was started
    cfg = load_config([*TINY, "generator=none"])
    cfg.regressor = {"_target_": f"{__name__}.ExplodingRegressor"}
    with pytest.raises(RegressorFitError, match="ExplodingRegressor failed to fit .*RuntimeError: solver exploded"):
        run_experiment(cfg)
    runs = _runs(tmp_path)
    assert [r.info.status for r in runs] == ["FAILED"]
    assert all(r.data.tags["vaeok.error"].startswith("RegressorFitError: regressor") for r in runs)


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
def test_failing_trials_are_fail_and_the_sweep_completes_its_budget(tmp_path: Path) -> None:
    spec = tmp_path / "faults.yaml"
    spec.write_text("name: faults\nsampler: {type: random, seed: 6}\npruner: none\nn_trials: 2\nspace:\n"
                    "  model.lr: categorical [1000000.0, 0.002, 0.003]\n"
                    "  regressor.explode: categorical [true, false]\n")
    # lr=1e6 gives a NaN loss, explode=true a fit that raises; the two good configs (lr 0.002 / 0.003,
    # explode=false) complete the budget of 2 distinct configs
    messages: list[str] = []
    base = [*TINY, f"regressor._target_={__name__}.ExplodingRegressor", "~regressor.n_estimators",
            "~regressor.learning_rate", "~regressor.max_depth", "~regressor.random_state", "+regressor.explode=true"]
    study = run_sweep(load_spec(spec), base, SweepOptions(progress=False, max_failures=50), log=messages.append)
    states = [t.state for t in study.trials]
    distinct = [t for t in study.trials if t.state == TrialState.COMPLETE and "duplicate_of" not in t.user_attrs]
    assert len(distinct) == 2 and TrialState.RUNNING not in states  # repeats of a good config do not count
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    errors = {t.user_attrs["error"].split(":")[0] for t in failed}
    assert errors == {"NumericalError", "RegressorFitError"}, [t.user_attrs for t in failed]
    assert all((t.params["model.lr"] > 1) == t.user_attrs["error"].startswith("NumericalError") for t in failed)
    runs = {r.info.run_id: r for r in _runs(tmp_path)}
    for t in failed:
        run = runs[t.user_attrs["mlflow_run_id"]]
        assert run.info.status == "FAILED" and run.data.tags["vaeok.error"] == t.user_attrs["error"]
    assert sum(m.startswith("trial ") and "FAILED" in m for m in messages) == len(failed)
    assert any(m.startswith("baseline (generator=none) FAILED: RegressorFitError") for m in messages)
    assert not [r for r in runs.values() if r.info.status == "RUNNING"]


def test_a_sweep_whose_trials_all_fail_stops_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "af.yaml").write_text("name: af\nsampler: {type: random, seed: 0}\npruner: none\nn_trials: 2\n"
                                      "space:\n  model.hidden: int 4..16\n")
    assert cli.main(["sweep", "--spec", "af.yaml", "--no-progress", *TINY, "model.lr=1e6"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "stopped: too many failed trials" in line and "NumericalError: VAE loss is not finite" in line
    runs = [r for r in _runs(tmp_path) if r.data.tags.get("vaeok.role") != "baseline"]  # generator=none: fine
    assert sorted(r.info.status for r in runs) == ["FAILED"] * 4  # 3 trials + the study's parent run


# -- degenerate kriging rows ----------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["pykrige", "gstools"])
def test_duplicate_rows_with_different_labels_are_merged(backend: str) -> None:
    d = rubber_surrogate()
    X = np.vstack([d.X[:40], d.X[:10]])
    y = np.r_[d.y[:40], d.y[:10] + 200.0]
    lab = OrdinaryKrigingLabeler(nugget=0.0, backend=backend).fit(X, y)
    assert lab.n_merged_ == 10 and len(lab.X_) == 40
    mean, std = lab.predict(d.X[:10], return_std=True)
    np.testing.assert_allclose(mean, d.y[:10] + 100.0, atol=1e-3 * d.y.std())  # the mean of the two labels
    assert np.isfinite(std).all()


def test_duplicates_give_the_same_labels_on_both_backends() -> None:
    d = rubber_surrogate()
    X, y = np.vstack([d.X[:40], d.X[:10]]), np.r_[d.y[:40], d.y[:10] + 200.0]
    a = OrdinaryKrigingLabeler(backend="pykrige").fit(X, y).predict(d.X[40:])
    b = OrdinaryKrigingLabeler(backend="gstools").fit(X, y).predict(d.X[40:])
    np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize("backend", ["pykrige", "gstools"])
def test_constant_target_gives_constant_labels(backend: str) -> None:
    d = rubber_surrogate()
    lab = OrdinaryKrigingLabeler(backend=backend).fit(d.X[:30], np.full(30, 7.5))
    mean, std = lab.predict(d.X[30:], return_std=True)
    assert lab.chosen_ == "constant" and (mean == 7.5).all() and (std == 0).all()


def test_collinear_and_one_dimensional_inputs() -> None:
    d = rubber_surrogate()
    a = d.X[:50, 0]
    X = np.c_[a, 2 * a, 1 - a]  # three features, one direction
    line = np.linspace(a.min(), a.max(), 7)
    on_line = np.c_[line, 2 * line, 1 - line]
    preds = [OrdinaryKrigingLabeler(backend=b).fit(X, d.y[:50]).predict(on_line) for b in ("pykrige", "gstools")]
    assert all(np.isfinite(p).all() for p in preds)
    np.testing.assert_allclose(preds[0], preds[1], atol=0.02 * d.y.std())
    one_d = OrdinaryKrigingLabeler().fit(a[:, None], d.y[:50])
    assert one_d.backend_ == "gstools" and np.isfinite(one_d.predict(line[:, None])).all()


def test_too_few_distinct_rows_is_a_clear_user_error() -> None:
    X = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(KrigingError, match="no variogram model fits the 2 distinct training rows") as info:
        OrdinaryKrigingLabeler().fit(X, np.array([1.0, 2.0, 3.0, 4.0]))
    assert isinstance(info.value, UserError)


def test_degenerate_csv_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Collinear features, duplicated rows with different labels, a target constant but for one row
    (so some folds train on a constant target): the run finishes with finite labels."""
    a = np.repeat(np.linspace(0.0, 1.0, 20), 2)  # every row twice
    y = np.full(40, 5.0)
    y[1] = 6.0  # rows 0 and 1 share their features, not their label
    rows = [f"{x:.4f},{2 * x:.4f},{1 - x:.4f},{t}" for x, t in zip(a, y)]
    (tmp_path / "degenerate.csv").write_text("a,b,c,y\n" + "\n".join(rows) + "\n")
    assert cli.main(["run", "data=csv", "data.path=degenerate.csv", "data.target=y", *TINY]) == 0, \
        capsys.readouterr().err
    (run,) = _runs(tmp_path)
    assert run.info.status == "FINISHED" and np.isfinite(run.data.metrics["val/rmse"])
