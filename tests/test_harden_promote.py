"""#17 classes 6, 10 and 11: promote either completes (model version registered, alias moved,
overlay written) or changes nothing; overlays go next to the store the run used, never into the
installed source tree, and `vaeok run experiment=promoted_<study>` finds them there."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import REPO
from .harden_utils import TINY_SPEC, error_line, ok, query, registered_versions, run_statuses, vaeok

# CLI subprocesses (5-10 s each): slow, run by `make test` and CI, not by the default fast `pytest`
pytestmark = pytest.mark.slow

NO_CONF = {"VAEOK_CONFIG_DIR": ""}  # like a user's project directory without conf/


def _checkout_changes() -> str:
    return subprocess.run(["git", "status", "--porcelain", "--", "conf"], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


# --- fast: refused before any work -----------------------------------------------------------------
@pytest.mark.parametrize("command", [["promote", "--study"], ["sweep", "--no-progress", "--study"]])
def test_a_250_character_study_name_is_refused_up_front(tmp_path: Path, command: list[str]) -> None:
    error_line(vaeok(*command, "s" * 250, cwd=tmp_path), "--study", "long")
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def _study_with(tmp_path: Path, values: list[float | None], states: list[str]) -> None:
    import optuna

    (tmp_path / "mlruns").mkdir(exist_ok=True)
    study = optuna.create_study(study_name="odd", storage=f"sqlite:///{tmp_path}/mlruns/optuna.db",
                                direction="maximize")
    study.set_user_attr("base_overrides", ["generator=none"])
    dist = {"seed": optuna.distributions.IntDistribution(1, 9)}
    for i, (v, s) in enumerate(zip(values, states, strict=True)):
        study.add_trial(optuna.trial.create_trial(params={"seed": i + 1}, distributions=dist, value=v,
                                                  state=getattr(optuna.trial.TrialState, s)))


def test_promote_on_a_study_without_finite_values_says_so(tmp_path: Path) -> None:
    import sqlite3

    _study_with(tmp_path, [0.5, 0.6], ["COMPLETE", "COMPLETE"])
    with sqlite3.connect(tmp_path / "mlruns" / "optuna.db") as con:  # a store edited by hand, or an old Optuna
        con.execute("UPDATE trial_values SET value = NULL, value_type = 'FINITE'")
    line = error_line(vaeok("promote", "--study", "odd", cwd=tmp_path), "odd")
    assert "finite" in line or "no completed" in line
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()


def test_promote_on_a_study_with_only_failed_trials(tmp_path: Path) -> None:
    _study_with(tmp_path, [None, None], ["FAIL", "FAIL"])
    error_line(vaeok("promote", "--study", "odd", cwd=tmp_path), "no completed trials")


# --- slow: a real study --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project directory WITHOUT conf/ holding study 'p' (1 trial, no augmentation) and study 'px'
    whose stored overrides carry `+x=1`."""
    d = tmp_path_factory.mktemp("project")
    (d / "s.yaml").write_text(TINY_SPEC.format(name="p", n=1))
    ok(vaeok("sweep", "--spec", "s.yaml", "--no-progress", cwd=d, env=NO_CONF))
    ok(vaeok("sweep", "--spec", "s.yaml", "--study", "px", "--no-progress", cwd=d, env=NO_CONF))
    # `vaeok sweep ... +x=1` is refused now (unknown key); a study stored by an older version could
    # still carry it: write it into px's stored overrides, as such a study would have them
    import optuna

    px = optuna.load_study(study_name="px", storage=f"sqlite:///{d}/mlruns/optuna.db")
    px.set_user_attr("base_overrides", [*px.user_attrs["base_overrides"], "+x=1"])
    yield d


@pytest.mark.slow
def test_overlay_goes_next_to_the_store_and_run_finds_it(project: Path) -> None:
    before = _checkout_changes()
    proc = ok(vaeok("promote", "--study", "p", "--model-name", "m1", "--allow-worse-than-baseline",
                    cwd=project, env=NO_CONF))
    overlays = sorted(p.relative_to(project) for p in project.rglob("promoted_p.yaml"))
    assert overlays and all(p.parts[0] == "mlruns" for p in overlays), overlays
    assert _checkout_changes() == before, "promote wrote into the installed source tree"
    assert str(overlays[0].name) in proc.stdout
    # composition finds the overlay (the range check proves it composed: max_epochs=0 is refused)
    error_line(vaeok("run", "experiment=promoted_p", "trainer.max_epochs=0", cwd=project, env=NO_CONF),
               "trainer.max_epochs must be >= 1")
    error_line(vaeok("run", "experiment=promoted_nope", cwd=project, env=NO_CONF), "promoted_nope")


@pytest.mark.slow
def test_promote_of_a_study_swept_with_an_added_key_is_all_or_nothing(project: Path) -> None:
    versions = registered_versions(project)
    proc = vaeok("promote", "--study", "px", "--model-name", "m2", "--allow-worse-than-baseline",
                 cwd=project, env=NO_CONF)
    overlay = list(project.rglob("promoted_px*.yaml"))
    if proc.returncode == 0:
        assert overlay and len(registered_versions(project)) == len(versions) + 1
        error_line(vaeok("run", f"experiment={overlay[0].stem}", "trainer.max_epochs=0", cwd=project, env=NO_CONF),
                   "trainer.max_epochs must be >= 1")
    else:
        error_line(proc)
        assert overlay == [] and registered_versions(project) == versions
    assert "RUNNING" not in run_statuses(project)


@pytest.mark.slow
def test_unwritable_overlay_place_changes_nothing(project: Path) -> None:
    conf = project / "mlruns" / "conf"
    moved = project / "mlruns" / "conf.bak"
    if conf.exists():
        conf.rename(moved)
    conf.write_text("a file where the overlay directory should be")
    try:
        versions = registered_versions(project)
        aliases = query(project / "mlruns" / "mlflow.db", "SELECT name, alias, version FROM registered_model_aliases")
        error_line(vaeok("promote", "--study", "p", "--model-name", "m1", "--allow-worse-than-baseline",
                         cwd=project, env=NO_CONF))
        assert registered_versions(project) == versions
        assert query(project / "mlruns" / "mlflow.db",
                     "SELECT name, alias, version FROM registered_model_aliases") == aliases
        assert "RUNNING" not in run_statuses(project)
    finally:
        conf.unlink()
        if moved.exists():
            moved.rename(conf)
