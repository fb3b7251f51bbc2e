"""#17 classes 5, 6 and 10: config errors reported as bugs, inputs accepted but meaningless, and
the leftovers (huge grids, argparse, warnings on extreme values, stores outside the working dir).

Each case: exit 2, one line on stderr naming the key, file or option, nothing RUNNING.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harden_utils import TINY_SPEC, assert_nothing_running, error_line, query, vaeok, write_spec

# CLI subprocesses (5-10 s each): slow, run by `make test` and CI, not by the default fast `pytest`
pytestmark = pytest.mark.slow


# --- class 5: config errors with the key named ---------------------------------------------------
@pytest.mark.parametrize("override,key", [
    ("trainer.accelerator=gpu", "trainer.accelerator"),
    ("+trainer.precision=bogus", "trainer.precision"),
    ("+trainer.no_such_argument=1", "trainer.no_such_argument"),
    ("trainer.devices=0", "trainer.devices"),
], ids=["accelerator", "precision", "unknown", "devices"])
def test_bad_trainer_arguments_name_the_key(tmp_path: Path, override: str, key: str) -> None:
    proc = vaeok("run", "experiment=smoke", override, cwd=tmp_path)
    error_line(proc, key)
    assert_nothing_running(tmp_path)
    assert "RUNNING" not in "".join(r[0] for r in query(tmp_path / "mlruns" / "mlflow.db", "SELECT status FROM runs"))


@pytest.mark.parametrize("key", ["../../x", "model/../../x", "hydra.run.dir", "model..hidden"])
def test_spec_space_keys_that_are_not_config_keys(tmp_path: Path, key: str) -> None:
    spec = write_spec(tmp_path / "s.yaml", f"name: s\nsampler: random\npruner: none\nspace:\n  '{key}': int 1..3\n")
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path), key)
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


@pytest.mark.parametrize("override", ["model.activation=" + "a" * 100_000, "generator=" + "g" * 100_000,
                                      "+" + "k" * 100_000 + "=1"], ids=["value", "group", "key"])
def test_a_100k_character_override_is_one_short_line(tmp_path: Path, override: str) -> None:
    line = error_line(vaeok("run", override, cwd=tmp_path), "characters")
    assert len(line) < 500


def test_yaml_billion_laughs_in_a_spec(tmp_path: Path) -> None:
    nests = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    nests += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    spec = write_spec(tmp_path / "lol.yaml", "name: lol\nsampler: random\npruner: none\nspace:\n"
                      f"  model.activation: {{type: categorical, choices: [{', '.join(nests)}]}}\n")
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path, timeout=300), "lol.yaml")


def test_unreachable_postgres_tracking_uri_names_the_key(tmp_path: Path) -> None:
    proc = vaeok("run", "experiment=smoke", "tracking.uri=postgresql://postgres:pw@127.0.0.1:1/nope", cwd=tmp_path)
    line = error_line(proc, "tracking.uri", "127.0.0.1:1")
    assert "pw@" not in line


# --- class 6: accepted but meaningless -----------------------------------------------------------
@pytest.mark.parametrize("group", ["model", "trainer", "regressor", "generator", "tracking"])
def test_deleting_a_config_group_is_refused(tmp_path: Path, group: str) -> None:
    error_line(vaeok("run", f"~{group}", cwd=tmp_path), f"~{group}")


def test_pruning_spec_without_intermediate_values(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "p.yaml", "name: p\nsampler: random\npruner: median\nn_trials: 2\n"
                      "overrides: [evaluation.eval_every_n_epochs=0]\nspace:\n  model.hidden: int 4..8\n")
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path), "eval_every_n_epochs", "pruner")
    assert query(tmp_path / "mlruns" / "optuna.db", "SELECT study_name FROM studies") == []


@pytest.mark.parametrize("line,key", [("timeout: .nan", "timeout"), ("timeout: .inf", "timeout"),
                                      ("n_trials: 1000000000000", "n_trials")], ids=["nan", "inf", "n_trials"])
def test_spec_budget_values_that_cannot_mean_anything(tmp_path: Path, line: str, key: str) -> None:
    body = TINY_SPEC.format(name="b", n=1).replace("n_trials: 1\n", "n_trials: 1\n" if key != "n_trials" else "")
    spec = write_spec(tmp_path / "b.yaml", body + line + "\n")
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path), key)


@pytest.mark.parametrize("args,key", [(["--timeout", "nan"], "--timeout"), (["--timeout", "inf"], "--timeout"),
                                      (["--n-trials", "1000000000"], "--n-trials")], ids=["nan", "inf", "n"])
def test_sweep_budget_options_that_cannot_mean_anything(tmp_path: Path, args: list[str], key: str) -> None:
    error_line(vaeok("sweep", *args, "--no-progress", cwd=tmp_path), key)


@pytest.mark.parametrize("run_id", ["", " ", "../x"])
def test_from_run_needs_a_run_id(tmp_path: Path, run_id: str) -> None:
    error_line(vaeok("run", "--from-run", run_id, cwd=tmp_path), "--from-run")
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


# --- class 10: specs, grids, argparse, extreme values, paths ---------------------------------------
def test_spec_metric_that_no_run_produces(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "m.yaml", TINY_SPEC.format(name="m", n=1) + "metric: val/nope\n")
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path), "val/nope", "val/r2")
    assert query(tmp_path / "mlruns" / "optuna.db", "SELECT study_name FROM studies") == []


def test_huge_grid_is_refused_before_memory_runs_out(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "g.yaml", "name: g\nsampler: grid\npruner: none\n"
                      "space:\n  model.hidden: int 1..100000000 step 1\n")
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path), "model.hidden", "grid")


def test_huge_grid_product_is_refused(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "g2.yaml", "name: g2\nsampler: grid\npruner: none\nspace:\n"
                      "  model.hidden: int 1..4000 step 1\n  seed: int 1..4000 step 1\n")
    error_line(vaeok("sweep", "--spec", str(spec), "--no-progress", cwd=tmp_path), "grid")


@pytest.mark.parametrize("args,needle", [
    (["sweep", "--n-trials", "abc"], "--n-trials"),
    (["nope"], "nope"),
    (["promote"], "--study"),
    (["server", "--port", "x"], "--port"),
    ([], "command"),
], ids=["bad-int", "bad-command", "missing-required", "server-port", "no-command"])
def test_argparse_errors_are_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    error_line(vaeok(*args, cwd=tmp_path), needle)


def test_extreme_values_give_one_line_without_numpy_warnings(tmp_path: Path) -> None:
    rows = "\n".join(f"{i * 1e300 if i % 3 else 1.0},{i},{i * 2.5}" for i in range(1, 40))
    (tmp_path / "big.csv").write_text("a,b,y\n" + rows + "\n")
    proc = vaeok("run", "data=csv", "data.path=big.csv", "data.target=y", "experiment=smoke", cwd=tmp_path,
                 env={"PYTHONWARNINGS": ""})
    error_line(proc, "big.csv", "'a'")


@pytest.mark.parametrize("override,key", [
    ("tracking.uri=sqlite:///../outside.db", "tracking.uri"),
    ("tracking.artifact_root=../outside", "tracking.artifact_root"),
], ids=["uri", "artifact-root"])
def test_relative_store_paths_stay_inside_the_working_directory(tmp_path: Path, override: str, key: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    error_line(vaeok("run", "experiment=smoke", override, cwd=work), key)
    assert not (tmp_path / "outside.db").exists() and not (tmp_path / "outside").exists()
