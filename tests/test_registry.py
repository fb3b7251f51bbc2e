"""promote: champion/challenger aliases, version tags, holdout honesty, overlays; run --from-run."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient

from vaeok.config.compose import load_config
from vaeok.config.overrides import override_value
from vaeok.core.errors import UserError
from vaeok.experiment import RunHooks, run_experiment
from vaeok.registry.promote import (
    CHALLENGER,
    CHAMPION,
    config_from_run,
    config_hash,
    load_trial,
)
from vaeok.tracking.runs import absolute_sqlite_uri
from vaeok.tracking.server import ui_command

from .conftest import cli_env
from .promote_utils import STORAGE, build_promoted, copy_conf, make_study


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One shared work directory: a 2-trial study promoted twice (best, then the worse trial 1)."""
    workdir = tmp_path_factory.mktemp("promote")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        mp.setenv("VAEOK_CONFIG_DIR", str(copy_conf(workdir)))
        yield build_promoted(workdir)


@pytest.fixture
def work(promoted: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a test inside the shared promote work directory."""
    monkeypatch.chdir(promoted["workdir"])
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(promoted["workdir"] / "conf"))
    mlflow.set_tracking_uri(absolute_sqlite_uri("sqlite:///mlruns/mlflow.db"))
    return promoted


def _cli(*args: str, cwd: Path, conf: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    if conf is not None:
        env["VAEOK_CONFIG_DIR"] = str(conf)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1] / "src")
    return subprocess.run([sys.executable, "-m", "vaeok.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and lines[0].startswith("vaeok: error:")
    assert needle in lines[0]


def test_first_promote_becomes_champion_with_tags(work: dict[str, Any]) -> None:
    first = work["first"]
    assert first.alias == CHAMPION and first.trial.number == 0 and first.champion_before is None
    client = MlflowClient()
    mv = client.get_model_version_by_alias("rubber", CHAMPION)
    assert str(mv.version) == first.version
    for key in ("study", "trial", "config_hash", "data_hash", "holdout_key", "holdout_r2", "holdout_rmse", "run_id"):
        assert key in mv.tags, key
    assert mv.tags["study"] == "tpe" and mv.tags["trial"] == "0" and mv.tags["config_hash"] == first.config_hash
    assert float(mv.tags["holdout_r2"]) == pytest.approx(first.holdout_metrics["r2"], rel=1e-5)
    run = client.get_run(first.run_id)
    assert run.data.tags["vaeok.study"] == "tpe" and run.data.tags["vaeok.trial"] == "0"
    assert run.data.metrics["holdout/r2"] == first.holdout_metrics["r2"]


def test_holdout_is_the_fixed_untouched_split(work: dict[str, Any]) -> None:
    """The logged holdout rows are the configured split; the holdout was scored by a pipeline that
    never saw them (exact kriging: positive std there), and once scored the registered model is
    refit on all rows (zero std at every row, holdout included)."""
    from vaeok.data.datasets import load_dataset
    from vaeok.evaluation.scoring import development_rows

    first = work["first"]
    split = json.loads(mlflow.artifacts.load_text(f"runs:/{first.run_id}/holdout_split.json"))
    cfg = load_config(first.trial.overrides)
    dev, hold = development_rows(cfg, load_dataset(cfg.data))
    assert len(split["rows"]) == hold.n_rows == int(first.holdout_metrics["n_rows"])
    model = mlflow.pyfunc.load_model(f"models:/rubber@{CHAMPION}")
    import pandas as pd

    scored = pd.read_csv(io.StringIO(mlflow.artifacts.load_text(f"runs:/{first.run_id}/holdout_predictions.csv")))
    assert scored.filter(like="kriging_std").to_numpy().min() > 1e-3  # the dev-only fit that scored it
    assert first.trained_on == "all rows" and first.n_train == dev.n_rows + hold.n_rows
    std_all = model.predict(pd.DataFrame(np.vstack([dev.X, hold.X]), columns=list(dev.feature_names)))
    assert std_all.iloc[:, 1].to_numpy().max() < 1e-3


def test_worse_promote_does_not_move_champion(work: dict[str, Any]) -> None:
    first, second = work["first"], work["second"]
    assert second.holdout_metrics["r2"] < first.holdout_metrics["r2"]
    assert second.alias == CHALLENGER and second.champion_before == first.version
    client = MlflowClient()
    assert client.get_model_version_by_alias("rubber", CHAMPION).version == int(first.version)
    assert client.get_model_version_by_alias("rubber", CHALLENGER).version == int(second.version)
    text = "\n".join(second.summary())
    assert "does not beat" in text and f"stays on version {first.version}" in text


def test_overlays_recompose_the_promoted_configs(work: dict[str, Any]) -> None:
    conf = work["workdir"] / "mlruns" / "conf" / "experiment"  # next to the store, not in conf/
    head = (conf / "promoted_tpe.yaml").read_text().splitlines()[0]
    assert head == "# @package _global_"
    assert config_hash(load_config(["experiment=promoted_tpe"])) == work["first"].config_hash
    assert config_hash(load_config(["experiment=promoted_tpe_challenger"])) == work["second"].config_hash
    # an edit of model.hidden in/over the overlay still reaches the VAE (interpolations kept)
    assert load_config(["experiment=promoted_tpe", "model.hidden=7"]).generator.model.hidden == 7


def test_overlay_run_reproduces_the_trial_metrics(work: dict[str, Any]) -> None:
    trial0 = work["study"].trials[0]
    logged = MlflowClient().get_run(trial0.user_attrs["mlflow_run_id"]).data.metrics
    out = run_experiment(load_config(["experiment=promoted_tpe", "tracking.enabled=false"]))
    assert out.result.metrics["val/r2"] == logged["val/r2"] == trial0.value
    assert out.result.metrics["val/rmse"] == logged["val/rmse"]


def test_from_run_reproduces_logged_metrics_exactly(work: dict[str, Any]) -> None:
    run_id = work["study"].trials[1].user_attrs["mlflow_run_id"]
    logged = MlflowClient().get_run(run_id).data.metrics
    cfg = config_from_run(run_id)
    out = run_experiment(cfg, hooks=RunHooks(tags={"vaeok.reproduces": run_id}))
    again = MlflowClient().get_run(out.run_id).data.metrics
    for key in ("val/r2", "val/rmse", "val/mae", "val/mape", "val/ks"):
        assert again[key] == logged[key], key


def test_from_run_overrides(work: dict[str, Any]) -> None:
    run_id = work["study"].trials[0].user_attrs["mlflow_run_id"]
    cfg = config_from_run(run_id, ["model.hidden=9", "regressor.n_estimators=3"])
    assert cfg.generator.model.hidden == 9 and cfg.regressor.n_estimators == 3
    with pytest.raises(UserError, match="cannot switch config groups"):
        config_from_run(run_id, ["generator=none"])
    with pytest.raises(UserError, match="not found"):
        config_from_run("0123456789abcdef")


def test_load_trial_errors() -> None:
    with pytest.raises(UserError, match="no Optuna storage"):
        load_trial("tpe", STORAGE)
    Path("mlruns").mkdir()
    optuna.create_study(study_name="empty", storage=STORAGE)
    with pytest.raises(UserError, match=r"unknown study 'nope'.*studies: empty"):
        load_trial("nope", STORAGE)
    with pytest.raises(UserError, match="no completed trials"):
        load_trial("empty", STORAGE)
    make_study("fake", [{"model.hidden": 4}, {"model.hidden": 5}], log_runs=False)
    assert load_trial("fake", STORAGE).number == 1
    assert load_trial("fake", STORAGE).overrides[-1] == "model.hidden=5"
    with pytest.raises(UserError, match="trial 7 is not a completed trial"):
        load_trial("fake", STORAGE, 7)


def test_override_value() -> None:
    assert [override_value(v) for v in (True, 3, 0.002, "relu", None)] == ["true", "3", "0.002", "relu", "null"]
    assert override_value("a b") == "'a b'"


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
@pytest.mark.parametrize("case", ["unknown", "empty"])
def test_cli_promote_bad_study_is_one_line(case: str, tmp_path: Path) -> None:
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    optuna.create_study(study_name="empty", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db")
    proc = _cli("promote", "--study", "nope" if case == "unknown" else "empty", cwd=tmp_path)
    _assert_one_line_error(proc, "unknown study 'nope'" if case == "unknown" else "no completed trials")


def test_ui_command_targets_project_store() -> None:
    cfg = load_config()
    cmd = ui_command(5123, cfg.tracking)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "5123"
    assert cmd[cmd.index("--backend-store-uri") + 1] == "sqlite:///mlruns/mlflow.db"
    assert cmd[cmd.index("--default-artifact-root") + 1].endswith("mlruns/artifacts")


@pytest.mark.slow
def test_cli_ui_serves_and_stops(tmp_path: Path) -> None:
    """`vaeok ui` prints the URL, answers /health, and stops with its server on SIGTERM."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**cli_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "vaeok.cli", "ui", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert f"http://127.0.0.1:{port}" in proc.stdout.readline()
        deadline = time.time() + 90
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.time() < deadline, "mlflow server did not come up"
                time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "server still listening after vaeok ui stopped"
