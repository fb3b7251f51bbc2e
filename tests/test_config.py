from pathlib import Path

import pytest

from vaeok.config.compose import load_config
from vaeok.core.errors import UserError

from .conftest import CONF

GROUPS = ["data", "model", "trainer", "generator", "labeler", "regressor", "evaluation", "tracking", "experiment"]


def test_defaults_are_paper_table1() -> None:
    cfg = load_config()
    assert (cfg.model.hidden, cfg.model.latent, cfg.model.n_layers) == (65, 2, 1)
    assert cfg.model.activation == "relu" and cfg.model.lr == 0.002
    assert cfg.data.batch_size == 64 and cfg.trainer.max_epochs == 400
    assert cfg.generator.n_virtual == 1000 and cfg.regressor._target_.endswith("GradientBoostingRegressor")
    assert cfg.evaluation.protocol == "honest_kfold"


@pytest.mark.parametrize("group", GROUPS)
def test_every_group_option_composes(group: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///x.db")
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert options, f"no options in conf/{group}"
    for opt in options:
        extra = ["data.path=x.csv", "data.target=y"] if (group, opt) == ("data", "csv") else []
        cfg = load_config([f"{group}={opt}", *extra])
        assert cfg.seed == 42


def test_typo_fails_at_compose_time() -> None:
    with pytest.raises(UserError, match="hiden"):
        load_config(["model.hiden=3"])


def test_wrong_type_fails() -> None:
    with pytest.raises(UserError, match="abc"):
        load_config(["trainer.max_epochs=abc"])


@pytest.mark.parametrize("override,key", [("model.lr=-1", "model.lr"), ("evaluation.protocol=magic", "protocol"),
                                          ("model.activation=swish2", "activation")])
def test_range_checks(override: str, key: str) -> None:
    with pytest.raises(UserError, match=key):
        load_config([override])


def test_missing_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(tmp_path / "nope"))
    with pytest.raises(UserError, match="config directory"):
        load_config()


@pytest.mark.parametrize("values", [
    {"model.hidden": 72, "model.lr": 0.0097, "trainer.max_epochs": 300, "data.batch_size": 16},
    {"model.activation": "tanh", "labeler.variogram": "gaussian", "seed": 3},
    {"generator": "none", "model.hidden": 8},
    {"generator": "vae_ok", "generator.n_virtual": 300, "labeler.nugget_fraction": None, "model.lr": 0.004},
    {"generator": "gmm_vsg", "generator.n_virtual": 200, "labeler.nugget_fraction": 0.2},
])
def test_trial_config_equals_full_composition(values: dict) -> None:
    from vaeok.config.compose import load_trial_config, to_yaml
    from vaeok.config.overrides import override

    base = ["experiment=smoke", "evaluation.eval_every_n_epochs=200"]
    fast = load_trial_config(base, values)
    full = load_config([*base, *(override(k, v) for k, v in values.items())])
    assert to_yaml(fast) == to_yaml(full)
    if "model.hidden" in values and "generator" not in values:
        assert fast.generator.model.hidden == values["model.hidden"]  # interpolations follow


def test_trial_config_rejects_bad_values() -> None:
    from vaeok.config.compose import load_trial_config

    with pytest.raises(UserError, match="max_epochs"):
        load_trial_config([], {"trainer.max_epochs": "abc"})
    with pytest.raises(UserError, match="hidem"):
        load_trial_config([], {"model.hidem": 3})
