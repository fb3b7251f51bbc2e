"""Shared fixtures: the real config composed and shrunk, isolated MLflow stores per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from vaeok.config.compose import load_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
TINY = ["experiment=smoke", "trainer.max_epochs=5", "generator.n_virtual=40", "regressor.n_estimators=10"]


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own directory (mlruns/ is cwd-relative) with the repo's conf/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(CONF))
    return tmp_path


@pytest.fixture
def tiny_cfg() -> DictConfig:
    """The real default config shrunk to seconds."""
    return load_config([*TINY, "tracking.enabled=false"])


def cli_env() -> dict[str, str]:
    """Environment for CLI subprocesses: this checkout's package first on the path (an absolute
    PYTHONPATH, since subprocesses run in a temporary directory)."""
    path = os.pathsep.join(p for p in (str(REPO / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "VAEOK_CONFIG_DIR": str(CONF), "PYTHONWARNINGS": "ignore", "PYTHONPATH": path}
ROOT = REPO
