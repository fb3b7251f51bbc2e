"""The CLI as a user runs it: subprocess, exit codes, one-line errors, MLflow contents."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from .conftest import TINY, cli_env


def vaeok(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vaeok.cli", *args], cwd=cwd, env=cli_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
def test_run_logs_a_finished_run_with_params_metrics_artifacts(tmp_path: Path) -> None:
    res = vaeok("run", *TINY, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "pooled held-out  R2" in res.stdout and "MAPE" in res.stdout and "vaeok ui" in res.stdout
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    runs = MlflowClient().search_runs([mlflow.get_experiment_by_name("vaeok").experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["model.hidden"] == "65" and run.data.params["trainer.max_epochs"] == "5"
    for key in ("val/r2", "val/rmse", "val/mae", "val/mape", "val/ks"):
        assert key in run.data.metrics
    assert {"data_hash", "mlflow.source.git.commit", "protocol"} <= set(run.data.tags)
    assert run.info.run_name.startswith("vae_ok-GradientBoostingRegressor-h65-e5")
    history = MlflowClient().get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5]
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert {"config.yaml", "predictions.csv", "figures"} <= artifacts
    figs = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "figures")}
    assert figs == {"figures/loss_curves.png", "figures/predicted_vs_true.png"}
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()


def _one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def test_bad_override_type_exits_2(tmp_path: Path) -> None:
    assert "max_epochs" in _one_line_error(vaeok("run", "trainer.max_epochs=abc", cwd=tmp_path))


def test_csv_with_nan_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "nan.csv"
    rows = "\n".join(f"{i},{i * 2 % 7},{i * 3}" for i in range(15))
    path.write_text("a,b,y\n" + rows + "\n1,,3\n")
    line = _one_line_error(vaeok("run", "data=csv", f"data.path={path}", "data.target=y", cwd=tmp_path))
    assert "column 'b' row 17 is missing" in line


def test_missing_csv_exits_2(tmp_path: Path) -> None:
    line = _one_line_error(vaeok("run", "data=csv", "data.path=nope.csv", "data.target=y", cwd=tmp_path))
    assert "file not found" in line


@pytest.mark.slow
def test_run_on_user_csv_with_five_features_uses_nd_kriging(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((60, 5))
    y = 100 + 50 * X[:, 0] + 30 * np.sin(3 * X[:, 1]) + 10 * X[:, 2:].sum(axis=1)
    lines = ["f1,f2,f3,f4,f5,target"] + [",".join(f"{v:.5f}" for v in (*x, t)) for x, t in zip(X, y)]
    (tmp_path / "mine.csv").write_text("\n".join(lines))
    res = vaeok("run", "data=csv", "data.path=mine.csv", "data.target=target", *TINY, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "5 features" in res.stdout
