"""#17 class 1: code execution through configs, and secrets from the environment.

`_target_` must name an allowlisted callable wherever a config is composed (run, sweep, spec
overrides, promote, --from-run, overlays); `${oc.env:...}` and other resolvers are refused in user
overrides. Every refusal: exit 2, one line naming the key, before any run or study exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .harden_utils import (
    NO_AUG,
    TINY_SPEC,
    assert_nothing_running,
    error_line,
    pg_available,
    query,
    throwaway_pg_database,
    vaeok,
    write_spec,
)

# CLI subprocesses (5-10 s each): slow, run by `make test` and CI, not by the default fast `pytest`
pytestmark = pytest.mark.slow


def _copy_args(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "secret.txt"
    src.write_text("the user's data")
    return src, tmp_path / "stolen.txt"


@pytest.mark.parametrize("overrides", [
    ["regressor._target_=shutil.copyfile", "+regressor._args_=[{src},{dst}]", "~regressor.n_estimators",
     "~regressor.learning_rate", "~regressor.max_depth", "~regressor.random_state"],
    ["regressor=brr", "regressor._target_=shutil.copyfile", "regressor._args_=[{src},{dst}]"],
    ["+regressor.x={{_target_:shutil.copyfile,_args_:[{src},{dst}]}}"],  # nested node
    ["+evil=shutil.copyfile", "regressor=brr", "regressor._target_=${{evil}}", "regressor._args_=[{src},{dst}]"],
], ids=["replace-target", "group-args", "nested", "interpolated"])
def test_run_refuses_a_target_outside_the_allowlist(tmp_path: Path, overrides: list[str]) -> None:
    src, dst = _copy_args(tmp_path)
    proc = vaeok("run", *(o.format(src=src, dst=dst) for o in overrides), cwd=tmp_path)
    line = error_line(proc, "_target_", "shutil.copyfile", "not allowed")
    assert "regressor" in line
    assert not dst.exists(), "the copy ran"
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


@pytest.mark.parametrize("key,target", [
    ("generator._target_", "builtins.exec"),
    ("trainer._target_", "subprocess.Popen"),
    ("regressor._target_", "sklearn.datasets.fetch_openml"),      # a library function, not an estimator
    ("regressor._target_", "sklearn.utils.fixes.os.system"),      # os.system reached through sklearn
    ("trainer._target_", "lightning.pytorch.cli.LightningCLI"),   # instantiates whatever its args name
], ids=["exec", "popen", "sklearn-function", "via-sklearn-module", "lightning-cli"])
def test_targets_outside_the_allowlist_are_refused_naming_the_key(tmp_path: Path, key: str, target: str) -> None:
    error_line(vaeok("run", f"{key}={target}", cwd=tmp_path), key, target)


def test_sweep_spec_overrides_cannot_run_code(tmp_path: Path) -> None:
    src, dst = _copy_args(tmp_path)
    spec = write_spec(tmp_path / "evil.yaml", (
        "name: evil\nsampler: random\npruner: none\nn_trials: 1\n"
        f"overrides: [regressor=brr, regressor._target_=shutil.copyfile, 'regressor._args_=[{src},{dst}]']\n"
        "space:\n  seed: int 1..3\n"))
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path), "regressor._target_")
    assert not dst.exists()
    assert query(tmp_path / "mlruns" / "optuna.db", "SELECT study_name FROM studies") == []


def test_allowlist_extension_by_environment(tmp_path: Path) -> None:
    """VAEOK_ALLOWED_TARGETS adds the user's own estimators (and only by the environment of the
    machine that runs the config, never by the config or a stored study)."""
    (tmp_path / "myreg.py").write_text(
        "from sklearn.base import BaseEstimator, RegressorMixin\n"
        "class Reg(RegressorMixin, BaseEstimator):\n"
        "    def __init__(self, alpha=1.0):\n"
        "        raise ValueError('custom regressor was built')\n")
    args = ("run", "regressor=brr", "regressor._target_=myreg.Reg", "~regressor._args_")
    env = {"PYTHONPATH": f"{tmp_path}:{Path(__file__).resolve().parents[1] / 'src'}"}
    line = error_line(vaeok(*args, cwd=tmp_path, env=env), "regressor._target_", "myreg.Reg")
    assert "VAEOK_ALLOWED_TARGETS" in line
    allowed = vaeok(*args, cwd=tmp_path, env={**env, "VAEOK_ALLOWED_TARGETS": "myreg.*"})
    error_line(allowed, "custom regressor was built")  # got past the allowlist, built by preflight


# --- environment resolvers ------------------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    ["+x=${oc.env:VAEOK_TEST_SECRET}"],
    ["model.activation=${oc.env:VAEOK_TEST_SECRET,relu}"],
    ["+a=oc.env", "+x=${${a}:VAEOK_TEST_SECRET}"],  # resolver name built by interpolation
    ["+x=${oc.decode:${oc.env:VAEOK_TEST_SECRET}}"],
], ids=["plain", "default", "interpolated-name", "nested"])
def test_environment_resolvers_are_refused_in_overrides(tmp_path: Path, overrides: list[str]) -> None:
    proc = vaeok("run", *overrides, cwd=tmp_path, env={"VAEOK_TEST_SECRET": "hunter2"})
    line = error_line(proc, "resolver")
    assert "hunter2" not in proc.stderr + proc.stdout and "hunter2" not in line
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_environment_resolver_in_spec_overrides_is_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "env.yaml", TINY_SPEC.format(name="env", n=1).replace(
        "overrides: [", "overrides: ['+x=${oc.env:VAEOK_TEST_SECRET}', "))
    proc = vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path, env={"VAEOK_TEST_SECRET": "hunter2"})
    error_line(proc, "oc.env")
    assert "hunter2" not in proc.stderr + proc.stdout


def test_plain_interpolations_in_overrides_still_work(tmp_path: Path) -> None:
    """The rule refuses resolvers, not references to other keys: model.hidden=${evaluation.holdout_seed}
    composes (and then fails the range check that proves it was resolved: holdout_seed 0 -> hidden 0).
    (`+n=0` would be refused as an unknown key, see test_hydra_cli.py.)"""
    proc = vaeok("run", "evaluation.holdout_seed=0", "model.hidden=${evaluation.holdout_seed}", cwd=tmp_path)
    error_line(proc, "model.hidden must be >= 1")


# --- a poisoned study in a shared PostgreSQL database, replayed by promote -----------------------------
@pytest.mark.skipif(not pg_available(), reason="needs PostgreSQL on 127.0.0.1:5432")
@pytest.mark.parametrize("poison", ["target", "env"])
def test_poisoned_postgres_study_is_refused_by_promote(tmp_path: Path, poison: str) -> None:
    import optuna

    src, dst = _copy_args(tmp_path)
    base = {"target": ["generator=none", "regressor=brr", "regressor._target_=shutil.copyfile",
                       f"regressor._args_=[{src},{dst}]"],
            "env": [*NO_AUG, "+x=${oc.env:VAEOK_TEST_SECRET}"]}[poison]
    with throwaway_pg_database() as url:
        study = optuna.create_study(study_name="shared", storage=url, direction="maximize")
        study.set_user_attr("base_overrides", base)  # what a writer of the shared database can plant
        study.add_trial(optuna.trial.create_trial(
            params={"seed": 1}, distributions={"seed": optuna.distributions.IntDistribution(1, 3)}, value=0.9))
        proc = vaeok("promote", "--study", "shared", "--storage", url, cwd=tmp_path,
                     env={"VAEOK_TEST_SECRET": "hunter2"})
    line = error_line(proc, *(["regressor._target_", "shutil.copyfile"] if poison == "target" else ["oc.env"]))
    assert "hunter2" not in proc.stderr + proc.stdout + line
    assert not dst.exists()
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # refused before any MLflow run


# --- --from-run and promoted overlays ---------------------------------------------------------------
def _logged_run(tmp_path: Path, config_yaml: str) -> str:
    """A run in tmp_path/mlruns whose config.yaml artifact is `config_yaml` (a tampered store)."""
    import mlflow

    (tmp_path / "mlruns").mkdir(exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    exp = mlflow.create_experiment("vaeok", artifact_location=(tmp_path / "mlruns" / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_text(config_yaml, "config.yaml")
    return run.info.run_id


@pytest.mark.slow
def test_from_run_refuses_a_tampered_logged_config(tmp_path: Path) -> None:
    src, dst = _copy_args(tmp_path)
    text = ("regressor:\n  _target_: shutil.copyfile\n  _args_: [" + json.dumps(str(src)) + ", "
            + json.dumps(str(dst)) + "]\n")
    run_id = _logged_run(tmp_path, text)
    proc = vaeok("run", "--from-run", run_id, cwd=tmp_path)
    error_line(proc, "regressor._target_", "shutil.copyfile")
    assert not dst.exists()
    assert_nothing_running(tmp_path)


def test_overlay_in_the_config_dir_is_checked_too(tmp_path: Path) -> None:
    import shutil

    from .conftest import CONF

    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    src, dst = _copy_args(tmp_path)
    (conf / "experiment" / "promoted_evil.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /regressor: brr\n"
        f"regressor:\n  _target_: shutil.copyfile\n  _args_: ['{src}', '{dst}']\n")
    proc = vaeok("run", "experiment=promoted_evil", cwd=tmp_path, env={"VAEOK_CONFIG_DIR": str(conf)})
    error_line(proc, "regressor._target_")
    assert not dst.exists()
