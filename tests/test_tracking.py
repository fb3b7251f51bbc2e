"""MLflow runs always end in a terminal state with the reason recorded."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

import vaeok.experiment as run_mod
from vaeok.config.compose import load_config

from .conftest import TINY


def _only_run():
    exp = mlflow.get_experiment_by_name("vaeok")
    runs = MlflowClient().search_runs([exp.experiment_id])
    assert len(runs) == 1
    return runs[0]


@pytest.mark.parametrize("exc,status,state", [
    (FloatingPointError("VAE loss became non-finite at epoch 3"), "FAILED", "FAILED"),
    (KeyboardInterrupt(), "KILLED", "KILLED"),
])
def test_run_ends_in_terminal_state(monkeypatch: pytest.MonkeyPatch, exc: BaseException, status: str,
                                    state: str) -> None:
    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(run_mod, "evaluate", boom)
    with pytest.raises(type(exc)):
        run_mod.run_experiment(load_config(TINY))
    run = _only_run()
    assert run.info.status == status and run.data.tags["vaeok.state"] == state
    if status == "FAILED":
        assert run.data.tags["vaeok.error"] == "FloatingPointError: VAE loss became non-finite at epoch 3"
        assert "error.txt" in {a.path for a in MlflowClient().list_artifacts(run.info.run_id)}
    assert mlflow.active_run() is None


def test_sqlite_stores_use_wal(tmp_path) -> None:
    """MLflow's and Optuna's SQLite files are in WAL mode (commits without an fsync each)."""
    import sqlite3

    from vaeok.study.sweep import make_storage
    from vaeok.tracking.runs import setup

    setup(load_config(["tracking.enabled=true"]).tracking)
    mlflow.get_experiment_by_name("vaeok")
    make_storage("sqlite:///mlruns/optuna.db", heartbeat=10, retry_failed=0)
    for name in ("mlflow.db", "optuna.db"):
        with sqlite3.connect(tmp_path / "mlruns" / name) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal", name


def test_a_swallowed_ctrl_c_still_ends_the_run_killed() -> None:
    """Python drops exceptions raised in some callbacks (e.g. importlib's module-lock weakref
    callback during a lazy import); the interrupt must still end the run KILLED."""
    import signal

    from vaeok.core import signals
    from vaeok.tracking import runs as tracking

    exp_id = tracking.setup(load_config(["tracking.enabled=true"]).tracking)
    with signals.terminate_as_interrupt(), pytest.raises(KeyboardInterrupt):
        with tracking.run(exp_id, "swallowed"):
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:
                pass  # what "Exception ignored in ..." amounts to
    run = _only_run()
    assert run.info.status == "KILLED" and run.data.tags["vaeok.state"] == "KILLED"
