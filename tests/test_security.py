"""Security guards: servers bind to 127.0.0.1, no eval/exec of config strings, writes stay inside
their directory, passwords in storage/tracking URLs never reach the console, params, tags or configs."""

from __future__ import annotations

import ast
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from vaeok.cli import main
from vaeok.config.compose import flatten, load_config, to_yaml
from vaeok.core.errors import UserError
from vaeok.core.paths import inside, safe_name
from vaeok.core.redact import redact_text, redact_url
from vaeok.tracking import runs as tracking
from vaeok.tracking import server, stores

from .conftest import REPO

SRC = REPO / "src" / "vaeok"
SECRET = "s3cretPW"
PG = f"postgresql://alice:{SECRET}@127.0.0.1:1/vaeok"  # port 1: refused at once, nothing listens there


# --- servers on 127.0.0.1 ------------------------------------------------------------------------
def _host(cmd: list[str]) -> str:
    return cmd[cmd.index("--host") + 1]


def test_ui_and_server_bind_to_localhost(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    started: list[list[str]] = []
    monkeypatch.setattr(server, "_serve", lambda cmd: started.append(cmd) or 0)
    monkeypatch.setattr(server, "ensure_postgres_database", lambda url: None)
    monkeypatch.setattr(stores, "open_mlflow_store", lambda uri, what="tracking.uri": None)  # nothing listens
    assert main(["ui", "--port", "59871"]) == 0
    assert main(["server", "--port", "59872", "--backend-store-uri", PG]) == 0
    assert [_host(c) for c in started] == ["127.0.0.1", "127.0.0.1"]
    assert not any("0.0.0.0" in " ".join(c) for c in started)
    out = capsys.readouterr().out
    assert SECRET not in out and "alice:***@127.0.0.1" in out


# --- no eval/exec, no unsafe YAML, no custom OmegaConf resolvers ------------------------------------
def _calls(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                names.append(f.id)
            elif isinstance(f, ast.Attribute):
                base = f.value.id if isinstance(f.value, ast.Name) else ""
                names.append(f"{base}.{f.attr}")
    return names


def test_no_eval_exec_or_unsafe_loaders_in_source() -> None:
    forbidden = {"eval", "exec", "compile", "__import__", "yaml.load", "yaml.unsafe_load", "yaml.full_load",
                 "OmegaConf.register_new_resolver", "OmegaConf.register_resolver"}
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        bad = forbidden.intersection(_calls(ast.parse(path.read_text(), str(path))))
        if bad:
            found[str(path.relative_to(REPO))] = sorted(bad)
    assert not found, found


def test_interpolations_do_not_evaluate_code() -> None:
    with pytest.raises(UserError):
        load_config(["+x=${eval:__import__('os').system('true')}"])


# --- writes stay inside their directory -----------------------------------------------------------
@pytest.mark.parametrize("name", ["../../etc/x", "a/b", "..", ".hidden", "x\\y", "", "a b", "/abs"])
def test_safe_name_rejects_paths(name: str) -> None:
    with pytest.raises(UserError, match="cannot be used in a file name"):
        safe_name(name, "--study")


def test_safe_name_accepts_plain_names() -> None:
    for name in ("tpe", "my-study_2", "v1.2"):
        assert safe_name(name, "--study") == name


def test_write_overlay_rejects_escaping_names() -> None:
    from vaeok.registry.promote import write_overlay

    cfg = load_config(["tracking.enabled=false"])
    before = sorted(REPO.rglob("*.yaml"))
    for name in ("../../x", "../experiment2/y", "a/b"):
        with pytest.raises(UserError, match="cannot be used in a file name"):
            write_overlay(cfg, name, "header")
    assert sorted(REPO.rglob("*.yaml")) == before


def test_promote_refuses_escaping_study_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["promote", "--study", "../../etc/passwd"]) == 2
    assert "--study '../../etc/passwd' cannot be used in a file name" in capsys.readouterr().err


def test_output_dirs_stay_inside_unless_absolute(tmp_path: Path) -> None:
    assert inside(tmp_path, "out/cmp", "compare.output_dir") == (tmp_path / "out" / "cmp").resolve()
    assert inside(tmp_path, "/abs/dir", "compare.output_dir") == Path("/abs/dir")
    with pytest.raises(UserError, match=r"compare.output_dir=\.\./x escapes"):
        inside(tmp_path, "../x", "compare.output_dir")
    with pytest.raises(UserError, match="escapes"):
        inside(tmp_path, "a/../../x", "compare.output_dir")
    with pytest.raises(UserError, match="compare.output_dir"):
        load_config(["compare.output_dir=../outside"])
    assert load_config([f"compare.output_dir={tmp_path / 'abs'}"]).compare.output_dir == str(tmp_path / "abs")


# --- secrets ------------------------------------------------------------------------------------
@pytest.mark.parametrize("url,masked", [
    (PG, "postgresql://alice:***@127.0.0.1:1/vaeok"),
    ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
    ("mysql+pymysql://u:pw%40x@h:3306/db?ssl=1", "mysql+pymysql://u:***@h:3306/db?ssl=1"),
    ("https://bob:tok@mlflow.example.com/", "https://bob:***@mlflow.example.com/"),
    ("http://h:5000/x?token=abc&x=1", "http://h:5000/x?token=***&x=1"),
    ("postgresql://postgres@127.0.0.1:5432/db", "postgresql://postgres@127.0.0.1:5432/db"),
    ("sqlite:///mlruns/optuna.db", "sqlite:///mlruns/optuna.db"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
])
def test_redact_url(url: str, masked: str) -> None:
    assert redact_url(url) == masked
    assert redact_text(f"a {url} b") == f"a {masked} b"


def test_config_params_and_yaml_are_redacted() -> None:
    cfg = load_config(["tracking.enabled=false", f"tracking.uri={PG}"])
    params = flatten(cfg)
    assert params["tracking.uri"] == "postgresql://alice:***@127.0.0.1:1/vaeok"
    assert SECRET not in to_yaml(cfg)


def test_log_batch_masks_params_and_tags(tmp_path: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    client = MlflowClient()
    exp = client.create_experiment("sec", artifact_location=(tmp_path / "a").as_uri())
    run = client.create_run(exp)
    tracking.log_batch(run.info.run_id, params={"base_overrides": f"tracking.uri={PG} x=1"},
                       tags={"storage": PG})
    data = client.get_run(run.info.run_id).data
    assert SECRET not in str(data.params) and SECRET not in str(data.tags)
    assert "alice:***@" in data.params["base_overrides"]


def test_sweep_and_promote_never_print_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["sweep", "--no-progress", "--storage", PG, "tracking.enabled=false"])
    out, err = capsys.readouterr()
    assert code == 2 and SECRET not in out + err and "alice:***@" in err, err
    code = main(["promote", "--study", "tpe", "--storage", PG])
    out, err = capsys.readouterr()
    assert code == 2 and SECRET not in out + err and "alice:***@" in err, err


def test_unreachable_postgres_message_is_redacted() -> None:
    with pytest.raises(UserError) as info:
        server.ensure_postgres_database(PG)
    assert SECRET not in str(info.value)
