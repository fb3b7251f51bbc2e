"""Real (tiny) sweeps: end to end, pruning, failures, retries, multi-objective (interrupt + resume:
test_interrupts.py)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

import vaeok.study.sweep as sweep_mod
from vaeok.study.spec import load_spec
from vaeok.study.sweep import SweepOptions, run_sweep

from .conftest import TINY

SPACE = "space:\n  model.hidden: int 4..16\n  model.lr: float 1e-3..1e-2 log\n"


def _spec(tmp_path: Path, extra: str = "", name: str = "t") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\nsampler: {{type: tpe, seed: 0}}\npruner: none\nn_trials: 3\n{extra}{SPACE}")
    return p


def _runs(tmp_path: Path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = mlflow.get_experiment_by_name("vaeok")
    return MlflowClient().search_runs([exp.experiment_id], max_results=1000)


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
def test_tiny_sweep_end_to_end(tmp_path: Path) -> None:
    study = run_sweep(load_spec(_spec(tmp_path)), TINY, SweepOptions(progress=False), log=lambda s: None)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    runs = _runs(tmp_path)
    parents = [r for r in runs if r.data.tags.get("vaeok.role") == "study"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") and "vaeok.trial" in r.data.tags]
    baselines = [r for r in runs if r.data.tags.get("vaeok.role") == "baseline"]
    assert len(parents) == 1 and len(children) == 3 and len(baselines) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags["vaeok.study"] == "t"
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in [*children, *baselines])
    assert {c.data.tags["vaeok.trial"] for c in children} == {"0", "1", "2"}
    assert all(c.info.status == "FINISHED" and "val/r2" in c.data.metrics for c in [*children, *baselines])
    # the space does not search `generator`: the baseline is its own run; the paper default
    # (hidden 65) lies outside model.hidden 4..16, so it is not enqueued, and the study says so
    assert baselines[0].data.params["generator.name"] == "none"
    assert all("vaeok.role" not in t.user_attrs for t in study.trials)
    assert any("paper_default" in n for n in study.user_attrs["reference_notes"])
    m = parent.data.metrics
    assert m["best/r2"] == pytest.approx(study.best_value)
    assert m["baseline/r2"] == pytest.approx(baselines[0].data.metrics["val/r2"])
    assert m["gain_over_baseline"] == pytest.approx(study.best_value - m["baseline/r2"])
    arts = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"best_config.yaml", "trials.csv", "spec.json", "base_config.yaml", "figures"} <= arts
    figs = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert "figures/optimization_history.png" in figs and "figures/slice.png" in figs
    best_cfg = MlflowClient().download_artifacts(parent.info.run_id, "best_config.yaml", str(tmp_path))
    assert f"hidden: {study.best_params['model.hidden']}" in Path(best_cfg).read_text()
    # rerunning the same command finds the study complete and runs nothing
    again = run_sweep(load_spec(_spec(tmp_path)), TINY, SweepOptions(progress=False), log=lambda s: None)
    assert len(again.trials) == 3


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_pruned_trials_are_pruned_in_optuna_and_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path, "overrides: [evaluation.eval_every_n_epochs=2]\n").read_text()
    spec = spec.replace("pruner: none", "pruner: {type: median, n_startup_trials: 0}")
    (tmp_path / "p.yaml").write_text(spec)
    monkeypatch.setattr(optuna.Trial, "should_prune", lambda self: self.number == 1)
    study = run_sweep(load_spec(tmp_path / "p.yaml"), TINY, SweepOptions(progress=False), log=lambda s: None)
    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]  # budget counts PRUNED
    pruned = study.trials[1]
    assert list(pruned.intermediate_values) == [2]
    run = MlflowClient().get_run(pruned.user_attrs["mlflow_run_id"])
    # a pruned trial is a normal outcome: FINISHED (not the red mark of KILLED/FAILED), tagged and named so
    assert run.info.status == "FINISHED" and run.data.tags["vaeok.state"] == "PRUNED"
    assert run.info.run_name.endswith("-pruned") and "epoch 2" in run.data.tags["vaeok.pruned"]


def test_failed_trial_does_not_kill_the_sweep_and_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = sweep_mod.run_experiment
    calls = {"n": 0}

    def flaky(cfg, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise FloatingPointError("VAE loss became non-finite at epoch 3")
        return real(cfg, *args, **kw)

    monkeypatch.setattr(sweep_mod, "run_experiment", flaky)
    messages: list[str] = []
    study = run_sweep(load_spec(_spec(tmp_path)), TINY, SweepOptions(progress=False, retry_failed=1),
                      log=messages.append)
    states = [t.state for t in study.trials]
    assert states.count(TrialState.COMPLETE) == 3 and states.count(TrialState.FAIL) == 1
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert "non-finite" in failed.user_attrs["error"]
    retry = study.trials[failed.number + 1]
    assert retry.user_attrs["retry_of"] == failed.number and retry.params == failed.params
    assert any("FAILED" in m and "non-finite" in m for m in messages)


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_multi_objective_sweep(tmp_path: Path) -> None:
    p = tmp_path / "mo.yaml"
    p.write_text("name: mo\ndirections: [maximize, minimize]\nmetrics: [val/r2, val/ks]\n"
                 f"sampler: {{type: tpe, seed: 0}}\nn_trials: 3\n{SPACE}")
    study = run_sweep(load_spec(p), TINY, SweepOptions(progress=False), log=lambda s: None)
    assert all(len(t.values) == 2 for t in study.trials) and study.best_trials
    parent = next(r for r in _runs(tmp_path) if r.data.tags.get("vaeok.role") == "study")
    figs = {a.path for a in MlflowClient().list_artifacts(parent.info.run_id, "figures")}
    assert "figures/pareto_front.png" in figs


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_spec_change_refuses_to_resume(tmp_path: Path) -> None:
    from vaeok.core.errors import UserError

    run_sweep(load_spec(_spec(tmp_path)), [*TINY, "generator=none"], SweepOptions(progress=False, n_trials=1),
              log=lambda s: None)
    with pytest.raises(UserError, match="different spec"):
        run_sweep(load_spec(_spec(tmp_path)), [*TINY, "generator=none", "seed=3"],
                  SweepOptions(progress=False, n_trials=1), log=lambda s: None)


def test_storage_opened_while_another_process_creates_its_tables(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: a process opening a NEW SQLite study database while another creates Optuna's
    tables failed with "table studies already exists"; it now opens the finished schema."""
    real = optuna.storages.RDBStorage
    calls: list[int] = []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("(sqlite3.OperationalError) table studies already exists")
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)  # what the store boundary builds
    storage = sweep_mod.make_storage(f"sqlite:///{tmp_path}/mlruns/optuna.db", heartbeat=10, retry_failed=0)
    assert len(calls) == 2 and storage.get_all_studies() == []
