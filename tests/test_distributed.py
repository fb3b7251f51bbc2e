"""Distributed sweeps against the real local PostgreSQL: several workers, one study, SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from .conftest import TINY, cli_env

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
PG = "postgresql://postgres@127.0.0.1:5432"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A throwaway database, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"vaeok_test_{uuid.uuid4().hex[:10]}"
    try:
        conn = psycopg.connect(f"{PG}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"!!! PostgreSQL at 127.0.0.1:5432 is not reachable ({exc}); distributed tests SKIPPED !!!")
    conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()


def _spec(tmp_path: Path, n: int) -> Path:
    p = tmp_path / "d.yaml"
    p.write_text(f"name: d\nsampler: {{type: random, seed: 0}}\npruner: none\nn_trials: {n}\n"
                 "space:\n  model.hidden: int 4..16\n  model.lr: float 1e-3..1e-2 log\n")
    return p


def _cmd(storage: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vaeok.cli", "sweep", "--spec", "d.yaml", "--storage", storage, "--no-progress",
            *extra, *TINY, "trainer.max_epochs=30"]


def _mlflow_runs(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = mlflow.get_experiment_by_name("vaeok")
    return MlflowClient().search_runs([exp.experiment_id], max_results=1000)


def _check_books(tmp_path: Path, study: optuna.Study, n: int) -> None:
    states = [t.state for t in study.trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == n
    assert TrialState.RUNNING not in states
    runs = _mlflow_runs(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    parents = [r for r in runs if r.data.tags.get("vaeok.role") == "study"]
    assert len(parents) == 1
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    children = [r for r in nested if r.data.tags.get("vaeok.role") != "baseline"]
    assert len(nested) - len(children) == 1  # one baseline run however many workers started
    with_runs = [t for t in study.trials if "mlflow_run_id" in t.user_attrs]
    assert len(children) == len(with_runs)  # one nested run per trial, none duplicated
    assert sorted(int(r.data.tags["vaeok.trial"]) for r in children) == sorted(t.number for t in with_runs)


def test_two_workers_share_one_study(tmp_path: Path, pg_url: str) -> None:
    _spec(tmp_path, 4)
    res = subprocess.run(_cmd(pg_url, "--workers", "2"), cwd=tmp_path, env=cli_env(), capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    study = optuna.load_study(study_name="d", storage=pg_url)
    assert len(study.trials) == 4
    assert "[worker 0]" in res.stderr and "[worker 1]" in res.stderr  # both joined the study
    assert len({tuple(sorted(t.params.items())) for t in study.trials}) == 4  # no duplicated draws
    _check_books(tmp_path, study, 4)


def test_sigkill_of_a_worker_mid_trial_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    _spec(tmp_path, 5)
    proc = subprocess.Popen(_cmd(pg_url, "--workers", "2", "--heartbeat", "1", "--retry-failed", "1"),
                            cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline:
        time.sleep(0.5)
        try:
            trials = optuna.load_study(study_name="d", storage=pg_url).trials
        except Exception:
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING and "mlflow_run_id" in t.user_attrs]
        if running:
            victim = running[0]
    assert victim is not None, "no trial started"
    os.kill(victim.user_attrs["pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "ended abnormally" in err
    study = optuna.load_study(study_name="d", storage=pg_url)
    killed = study.trials[victim.number]
    assert killed.state == TrialState.FAIL
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    assert MlflowClient().get_run(killed.user_attrs["mlflow_run_id"]).info.status == "KILLED"
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retried) == 1 and retried[0].params == killed.params  # retried once, not twice
    _check_books(tmp_path, study, 5)
