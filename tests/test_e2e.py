"""The user journey from the README, through the CLI: sweep -> promote -> predict -> reproduce."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import CONF, cli_env


@pytest.mark.slow
def test_sweep_promote_predict_reproduce(tmp_path: Path) -> None:
    shutil.copytree(CONF, tmp_path / "conf")
    env = {**cli_env(), "VAEOK_CONFIG_DIR": str(tmp_path / "conf")}

    def vaeok(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "vaeok.cli", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        return res

    # the default spec's reference trials: no augmentation with GBR, GPR and kriging, then the paper default
    sweep = vaeok("sweep", "--n-trials", "4", "--no-progress", "trainer.max_epochs=100",
                  "generator.n_virtual=100").stdout
    for role in ("baseline", "baseline_gpr", "baseline_kriging", "paper_default", "corrected R2", "P(better)"):
        assert role in sweep, role
    out = vaeok("promote", "--study", "tpe").stdout  # the study's selection (greedy ensemble), refit on all rows
    assert "becomes 'champion'" in out and "corrected CV R2" in out and "refit on all rows (86 rows)" in out
    assert (tmp_path / "mlruns" / "conf" / "experiment" / "promoted_tpe.yaml").is_file()  # next to the store
    name = "vaeok-rubber_surrogate-be81b16d"  # the README's default model name of the embedded data
    assert f"models:/{name}@champion" in out
    shutil.copy(Path(__file__).resolve().parents[1] / "examples" / "new_rows.csv", tmp_path / "X.csv")
    vaeok("predict", "--model", f"models:/{name}@champion", "--input", "X.csv", "--output", "Y.csv")
    pred = pd.read_csv(tmp_path / "Y.csv")
    assert len(pred) == 10 and "stress_600_pred" in pred.columns
    assert "pooled held-out" in vaeok("run", "experiment=promoted_tpe").stdout
