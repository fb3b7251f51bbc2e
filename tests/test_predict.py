"""The packaged pipeline and `vaeok predict`: fresh-process loading, column validation, errors."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from vaeok.core.errors import UserError
from vaeok.data.datasets import rubber_surrogate
from vaeok.registry.packaged import validate_features
from vaeok.tracking.runs import absolute_sqlite_uri

from .conftest import cli_env
from .promote_utils import build_promoted, copy_conf

SRC = Path(__file__).resolve().parents[1] / "src"
URI = "models:/rubber@champion"
FEATURES = ["omega", "eps_h", "eps_nh"]


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A work directory with one promoted champion and a feature CSV of 12 rows."""
    workdir = tmp_path_factory.mktemp("predict")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(workdir)
        mp.setenv("VAEOK_CONFIG_DIR", str(copy_conf(workdir)))
        out = build_promoted(workdir, second=False)
        frame = rubber_surrogate().frame().drop(columns=["stress_600"])
        frame.iloc[::7].to_csv(workdir / "X.csv", index=False)
        yield out


@pytest.fixture
def work(champion: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.chdir(champion["workdir"])
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(champion["workdir"] / "conf"))
    mlflow.set_tracking_uri(absolute_sqlite_uri("sqlite:///mlruns/mlflow.db"))
    return champion


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**cli_env(), "VAEOK_CONFIG_DIR": str(cwd / "conf"), "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "vaeok.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_fresh_process_predicts_the_same(work: dict[str, Any]) -> None:
    """mlflow.pyfunc.load_model in a separate Python process (no vaeok on its path: the package
    ships its code) gives bit-identical predictions to the in-process model."""
    X = pd.read_csv("X.csv")
    model = mlflow.pyfunc.load_model(URI)
    assert model.metadata.get_input_schema().input_names() == FEATURES
    here = model.predict(X)
    assert list(here.columns) == ["stress_600_pred", "stress_600_kriging_std"]
    script = (
        "import mlflow, numpy as np, pandas as pd\n"
        "mlflow.set_tracking_uri('sqlite:///mlruns/mlflow.db')\n"
        f"m = mlflow.pyfunc.load_model('{URI}')\n"
        "np.save('fresh.npy', m.predict(pd.read_csv('X.csv')).to_numpy())\n"
        "import vaeok; print(vaeok.__file__)\n"
    )
    env = {k: v for k, v in cli_env().items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=work["workdir"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "artifacts" in proc.stdout or "code" in proc.stdout, proc.stdout  # the model's own vaeok copy
    assert np.array_equal(np.load(work["workdir"] / "fresh.npy"), here.to_numpy())


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_cli_predict_writes_predictions_and_uncertainty(work: dict[str, Any]) -> None:
    proc = _cli("predict", "--model", URI, "--input", "X.csv", "--output", "out/Y.csv", cwd=work["workdir"])
    assert proc.returncode == 0, proc.stderr
    out = pd.read_csv(work["workdir"] / "out" / "Y.csv")
    assert list(out.columns) == [*FEATURES, "stress_600_pred", "stress_600_kriging_std"]
    expected = mlflow.pyfunc.load_model(URI).predict(pd.read_csv("X.csv"))
    assert np.allclose(out["stress_600_pred"], expected["stress_600_pred"], rtol=1e-12)
    assert (out["stress_600_kriging_std"] >= 0).all()


@pytest.mark.parametrize("case", ["extra", "missing", "non_numeric", "no_model"])
def test_cli_predict_bad_inputs_are_one_line(case: str, work: dict[str, Any]) -> None:
    X = pd.read_csv(work["workdir"] / "X.csv")
    frames = {"extra": X.assign(colour=1.0), "missing": X.drop(columns=["eps_h"]),
              "non_numeric": X.astype({"omega": object}).assign(omega=["high", *X.omega.iloc[1:]]),
              "no_model": X}
    path = work["workdir"] / f"bad_{case}.csv"
    frames[case].to_csv(path, index=False)
    uri = "models:/nope@champion" if case == "no_model" else URI
    proc = _cli("predict", "--model", uri, "--input", path.name, cwd=work["workdir"])
    needle = {"extra": "unexpected column(s) colour", "missing": "missing column(s) eps_h",
              "non_numeric": "column 'omega' row 2 is not numeric: 'high'",
              "no_model": "no registered model 'nope'"}[case]
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert needle in lines[0]


def test_validate_features_orders_and_checks() -> None:
    df = pd.DataFrame({"b": [1, 2], "a": ["3", "4.5"]})
    assert validate_features(df, ["a", "b"]).tolist() == [[3.0, 1.0], [4.5, 2.0]]
    with pytest.raises(UserError, match="missing column"):
        validate_features(df, ["a", "b", "c"])
    with pytest.raises(UserError, match="row 3 is not a finite number"):
        validate_features(pd.DataFrame({"a": [1.0, np.inf]}), ["a"])
    with pytest.raises(UserError, match="no rows"):
        validate_features(pd.DataFrame({"a": []}), ["a"])


def test_pyfunc_rejects_wrong_columns(work: dict[str, Any]) -> None:
    model = mlflow.pyfunc.load_model(URI)
    with pytest.raises(Exception, match="eps_nh"):
        model.predict(pd.read_csv("X.csv").drop(columns=["eps_nh"]))


@pytest.mark.slow  # end-to-end, >5 s: run by `make test` and CI
def test_cli_predict_imports_neither_torch_nor_lightning(work: dict[str, Any]) -> None:
    """The champion is a VAE-OK pipeline; predicting with it needs only the regressor and kriging."""
    script = ("import sys\nfrom vaeok.cli import main\n"
              f"rc = main(['predict', '--model', '{URI}', '--input', 'X.csv'])\n"
              "heavy = sorted(m for m in ('torch', 'lightning', 'optuna') if m in sys.modules)\n"
              "print('RC', rc, 'HEAVY', ','.join(heavy) or '-', file=sys.stderr)\n")
    env = {**cli_env(), "VAEOK_CONFIG_DIR": str(work["workdir"] / "conf"), "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", script], cwd=work["workdir"], env=env, capture_output=True,
                          text=True, timeout=120)
    assert "RC 0 HEAVY -" in proc.stderr, proc.stderr


def test_ensemble_with_vae_members_keeps_their_weights_out_of_the_pickle(work: dict[str, Any],
                                                                          tmp_path: Path) -> None:
    """Members' VAE weights are packaged in vae.pt (so loading the pickle imports no torch) and
    `sample_virtual` still decodes the first member's VAE."""
    import pickle

    from vaeok.config.compose import load_config
    from vaeok.generators.vae import VAEGenerator
    from vaeok.registry.packaged import fit_pipeline, log_pipeline
    from vaeok.registry.serving import EnsemblePipeline, FittedPipeline

    from .promote_utils import FAST

    data = rubber_surrogate()
    members = [fit_pipeline(load_config([*FAST, f"model.hidden={h}"]), data) for h in (8, 16)]
    assert all(m.vae_state is not None for m in members)
    ensemble = EnsemblePipeline(members, [0.5, 0.5], members[0].config_yaml)
    with mlflow.start_run():
        info = log_pipeline(ensemble, data.frame().drop(columns=[data.target_name]).head(5))
    assert all(m.vae_state is not None for m in members), "packaging must not strip the caller's object"
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path)))
    with open(next(local.rglob("pipeline.pkl")), "rb") as fh:
        unpickled = pickle.load(fh)
    assert all(isinstance(m, FittedPipeline) and m.vae_state is None for m in unpickled.members)
    assert next(local.rglob("vae.pt")).is_file()
    model = mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model()
    got = model.sample_virtual(20, seed=3)
    assert np.array_equal(got, VAEGenerator.sample_state(members[0].vae_state, 20, seed=3))
