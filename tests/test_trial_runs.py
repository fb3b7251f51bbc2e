"""What an MLflow + Optuna user sees after a sweep: one MLflow run per Optuna trial in every state,
pruned runs with their params and intermediate values, lean params, datasets, system tags."""

from __future__ import annotations

import collections
from pathlib import Path

import mlflow
import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from vaeok.study.spec import load_spec
from vaeok.study.sweep import SweepOptions, run_sweep

from .conftest import CONF, TINY

# generator=none has no other searched key: every later `none` trial repeats trial 0's parameters
SPACE = ("space:\n  generator: categorical [none, vae_ok]\n"
         "  model.hidden: int 4..16 if generator=vae_ok\n")


def _client(tmp_path: Path) -> tuple[MlflowClient, str]:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    return MlflowClient(), mlflow.get_experiment_by_name("vaeok").experiment_id


def _trial_runs(tmp_path: Path) -> dict[int, mlflow.entities.Run]:
    client, exp = _client(tmp_path)
    runs = client.search_runs([exp], "tags.`vaeok.trial` != ''", max_results=1000)
    out: dict[int, mlflow.entities.Run] = {}
    for r in runs:
        n = int(r.data.tags["vaeok.trial"])
        assert n not in out, f"trial {n} has two MLflow runs"
        out[n] = r
    return out


def _state(t: optuna.trial.FrozenTrial) -> str:
    return "DUPLICATE" if "duplicate_of" in t.user_attrs else t.state.name


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[optuna.Study, Path]:
    """A tiny study with COMPLETE, PRUNED, FAIL (in training and before it) and reused-duplicate trials,
    and its work directory; built once for the module (the tests only read it).

    Outcomes are forced, not left to chance: the first trained trial after trial 1 is pruned, the
    2nd trained config raises in training, the 4th composed config fails to compose (no training)."""
    workdir = tmp_path_factory.mktemp("mixed")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.chdir(workdir)
        monkeypatch.setenv("VAEOK_CONFIG_DIR", str(CONF))
        return _mixed_study(workdir, monkeypatch), workdir


@pytest.fixture
def mixed_study(mixed: tuple[optuna.Study, Path]) -> optuna.Study:
    return mixed[0]


@pytest.fixture
def mixed_dir(mixed: tuple[optuna.Study, Path]) -> Path:
    return mixed[1]


def _mixed_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> optuna.Study:
    import vaeok.experiment as run_mod
    import vaeok.study.sweep as sweep_mod
    from vaeok.core.errors import UserError

    spec = tmp_path / "mixed.yaml"
    spec.write_text("name: mixed\nsampler: {type: random, seed: 3}\npruner: {type: median, n_startup_trials: 0}\n"
                    "n_trials: 7\noverrides: [evaluation.eval_every_n_epochs=2]\n" + SPACE)
    calls: collections.Counter[str] = collections.Counter()
    pruned: list[int] = []

    def should_prune(self: optuna.Trial) -> bool:  # the first trial after the references that asks
        if self.number >= 2 and (not pruned or pruned[0] == self.number):
            pruned[:1] = [self.number]
            return True
        return False

    monkeypatch.setattr(optuna.Trial, "should_prune", should_prune)
    real_eval, real_load = run_mod.evaluate, sweep_mod.load_trial_config

    def flaky_evaluate(cfg, data, report=None):  # type: ignore[no-untyped-def]
        calls["evaluate"] += 1
        if calls["evaluate"] == 2:
            raise RuntimeError("injected failure in training")
        return real_eval(cfg, data, report)

    def flaky_load(base, values):  # type: ignore[no-untyped-def]
        calls["load"] += 1
        if calls["load"] == 4:
            raise UserError("bad config: injected compose failure")
        return real_load(base, values)

    monkeypatch.setattr(run_mod, "evaluate", flaky_evaluate)
    monkeypatch.setattr(sweep_mod, "load_trial_config", flaky_load)
    return run_sweep(load_spec(spec), TINY, SweepOptions(progress=False), log=lambda s: None)


def test_every_trial_state_has_exactly_one_mlflow_run(mixed_study: optuna.Study, mixed_dir: Path) -> None:
    trials = mixed_study.get_trials(deepcopy=False)
    per_state = collections.Counter(_state(t) for t in trials)
    assert per_state["COMPLETE"] >= 1 and per_state["PRUNED"] >= 1 and per_state["FAIL"] == 2, per_state
    assert per_state["DUPLICATE"] >= 1, per_state
    runs = _trial_runs(mixed_dir)
    assert set(runs) == {t.number for t in trials}  # exactly one run per trial, whatever its state
    run_state = collections.Counter(
        "DUPLICATE" if "vaeok.duplicate_of" in r.data.tags else r.data.tags.get("vaeok.state") for r in runs.values())
    expected = collections.Counter({"COMPLETE": per_state["COMPLETE"], "PRUNED": per_state["PRUNED"],
                                    "FAILED": per_state["FAIL"], "DUPLICATE": per_state["DUPLICATE"]})
    assert run_state == expected
    for t in trials:
        assert t.user_attrs["mlflow_run_id"] == runs[t.number].info.run_id
    client, exp_id = _client(mixed_dir)
    parent = client.search_runs([exp_id], "tags.`vaeok.role` = 'study'")[0]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in runs.values())


def test_pruned_and_duplicate_runs_are_recognisable_and_complete(mixed_study: optuna.Study, mixed_dir: Path) -> None:
    runs = _trial_runs(mixed_dir)
    client, _ = _client(mixed_dir)
    pruned = [t for t in mixed_study.trials if t.state == TrialState.PRUNED]
    assert pruned
    for t in pruned:
        run = runs[t.number]
        # a pruned trial is a normal outcome of the search, not a failure or an interrupt
        assert run.info.status == "FINISHED" and run.data.tags["vaeok.state"] == "PRUNED"
        assert run.info.run_name.endswith("-pruned")
        assert run.data.params["model.hidden"] == str(t.params["model.hidden"])
        history = client.get_metric_history(run.info.run_id, "val/r2_intermediate")
        assert {m.step: m.value for m in history} == pytest.approx(dict(t.intermediate_values))
        assert "train/loss" in run.data.metrics  # what it trained before it was stopped
        assert "val/r2" not in run.data.metrics  # no final score: it never reached the end
    dups = [t for t in mixed_study.trials if "duplicate_of" in t.user_attrs]
    assert dups
    for t in dups:
        run, orig = runs[t.number], runs[t.user_attrs["duplicate_of"]]
        assert run.info.status == "FINISHED"
        assert run.data.tags["vaeok.duplicate_of"] == str(t.user_attrs["duplicate_of"])
        assert run.info.run_name.endswith(f"-dup-t{t.user_attrs['duplicate_of']:03d}")
        assert run.data.metrics["val/r2"] == pytest.approx(orig.data.metrics["val/r2"]) == pytest.approx(t.value)
        assert run.data.params == orig.data.params
    failed = [t for t in mixed_study.trials if t.state == TrialState.FAIL]
    for t in failed:
        assert runs[t.number].info.status == "FAILED"


def test_trial_params_are_lean_and_searched_knobs_marked(mixed_study: optuna.Study, mixed_dir: Path) -> None:
    runs = _trial_runs(mixed_dir)
    done = next(t for t in mixed_study.trials if t.state == TrialState.COMPLETE
                and t.params.get("generator") == "vae_ok" and "duplicate_of" not in t.user_attrs)
    run = runs[done.number]
    params = run.data.params
    assert not [k for k in params if k.startswith(("compare.", "tracking.", "torch_threads"))]
    plumbing = ("trainer.enable_progress_bar", "trainer.logger", "trainer.enable_checkpointing",
                "trainer.enable_model_summary", "trainer._target_", "trainer.accelerator", "trainer.devices")
    assert not [k for k in params if k in plumbing]
    for key in ("seed", "data.name", "model.hidden", "model.lr", "trainer.max_epochs", "generator.name",
                "generator.n_virtual", "labeler.variogram", "evaluation.protocol", "evaluation.n_splits"):
        assert key in params, key
    assert len(params) <= 45
    assert run.data.tags["vaeok.searched"] == "generator,model.hidden"
    client, _ = _client(mixed_dir)
    assert client.download_artifacts(run.info.run_id, "config.yaml")  # the full config is still there


def test_study_parent_describes_itself_and_experiment_kind(mixed_study: optuna.Study, mixed_dir: Path) -> None:
    client, exp_id = _client(mixed_dir)
    assert client.get_experiment(exp_id).tags.get("mlflow.experimentKind") == "custom_model_development"
    parent = client.search_runs([exp_id], "tags.`vaeok.role` = 'study'")[0]
    note = parent.data.tags["mlflow.note.content"]
    assert "mixed" in note and "generator" in note and "model.hidden" in note  # spec: the searched space
    assert "7" in note  # budget
    best = max((t for t in mixed_study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"{best.value:.4f}" in note and f"trial {best.number}" in note
    assert mixed_study.metric_names == ["val/r2"]


def test_runs_log_their_datasets(mixed_study: optuna.Study, mixed_dir: Path) -> None:
    runs = _trial_runs(mixed_dir)
    for t in mixed_study.trials:
        if t.state == TrialState.FAIL:
            continue
        inputs = runs[t.number].inputs.dataset_inputs
        by_context = {next(tag.value for tag in i.tags if tag.key == "mlflow.data.context"): i.dataset for i in inputs}
        assert set(by_context) == {"development"}, by_context  # trials never see the holdout
        ds = by_context["development"]
        assert ds.name.startswith("rubber_surrogate") and len(ds.digest) >= 8
        assert '"num_rows": 86' in ds.profile  # no holdout: 15 % of 86 rows is under evaluation.holdout_min_rows
