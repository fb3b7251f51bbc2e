from pathlib import Path

import pytest

from vaeok.config.overrides import override
from vaeok.core.errors import UserError
from vaeok.study.spec import check_keys, load_spec, parse_param

REPO = Path(__file__).resolve().parents[1]


def test_compact_syntax() -> None:
    p = parse_param("trainer.max_epochs", "int 100..1000 step 50")
    assert (p.kind, p.low, p.high, p.step, p.log) == ("int", 100, 1000, 50, False)
    assert p.grid()[:3] == [100, 150, 200] and p.grid()[-1] == 1000
    p = parse_param("model.lr", "float 1e-3..1e-2 log")
    assert (p.kind, p.low, p.high, p.log) == ("float", 1e-3, 1e-2, True)
    p = parse_param("data.batch_size", "categorical [16, 32, 64, 128]")
    assert p.choices == (16, 32, 64, 128)
    assert parse_param("model.activation", ["relu", "tanh"]).choices == ("relu", "tanh")
    assert parse_param("model.hidden", {"type": "int", "low": 8, "high": 16}).high == 16


@pytest.mark.parametrize("value,match", [
    ("int 10..5", "low .* must be < high"),
    ("float 0..1 log", "log scale needs low > 0"),
    ("int 1..10 step 0", "step must be > 0"),
    ("int 1.5..10", "integer bounds"),
    ("categorical []", "non-empty"),
    ("between 1 and 2", "cannot parse"),
    ({"type": "weird"}, "type must be"),
])
def test_bad_ranges(value, match: str) -> None:
    with pytest.raises(UserError, match=match):
        parse_param("model.hidden", value)


@pytest.mark.parametrize("spec", sorted((REPO / "sweeps").glob("*.yaml")))
def test_shipped_specs_are_valid(spec: Path) -> None:
    s = load_spec(spec)
    check_keys(s, [])
    assert s.space and s.n_trials >= 1


def test_shipped_specs_cover_the_issue() -> None:
    names = {p.stem for p in (REPO / "sweeps").glob("*.yaml")}
    assert {"tpe", "paper_grid", "multiobjective"} <= names
    mo = load_spec(REPO / "sweeps" / "multiobjective.yaml")
    assert mo.directions == ["maximize", "minimize"] and mo.metrics == ["val/r2", "val/ks"]


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


def test_unknown_config_key_fails_before_any_trial(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, "name: x\nspace:\n  model.hidem: int 8..16\n"))
    with pytest.raises(UserError, match="model.hidem"):
        check_keys(spec, [])


def test_value_of_wrong_type_fails_before_any_trial(tmp_path: Path) -> None:
    spec = load_spec(_write(tmp_path, "name: x\nspace:\n  model.hidden: categorical [8, big]\n"))
    with pytest.raises(UserError, match="model.hidden.*big"):
        check_keys(spec, [])


@pytest.mark.parametrize("text,match", [
    ("name: x\n", "'space' must map"),
    ("name: x\nspaec: {}\n", "unknown spec key"),
    ("name: x\ndirection: up\nspace: {model.hidden: int 1..2}\n", "direction must be"),
    ("name: x\nsampler: annealing\nspace: {model.hidden: int 1..2}\n", "sampler type must be"),
    ("name: x\nn_trials: 0\nspace: {model.hidden: int 1..2}\n", "n_trials"),
    ("name: x\ndirections: [maximize, minimize]\nspace: {model.hidden: int 1..2}\n", "metric"),
])
def test_spec_errors(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        load_spec(_write(tmp_path, text))


def test_override_strings() -> None:
    assert override("model.lr", 0.002) == "model.lr=0.002"
    assert override("data.batch_size", 64) == "data.batch_size=64"
    assert override("model.activation", "tanh") == "model.activation=tanh"


def test_conditional_entries() -> None:
    p = parse_param("generator.n_virtual", "int 0..2000 step 100 if generator=vae_ok")
    assert (p.kind, p.high, p.when) == ("int", 2000, ("generator", ("vae_ok",)))
    assert p.active({"generator": "vae_ok"}) and not p.active({"generator": "none"}) and not p.active({})
    q = parse_param("model.lr", {"type": "float", "low": 1e-3, "high": 1e-2, "when": {"generator": ["a", "b"]}})
    assert q.when == ("generator", ("a", "b"))
    r = parse_param("labeler.nugget_fraction", "categorical [null, 0.1] if generator=vae_ok|vae_vsg")
    assert r.choices == (None, 0.1) and r.when == ("generator", ("vae_ok", "vae_vsg"))


@pytest.mark.parametrize("space,match", [
    ("  model.hidden: int 8..16 if generator=vae_ok\n  generator: categorical [none, vae_ok]\n",
     "not an earlier categorical key"),
    ("  model.lr: float 1e-3..1e-2\n  model.hidden: int 8..16 if model.lr=0.01\n", "not an earlier categorical"),
    ("  generator: categorical [none, vae_ok]\n  model.hidden: int 8..16 if generator=gmm_vsg\n",
     r"\['gmm_vsg'\] are not choices of 'generator'"),
])
def test_bad_conditions(tmp_path: Path, space: str, match: str) -> None:
    p = tmp_path / "s.yaml"
    p.write_text("name: s\nspace:\n" + space)
    with pytest.raises(UserError, match=match):
        load_spec(p)


def test_conditional_sampling_leaves_inactive_keys_out() -> None:
    import optuna

    from vaeok.study.spec import sample

    spec = load_spec(REPO / "sweeps" / "tpe.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"generator": "none"})
    study.enqueue_trial({"generator": "vae_ok"})
    draws = [sample(spec.space, study.ask()) for _ in range(2)]
    # generator=none samples only the regressor; vae_ok samples its knobs and not the regressor
    assert set(draws[0]) == {"generator", "regressor"} and draws[0]["generator"] == "none"
    assert set(draws[1]) == {p.key for p in spec.space} - {"regressor"}


def test_override_values_round_trip_through_hydra() -> None:
    from vaeok.config.compose import load_config

    cfg = load_config([override("labeler.nugget_fraction", None), override("data.name", "a b"),
                       override("tracking.log_figures", False)])
    assert cfg.labeler.nugget_fraction is None and cfg.data.name == "a b" and cfg.tracking.log_figures is False
