"""Augmentation must earn its place: reference trials in studies, the promotion gate, reports."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from vaeok.cli import main
from vaeok.registry.promote import CHALLENGER, CHAMPION, GATE_IS_BASELINE, GATE_OVERRIDDEN, GATE_REFUSED, promote
from vaeok.study.baseline import BASELINE, PAPER_DEFAULT, ROLE
from vaeok.study.report import format_top
from vaeok.study.spec import load_spec
from vaeok.study.sweep import SweepOptions, run_sweep
from vaeok.tracking.runs import absolute_sqlite_uri

from .promote_utils import FAST, STORAGE, copy_conf, make_study

SPEC = """name: {name}
sampler: {{type: tpe, seed: 0, n_startup_trials: 2, multivariate: true, group: true}}
pruner: none
n_trials: {n}
space:
  generator: categorical [none, vae_ok]
  generator.n_virtual: int 100..1000 step 100 if generator=vae_ok
  model.hidden: int 8..128 if generator=vae_ok
"""


@pytest.fixture
def conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private conf/ copy (promote writes experiment overlays into it)."""
    path = copy_conf(tmp_path)
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(path))
    return path


def _spec(tmp_path: Path, name: str, n: int) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(SPEC.format(name=name, n=n))
    return p


def _noise_csv(tmp_path: Path) -> Path:
    """A data set kriging cannot help with: the target is pure noise, independent of the features."""
    rng = np.random.default_rng(7)
    X = rng.uniform(0, 1, size=(60, 3))
    df = pd.DataFrame(X, columns=["a", "b", "c"]).assign(y=rng.normal(10.0, 1.0, 60))
    path = tmp_path / "noise.csv"
    df.to_csv(path, index=False)
    return path


def _sweep(tmp_path: Path, name: str, n: int, base: list[str]):
    return run_sweep(load_spec(_spec(tmp_path, name, n)), base, SweepOptions(progress=False), log=lambda s: None)


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
def test_study_starts_with_baseline_and_paper_default_and_vae_ok_beats_baseline(tmp_path: Path) -> None:
    """On the embedded smooth surrogate, the paper's VAE-OK (trial 1) beats no augmentation (trial 0),
    and the parent run, the trials table and the console table all say so."""
    study = _sweep(tmp_path, "smooth", 2, ["regressor.n_estimators=100"])
    base, paper = study.trials[0], study.trials[1]
    assert base.user_attrs[ROLE] == BASELINE and base.params == {"generator": "none"}
    assert paper.user_attrs[ROLE] == PAPER_DEFAULT
    assert paper.params == {"generator": "vae_ok", "generator.n_virtual": 1000, "model.hidden": 65}
    assert paper.value > base.value + 0.01
    mlflow.set_tracking_uri(absolute_sqlite_uri("sqlite:///mlruns/mlflow.db"))
    client = MlflowClient()
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    m = parent.data.metrics
    assert m["baseline/r2"] == pytest.approx(base.value) and m["paper_default/r2"] == pytest.approx(paper.value)
    assert m["best/r2"] == pytest.approx(study.best_value)
    assert m["gain_over_baseline"] == pytest.approx(study.best_value - base.value) and m["gain_over_baseline"] > 0
    assert client.get_run(base.user_attrs["mlflow_run_id"]).data.tags[ROLE] == BASELINE
    table = format_top(study, load_spec(_spec(tmp_path, "smooth", 2)))
    assert "baseline" in table and "paper_default" in table
    assert "better than the best no-augmentation reference" in table and "corrected R2" in table


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
def test_noise_data_best_trial_and_promoted_model_no_worse_than_baseline(tmp_path: Path, conf: Path) -> None:
    """Where kriging cannot help, the study still reports the baseline and promote never makes a
    model worse than no augmentation the champion."""
    base = ["data=csv", f"data.path={_noise_csv(tmp_path)}", "data.target=y", "data.name=noise",
            "trainer.max_epochs=100", "regressor.n_estimators=50", "tracking.log_figures=false"]
    study = _sweep(tmp_path, "noise", 3, base)
    baseline_value = study.trials[0].value
    assert study.trials[0].user_attrs[ROLE] == BASELINE
    assert study.best_value >= baseline_value
    result = promote("noise", STORAGE)
    assert result.holdout_metrics == {}  # 60 rows: no holdout, decided on the out-of-fold evidence
    client = MlflowClient()
    version = client.get_model_version(result.model_name, result.version)
    assert version.tags["baseline_gate"] == result.gate
    if result.alias == CHAMPION:
        assert result.gate == GATE_IS_BASELINE or result.evidence["selection/p_better_than_baseline"] >= 0.5
    else:
        assert result.gate == GATE_REFUSED
        with pytest.raises(mlflow.exceptions.MlflowException):
            client.get_model_version_by_alias(result.model_name, CHAMPION)


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_gate_refuses_a_candidate_worse_than_baseline_and_the_flag_overrides(
        tmp_path: Path, conf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 5 epochs and 50 virtual rows: measured worse than GBR alone on the holdout (R2 0.926 vs 0.945)
    make_study("weak", [{"model.hidden": 65}], log_runs=False)
    assert main(["promote", "--study", "weak", "--model-name", "weak"]) == 0
    out = capsys.readouterr().out
    refused = [line for line in out.splitlines() if line.startswith("REFUSED")]
    assert len(refused) == 1 and "worse than the no-augmentation baseline" in refused[0]
    assert "baseline on the same holdout" in out
    client = MlflowClient()
    v1 = client.get_model_version("weak", "1")
    assert v1.tags["baseline_gate"] == GATE_REFUSED and v1.tags["allow_worse_than_baseline"] == "false"
    cand, base = float(v1.tags["holdout_r2"]), float(v1.tags["baseline_holdout_r2"])
    assert cand < base and f"{cand:.4f}" in refused[0] and f"{base:.4f}" in refused[0]
    assert client.get_model_version_by_alias("weak", CHALLENGER).version == 1
    with pytest.raises(mlflow.exceptions.MlflowException):
        client.get_model_version_by_alias("weak", CHAMPION)
    run = client.get_run(v1.tags["run_id"])
    assert run.data.metrics["baseline_holdout/r2"] == pytest.approx(base, rel=1e-5)
    assert run.data.metrics["holdout/gain_over_baseline"] == pytest.approx(cand - base, rel=1e-4)

    assert main(["promote", "--study", "weak", "--model-name", "weak", "--allow-worse-than-baseline"]) == 0
    assert "promoted anyway" in capsys.readouterr().out
    v2 = client.get_model_version_by_alias("weak", CHAMPION)
    assert v2.version == 2 and v2.tags["baseline_gate"] == GATE_OVERRIDDEN
    assert v2.tags["allow_worse_than_baseline"] == "true"


def test_baseline_candidate_passes_the_gate(tmp_path: Path, conf: Path) -> None:
    make_study("plain", [{"generator": "none"}], base=FAST, log_runs=False)
    result = promote("plain", STORAGE, model_name="plain")
    assert result.gate == GATE_IS_BASELINE and result.alias == CHAMPION
    assert result.baseline_metrics["r2"] == result.holdout_metrics["r2"]


def test_repeated_parameters_are_not_rerun(tmp_path: Path) -> None:
    """generator=none has no other searched keys: a second draw of it reuses trial 0's result."""
    p = tmp_path / "dup.yaml"
    p.write_text("name: dup\nsampler: {type: random, seed: 0}\npruner: none\nn_trials: 3\n"
                 "space:\n  generator: categorical [none]\n")
    messages: list[str] = []
    study = run_sweep(load_spec(p), FAST, SweepOptions(progress=False, max_repeats=6), log=messages.append)
    first, *again = study.trials
    assert first.user_attrs[ROLE] == BASELINE and "mlflow_run_id" in first.user_attrs
    # the space has one point: every later draw reuses trial 0, none counts, and the session says so
    assert len(again) == 6 and {t.user_attrs.get("duplicate_of") for t in again} == {0}
    assert all(t.value == first.value for t in again)
    assert any("no new points left (1 distinct configs)" in m for m in messages)
    table = format_top(study, load_spec(p))
    lines = table.splitlines()  # header x2, trial 0 (its repeats left out), verdict, selection evidence
    assert "= trial 0" not in table and lines[3].startswith("the best trial is the no-augmentation baseline")
