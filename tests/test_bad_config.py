"""Bad configs, study specs and command-line options through the real CLI (`run`, `sweep`, `compare`,
`promote`): exit 2 with one stderr line naming the offending key, before any work starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from vaeok.cli import main

FAST = ["tracking.enabled=false"]  # no work starts, so the default (full-size) config is fine


def one_line_error(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the CLI expecting exit 2, one stderr line, and no experiment, study or comparison started."""
    import optuna

    import vaeok.experiment
    import vaeok.report.compare

    def forbidden(*a: object, **k: object) -> None:
        raise AssertionError("work started although the config is bad")

    monkeypatch.setattr(vaeok.experiment, "run_experiment", forbidden)
    monkeypatch.setattr(optuna, "create_study", forbidden)
    monkeypatch.setattr(vaeok.report.compare, "compute", forbidden)
    code = main(args)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


RUN_CASES = [
    ("unknown_key", ["model.nope=3"], ["model.nope"]),
    ("unknown_top_key", ["nope=3"], ["'nope'"]),
    ("wrong_type", ["model.hidden=abc"], ["model.hidden=abc"]),
    ("wrong_type_float", ["model.lr=fast"], ["model.lr=fast"]),
    ("negative_lr", ["model.lr=-0.001"], ["model.lr must be > 0"]),
    ("infinite_lr", ["model.lr=1e999"], ["model.lr must be a finite number"]),
    ("nan_beta", ["model.beta=nan"], ["model.beta must be a finite number"]),
    ("batch_0", ["data.batch_size=0"], ["data.batch_size must be >= 1"]),
    ("epochs_0", ["trainer.max_epochs=0"], ["trainer.max_epochs must be >= 1"]),
    ("hidden_0", ["model.hidden=0"], ["model.hidden must be >= 1"]),
    ("hidden_huge", ["model.hidden=100000000"], ["model.hidden must be <="]),
    ("latent_0", ["model.latent=0"], ["model.latent must be >= 1"]),
    ("latent_wider_than_features", ["model.latent=4"], ["model.latent=4 exceeds the VAE's input width 3"]),
    ("latent_vsg_counts_target", ["generator=vae_vsg", "model.latent=5"], ["input width 4", "+ the target"]),
    ("n_virtual_negative", ["generator.n_virtual=-1"], ["generator.n_virtual must be >= 0"]),
    ("n_virtual_huge", ["generator.n_virtual=100000000"], ["generator.n_virtual must be <="]),
    ("folds_1", ["evaluation.n_splits=1"], ["evaluation.n_splits must be >= 2"]),
    ("more_folds_than_rows", ["evaluation.n_splits=100"], ["evaluation.n_splits=100 is more folds than rows"]),
    ("holdout_half", ["evaluation.holdout_fraction=0.5"], ["evaluation.holdout_fraction"]),
    ("unknown_protocol", ["evaluation.protocol=magic"], ["evaluation.protocol"]),
    ("unknown_activation", ["model.activation=swish2"], ["model.activation"]),
    ("unknown_variogram", ["labeler.variogram=cubic"], ["labeler.variogram"]),
    ("unknown_backend", ["labeler.backend=scipy"], ["labeler.backend"]),
    ("negative_nugget", ["labeler.nugget=-1"], ["labeler.nugget"]),
    ("max_points_2", ["labeler.max_points=2"], ["labeler.max_points"]),
    ("unknown_generator", ["generator=nope"], ["generator/nope", "options of generator:", "vae_ok"]),
    ("unknown_regressor", ["regressor=xgb"], ["regressor/xgb", "gbr"]),
    ("unknown_experiment", ["experiment=nope"], ["experiment/nope", "smoke"]),
    ("sklearn_param", ["regressor.n_estimators=0"], ["'n_estimators' parameter of GradientBoostingRegressor"]),
    ("sklearn_nested_param", ["regressor=svr", "regressor.regressor._args_.1.C=-1"], ["'C' parameter of SVR"]),
    ("surrogate_too_big", ["data.max_rows=50"], ["86 rows exceed data.max_rows=50"]),
    # a GBR key on another regressor (an overlay written for GBR, then regressor=svr)
    ("sklearn_unknown_param", ["regressor=svr", "+regressor.n_estimators=20"],
     ["regressor.n_estimators", "TransformedTargetRegressor takes no 'n_estimators'"]),
    ("torch_threads_0", ["torch_threads=0"], ["torch_threads must be >= 1"]),
    ("loss_log_every_0", ["tracking.loss_log_every=0"], ["tracking.loss_log_every"]),
    ("compare_output_escapes", ["compare.output_dir=../../outside"], ["compare.output_dir=../../outside escapes"]),
]


@pytest.mark.parametrize("overrides,expected", [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES])
def test_run_rejects_bad_config(overrides: list[str], expected: list[str], capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    line = one_line_error(["run", *FAST, *overrides], capsys, monkeypatch)
    for fragment in expected:
        assert fragment in line, line


@pytest.mark.parametrize("overrides,expected", [
    (["model.latent=4"], "model.latent=4 exceeds"),
    (["model.lr=-1"], "model.lr must be > 0"),
    (["generator=nope"], "generator/nope"),
    (["evaluation.n_splits=100"], "evaluation.n_splits=100"),
], ids=["latent", "lr", "group", "folds"])
def test_sweep_rejects_bad_base_config(overrides: list[str], expected: str, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    line = one_line_error(["sweep", "--no-progress", *FAST, *overrides], capsys, monkeypatch)
    assert expected in line
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


def test_compare_rejects_data_config_mismatch(capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    line = one_line_error(["compare", "experiment=compare_fast", "tracking.enabled=false", "model.latent=4"],
                          capsys, monkeypatch)
    assert "model.latent=4 exceeds" in line


SPEC_OK = """name: t
sampler: tpe
pruner: none
n_trials: 1
space:
  model.hidden: int 8..16
"""

SPEC_CASES = [
    ("unknown_spec_key", SPEC_OK + "n_trails: 3\n", ["unknown spec key(s): n_trails"]),
    ("unknown_sampler", SPEC_OK.replace("sampler: tpe", "sampler: bayes"), ["sampler type must be one of"]),
    ("unknown_pruner", SPEC_OK.replace("pruner: none", "pruner: early"), ["pruner type must be one of"]),
    ("bad_sampler_option", SPEC_OK.replace("sampler: tpe", "sampler: {type: tpe, n_startup: 3}"),
     ["sampler", "n_startup"]),
    ("bad_pruner_option", SPEC_OK.replace("pruner: none", "pruner: {type: median, warmup: 3}"),
     ["pruner", "warmup"]),
    ("bad_range_syntax", SPEC_OK.replace("int 8..16", "int 8-16"), ["sweep space 'model.hidden': cannot parse"]),
    ("low_not_below_high", SPEC_OK.replace("int 8..16", "int 16..8"), ["low (16) must be < high (8)"]),
    ("log_with_zero", SPEC_OK.replace("model.hidden: int 8..16", "model.lr: float 0..1 log"), ["log scale"]),
    ("unknown_space_key", SPEC_OK.replace("model.hidden", "model.hiden"), ["sweep space 'model.hiden'"]),
    ("space_value_out_of_range", SPEC_OK.replace("int 8..16", "int 0..16"),
     ["sweep space 'model.hidden' value 0", "model.hidden must be >= 1"]),
    ("space_value_vs_data", SPEC_OK.replace("model.hidden: int 8..16", "model.latent: int 1..4"),
     ["sweep space 'model.latent' value 4", "exceeds the VAE's input width 3"]),
    ("space_value_vs_sklearn", SPEC_OK.replace("model.hidden: int 8..16", "regressor.max_depth: int 0..3"),
     ["sweep space 'regressor.max_depth' value 0", "max_depth"]),
    ("space_unknown_group_option", SPEC_OK.replace("model.hidden: int 8..16", "generator: [vae_ok, nope]"),
     ["sweep space 'generator' value 'nope'", "generator/nope"]),
    ("bad_n_trials", SPEC_OK.replace("n_trials: 1", "n_trials: 0"), ["n_trials must be an integer in 1..100000"]),
    ("bad_timeout", SPEC_OK + "timeout: soon\n", ["timeout must be a positive, finite number"]),
    ("unsafe_name", SPEC_OK.replace("name: t", "name: ../../x"), ["study name '../../x' cannot be used"]),
    ("bad_direction", SPEC_OK + "direction: up\n", ["direction must be maximize or minimize"]),
    ("not_a_mapping", "- a\n- b\n", ["a spec is a mapping"]),
    ("invalid_yaml", "space: {a: [\n", ["invalid YAML"]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_sweep_rejects_bad_spec(text: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    line = one_line_error(["sweep", "--spec", str(spec), "--no-progress", *FAST], capsys, monkeypatch)
    for fragment in expected:
        assert fragment in line, line
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


@pytest.mark.parametrize("args,expected", [
    (["--n-trials", "0"], "--n-trials must be >= 1"),
    (["--workers", "0"], "--workers must be >= 1"),
    (["--retry-failed", "-1"], "--retry-failed must be >= 0"),
    (["--heartbeat", "0"], "--heartbeat must be >= 1"),
    (["--timeout", "-5"], "--timeout must be a positive, finite number"),
    (["--study", "../../etc/x"], "--study '../../etc/x' cannot be used in a file name"),
    (["--spec", "nope.yaml"], "sweep spec not found"),
], ids=["n_trials", "workers", "retry", "heartbeat", "timeout", "study_name", "spec_missing"])
def test_sweep_rejects_bad_options(args: list[str], expected: str, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert expected in one_line_error(["sweep", *args, "--no-progress", *FAST], capsys, monkeypatch)


@pytest.mark.parametrize("args,expected", [
    (["--study", "../../etc/x"], "--study '../../etc/x' cannot be used in a file name"),
    (["--study", "ok", "--model-name", "a/b"], "--model-name 'a/b'"),
    (["--study", "ok", "--metric", "accuracy"], "--metric must be one of"),
], ids=["study_path", "model_name_path", "metric"])
def test_promote_rejects_bad_names_before_work(args: list[str], expected: str, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    assert expected in one_line_error(["promote", *args], capsys, monkeypatch)
