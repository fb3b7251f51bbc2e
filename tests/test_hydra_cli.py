"""Hydra habits on `vaeok run`: --cfg job|all [--resolve], --info, --help listing groups and options,
-m/--multirun with comma lists, and `+key=value` validated like any other key. Plus a quiet console."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from vaeok.config.compose import load_config

from .conftest import CONF, TINY, cli_env


def vaeok(*args: str, cwd: Path, warnings_on: bool = False) -> subprocess.CompletedProcess[str]:
    env = cli_env()
    if warnings_on:  # what a user's console shows (cli_env() silences Python warnings)
        env.pop("PYTHONWARNINGS", None)
    return subprocess.run([sys.executable, "-m", "vaeok.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _no_store(tmp_path: Path) -> bool:
    """True if no MLflow run was created (no store at all, or an empty experiment)."""
    db = tmp_path / "mlruns" / "mlflow.db"
    if not db.exists():
        return True
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    exp = mlflow.get_experiment_by_name("vaeok")
    return exp is None or not MlflowClient().search_runs([exp.experiment_id])


def test_cfg_job_prints_the_composed_config_that_composes_back(tmp_path: Path) -> None:
    overrides = ["model.hidden=32", "generator=gmm_vsg", "trainer=fast"]
    res = vaeok("run", "--cfg", "job", *overrides, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert "hydra" not in printed
    assert printed["model"]["hidden"] == 32 and printed["generator"]["name"] == "gmm_vsg"
    assert "${" in res.stdout  # unresolved, as Hydra prints it without --resolve
    assert OmegaConf.create(printed) == OmegaConf.create(OmegaConf.to_container(
        _unresolved(overrides)))
    res = vaeok("run", "--cfg", "job", "--resolve", *overrides, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "${" not in res.stdout
    assert OmegaConf.create(yaml.safe_load(res.stdout)) == load_config(overrides)
    assert _no_store(tmp_path)  # printing the config runs nothing


def _unresolved(overrides: list[str]):  # type: ignore[no-untyped-def]
    from vaeok.config.compose import _compose

    return _compose(tuple(overrides))


def test_cfg_all_adds_hydra_choices(tmp_path: Path) -> None:
    res = vaeok("run", "--cfg", "all", "generator=none", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["hydra"]["runtime"]["choices"]["generator"] == "none"
    assert printed["model"]["hidden"] == 65
    assert _no_store(tmp_path)


def test_info_and_help_list_config_groups_and_options(tmp_path: Path) -> None:
    for flag in ("--info", "--help"):
        res = vaeok("run", flag, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        out = res.stdout
        for group in sorted(p.name for p in CONF.iterdir() if p.is_dir()):
            options = sorted(f.stem for f in (CONF / group).glob("*.yaml"))
            line = next((ln for ln in out.splitlines() if ln.strip().startswith(f"{group}:")), None)
            assert line is not None, f"{flag}: group {group} missing:\n{out}"
            assert all(o in line for o in options), line
        assert "--cfg" in out or flag == "--info"
    info = vaeok("run", "--info", "generator=none", cwd=tmp_path).stdout
    assert "generator=none" in info.replace(": ", "=")  # the chosen defaults
    assert str(CONF) in info  # the config search path
    assert _no_store(tmp_path)


def test_plus_unknown_key_is_refused_before_any_run(tmp_path: Path) -> None:
    for bad, name in (("+model.hiden=3", "model.hiden"), ("+foo=1", "foo"), ("+evaluation.n_split=3", "n_split")):
        res = vaeok("run", *TINY, bad, cwd=tmp_path)
        assert res.returncode == 2, (bad, res.stdout, res.stderr)
        assert name in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert _no_store(tmp_path), bad


def test_plus_keys_the_target_accepts_still_work() -> None:
    cfg = load_config(["+regressor.subsample=0.5"])
    assert cfg.regressor.subsample == 0.5


def test_comma_list_without_multirun_points_to_m_and_sweep(tmp_path: Path) -> None:
    res = vaeok("run", *TINY, "model.hidden=16,32", cwd=tmp_path)
    assert res.returncode == 2
    assert "-m" in res.stderr and "vaeok sweep" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert _no_store(tmp_path)


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
def test_multirun_runs_the_grid_as_an_optuna_grid_study(tmp_path: Path) -> None:
    res = vaeok("run", "-m", *TINY, "model.hidden=8,12", "generator=vae_ok,gmm_vsg", "--no-progress", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    (name,) = optuna.get_all_study_names(storage)
    study = optuna.load_study(study_name=name, storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert {(t.params["model.hidden"], t.params["generator"]) for t in done} == {
        (8, "vae_ok"), (12, "vae_ok"), (8, "gmm_vsg"), (12, "gmm_vsg")}
    assert isinstance(study.sampler, optuna.samplers.GridSampler) or "grid" in str(study.user_attrs.get("spec"))
    assert name in res.stdout


def test_kriging_is_quiet_where_pykrige_takes_sqrt_of_negative_variances() -> None:
    from vaeok.data.datasets import rubber_surrogate
    from vaeok.labelers.kriging import OrdinaryKrigingLabeler

    d = rubber_surrogate()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lab = OrdinaryKrigingLabeler(variogram="linear").fit(d.X, d.y)
        mean, std = lab.predict(d.X[:10] + 0.01, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(std >= 0)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]


@pytest.mark.slow  # end-to-end, >10 s: run by `make test` and CI
def test_run_console_has_no_third_party_warnings(tmp_path: Path) -> None:
    res = vaeok("run", *TINY, "labeler.variogram=linear", cwd=tmp_path, warnings_on=True)
    assert res.returncode == 0, res.stderr
    assert "Warning" not in res.stderr and "warn(" not in res.stderr, res.stderr
    assert os.path.exists(tmp_path / "mlruns")
