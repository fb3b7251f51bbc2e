"""The user journey from the README, through the CLI: sweep -> promote -> predict -> reproduce."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from vaeok.data.datasets import rubber_surrogate

from .conftest import CONF, TINY, cli_env


@pytest.mark.slow
def test_sweep_promote_predict_reproduce(tmp_path: Path) -> None:
    shutil.copytree(CONF, tmp_path / "conf")
    env = {**cli_env(), "VAEOK_CONFIG_DIR": str(tmp_path / "conf")}

    def vaeok(*args: str) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "vaeok.cli", *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        return res

    # the default spec's first two trials: the no-augmentation baseline and the paper's VAE-OK default
    sweep = vaeok("sweep", "--n-trials", "2", "--no-progress", *TINY, "trainer.max_epochs=100",
                  "generator.n_virtual=100").stdout
    assert "baseline" in sweep and "paper_default" in sweep and "no-augmentation baseline" in sweep
    # promote the VAE-OK trial (at seconds-long settings it may lose to the baseline: the flag lets it)
    out = vaeok("promote", "--study", "tpe", "--trial", "1", "--allow-worse-than-baseline").stdout
    assert "becomes 'champion'" in out and "baseline (same config, generator=none) holdout r2" in out
    assert (tmp_path / "mlruns" / "conf" / "experiment" / "promoted_tpe.yaml").is_file()  # next to the store
    rubber_surrogate().frame().drop(columns=["stress_600"]).head(5).to_csv(tmp_path / "X.csv", index=False)
    vaeok("predict", "--model", "models:/vaeok-rubber_surrogate@champion", "--input", "X.csv", "--output", "Y.csv")
    pred = pd.read_csv(tmp_path / "Y.csv")
    assert len(pred) == 5 and {"stress_600_pred", "stress_600_kriging_std"} <= set(pred.columns)
    assert "pooled held-out" in vaeok("run", "experiment=promoted_tpe").stdout
