"""Shared fixtures: tests compose the real config (conf/ of this checkout) and shrink it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("VAEOK_CONFIG_DIR", str(ROOT / "conf"))


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Run every test in a temporary directory so MLflow stores never land in the checkout."""
    monkeypatch.setenv("VAEOK_CONFIG_DIR", str(ROOT / "conf"))
    monkeypatch.chdir(tmp_path)
    yield
