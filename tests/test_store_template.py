"""New MLflow SQLite stores are copies of a cached, migrated empty schema: same schema, own Default experiment."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from vaeok.tracking.store_template import cache_dir, seed_mlflow_store
from vaeok.tracking.stores import open_mlflow_store


def _schema(path: Path) -> tuple[dict[str, tuple], str]:
    """Tables with their columns and indexes, and the Alembic revision. (Not the CREATE text: MLflow's
    batch migrations order a table's constraints differently from one process to the next.)"""
    with contextlib.closing(sqlite3.connect(path)) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        tables = {n: (tuple(con.execute(f'PRAGMA table_info("{n}")').fetchall()),
                      tuple(sorted(r[1:3] for r in con.execute(f'PRAGMA index_list("{n}")'))),
                      tuple(sorted(con.execute(f'PRAGMA foreign_key_list("{n}")').fetchall())))
                  for n in names}
        version = con.execute("SELECT version_num FROM alembic_version").fetchone()[0]
    return tables, version


def test_seeded_store_matches_one_mlflow_migrates_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "own").mkdir()
    (tmp_path / "seeded").mkdir()
    own, seeded = tmp_path / "own" / "mlflow.db", tmp_path / "seeded" / "mlflow.db"
    MlflowClient(f"sqlite:///{own}").search_experiments()  # MLflow's own creation (all migrations)

    open_mlflow_store(f"sqlite:///{seeded}")

    templates = [p for p in cache_dir().iterdir() if p.suffix == ".db"]
    assert templates, "the template was not cached"
    with contextlib.closing(sqlite3.connect(templates[0])) as con:
        assert con.execute("SELECT count(*) FROM experiments").fetchone()[0] == 0  # no artifact root of its own
    assert _schema(seeded) == _schema(own)
    got, want = (MlflowClient(f"sqlite:///{p}").get_experiment("0") for p in (seeded, own))
    assert (got.name, got.artifact_location) == (want.name, want.artifact_location)


def test_a_second_store_reuses_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert seed_mlflow_store(tmp_path / "a.db")
    template = next(p for p in cache_dir().iterdir() if p.suffix == ".db")
    before = template.stat().st_mtime_ns
    assert seed_mlflow_store(tmp_path / "b.db")
    assert template.stat().st_mtime_ns == before
    assert not seed_mlflow_store(tmp_path / "b.db"), "an existing store must never be overwritten"
    assert not list(tmp_path.glob(".*.tmp"))


def test_unusable_cache_falls_back_to_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "not-a-dir").write_text("x")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-dir"))
    store = tmp_path / "mlflow.db"
    assert not seed_mlflow_store(store)
    assert not store.exists()
    open_mlflow_store(f"sqlite:///{store}")  # MLflow creates it itself
    assert MlflowClient(f"sqlite:///{store}").get_experiment("0").name == "Default"
