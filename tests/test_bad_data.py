"""Messy CSVs through the real CLI: every bad file ends in exit 2 and ONE stderr line naming the
file, column, row or config key, before any training; files that only look different (CRLF, BOM,
blank rows, semicolons, quotes, trailing delimiters) load exactly like the clean one."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vaeok.cli import main
from vaeok.core.errors import UserError
from vaeok.data import datasets as data_mod
from vaeok.data.datasets import MIN_ROWS, load_csv

from .conftest import REPO, TINY, cli_env

FAST = [*TINY, "tracking.enabled=false"]


def _frame(n: int = 20, k: int = 2, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, k))
    y = 10 * X.sum(axis=1) + rng.normal(0, 0.1, n)
    names = [chr(ord("a") + j) if j < 24 else f"x{j}" for j in range(k)]
    return [*names, "y"], np.column_stack([X, y]).round(5)


def csv_text(n: int = 20, k: int = 2, sep: str = ",", eol: str = "\n", seed: int = 0) -> str:
    """A clean numeric CSV: features a, b, ... and target y; row i of the data is on line i + 2."""
    names, values = _frame(n, k, seed)
    return eol.join([sep.join(names), *(sep.join(f"{v:.5f}" for v in row) for row in values)]) + eol


def with_line(text: str, line: int, new: str) -> str:
    """Replace line `line` (1-based, as an editor numbers it)."""
    lines = text.split("\n")
    lines[line - 1] = new
    return "\n".join(lines)


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """`vaeok ...` in-process: exit code, stdout and stderr."""
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the CLI expecting exit 2 with one stderr line, and no experiment started."""
    import vaeok.experiment

    def no_training(*a: object, **k: object) -> None:
        raise AssertionError("training started although the input is bad")

    monkeypatch.setattr(vaeok.experiment, "run_experiment", no_training)
    code, _, err = run_cli(args, capsys)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("vaeok: error: ")
    return lines[0]


def run_csv(path: Path, *extra: str, target: str = "y") -> list[str]:
    return ["run", "data=csv", f"data.path={path}", f"data.target={target}", *FAST, *extra]


# --- bad files: (id, bytes or None for "no file", extra overrides, expected fragments) --------------
_BASE = csv_text()
_PANDAS_INDEX = "\n".join(f"{i}," + ln if i else "," + ln for i, ln in enumerate(_BASE.strip().split("\n"))) + "\n"

BAD: list[tuple[str, bytes | None, list[str], list[str]]] = [
    ("missing_file", None, [], ["data.path: file not found", "bad.csv"]),
    ("empty_0_bytes", b"", [], ["bad.csv: the file is empty"]),
    ("whitespace_only", b"\n  \n\r\n", [], ["the file is empty"]),
    ("header_only", b"a,b,y\n", [], ["bad.csv: no data rows (only the header line)"]),
    ("non_numeric_cell", with_line(_BASE, 14, "0.1,abc,3").encode(), [], ["column 'b' row 14 is not numeric: 'abc'"]),
    ("empty_cell", with_line(_BASE, 9, "0.1,,3").encode(), [], ["column 'b' row 9 is missing (empty cell)"]),
    ("nan_literal", with_line(_BASE, 5, "NaN,0.2,3").encode(), [], ["column 'a' row 5 is missing ('NaN')"]),
    ("na_literal", with_line(_BASE, 6, "0.1,0.2,NA").encode(), [], ["column 'y' row 6 is missing ('NA')"]),
    ("inf", with_line(_BASE, 7, "0.1,inf,3").encode(), [], ["column 'b' row 7 is not finite ('inf')"]),
    ("minus_inf", with_line(_BASE, 8, "-inf,0.2,3").encode(), [], ["column 'a' row 8 is not finite ('-inf')"]),
    ("underscore_number", with_line(_BASE, 3, "1_000,0.2,3").encode(), [], ["column 'a' row 3 is not numeric"]),
    ("duplicate_columns", _BASE.replace("a,b,y", "a,a,y", 1).encode(), [], ["duplicate column name(s): a"]),
    ("missing_target", _BASE.encode(), ["data.target=nope"],
     ["target column 'nope' not found", "columns are: a, b, y"]),
    ("target_case_typo", _BASE.encode(), ["data.target=Y"], ["did you mean 'y'?"]),
    ("target_among_features", _BASE.encode(), ["data.features=[a,y]"], ["target 'y' is also listed in data.features"]),
    ("feature_not_found", _BASE.encode(), ["data.features=[a,zz]"], ["feature column(s) not found: zz"]),
    ("constant_feature", "\n".join(["a,b,y", *(f"1.0,{i},{i * 2}" for i in range(20))]).encode(), [],
     ["feature column 'a' is constant"]),
    ("constant_target", "\n".join(["a,b,y", *(f"{i},{i % 7},5" for i in range(20))]).encode(), [],
     ["target column 'y' is constant"]),
    ("too_few_rows_8", csv_text(8).encode(), [], [f"8 rows; need at least {MIN_ROWS}"]),
    ("more_folds_than_rows", csv_text(20).encode(), ["evaluation.n_splits=50", "evaluation.loocv_below=0"],
     ["evaluation.n_splits=50 is more folds than rows", "20 rows (no holdout below evaluation.holdout_min_rows)"]),
    ("ragged_row", with_line(_BASE, 12, "0.1,0.2,3,4").encode(), [],
     ["line 12 has 4 fields but the header (line 1) has 3"]),
    ("short_row", with_line(_BASE, 12, "0.1,0.2").encode(), [], ["line 12 has 2 fields"]),
    ("unnamed_index_column", _PANDAS_INDEX.encode(), [], ["column 1 has no name in the header"]),
    ("latin1_bytes", _BASE.replace("a,b,y", "\xe9,b,y", 1).encode("latin-1"), [],
     ["line 1 is not valid utf-8 (byte 0xe9", "data.encoding=latin-1"]),
    ("utf16", _BASE.encode("utf-16"), [], ["UTF-16", "data.encoding=utf-16"]),
    ("binary_nul", b"a,b,y\n\x00\x01\x02\n" + bytes(range(256)), [], ["line 2 contains a NUL byte"]),
    ("decimal_comma", csv_text(sep=";").replace(".", ",").encode(), [],
     ["column 'a' row 2 is not numeric: '0,63696'", "decimal commas"]),
    ("forced_wrong_delimiter", csv_text(sep=";").encode(), ["data.delimiter=comma"],
     ["target column 'y' not found", "single column", "data.delimiter"]),
    ("unknown_encoding", _BASE.encode(), ["data.encoding=nope"], ["data.encoding: unknown text encoding 'nope'"]),
    ("bad_delimiter", _BASE.encode(), ["data.delimiter=ab"], ["data.delimiter must be one character"]),
    ("row_limit", csv_text(40).encode(), ["data.max_rows=20"],
     ["40 rows exceed data.max_rows=20", "labeler.max_points"]),
    ("latent_wider_than_one_feature", csv_text(20, k=1).encode(), [],
     ["model.latent=2 exceeds the VAE's input width 1", "model.latent<=1"]),
    ("pykrige_with_one_feature", csv_text(20, k=1).encode(), ["model.latent=1", "labeler.backend=pykrige"],
     ["labeler.backend=pykrige supports 2-3 features"]),
]


@pytest.mark.parametrize("content,extra,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_csv_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, content: bytes | None,
                                       extra: list[str], expected: list[str]) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_bytes(content)
    line = one_line_error(run_csv(path, *extra), capsys, monkeypatch)
    for fragment in expected:
        assert fragment in line, line


def test_directory_and_missing_path(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    assert "is a directory" in one_line_error(run_csv(tmp_path), capsys, monkeypatch)
    line = one_line_error(["run", "data=csv", "data.target=y"], capsys, monkeypatch)
    assert "data.path must be set" in line


def test_row_numbers_are_file_lines_with_blank_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    text = with_line(_BASE, 10, "0.1,oops,3").replace("\n", "\n\n", 3)  # 3 blank lines before line 10
    (tmp_path / "bad.csv").write_text(text)
    line = one_line_error(run_csv(tmp_path / "bad.csv"), capsys, monkeypatch)
    assert "column 'b' row 13 is not numeric: 'oops'" in line  # as an editor numbers it


def test_bad_cells_are_counted(tmp_path: Path) -> None:
    text = with_line(with_line(_BASE, 4, "0.1,,3"), 6, "0.1,,3")
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(UserError, match=r"row 4 is missing \(empty cell\) \(and 1 more row\(s\)"):
        load_csv(tmp_path / "bad.csv", "y")


# --- the real size limit: 100,000 rows are refused before any work, fast ------------------------------
def test_100k_rows_refused_fast(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    rng = np.random.default_rng(0)
    values = rng.random((100_000, 4))
    path = tmp_path / "big.csv"
    with path.open("w") as fh:
        fh.write("a,b,c,y\n")
        np.savetxt(fh, values, delimiter=",", fmt="%.5f")
    start = time.perf_counter()
    line = one_line_error(run_csv(path), capsys, monkeypatch)
    assert time.perf_counter() - start < 10
    assert "100000 rows exceed data.max_rows=5000" in line and "subsample" in line


def test_kriging_too_large_without_max_points(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "wide.csv"
    path.write_text(csv_text(7500))
    line = one_line_error(run_csv(path, "data.max_rows=null"), capsys, monkeypatch)
    assert "labeler.max_points: kriging on" in line and "GiB" in line


# --- files that only look different load exactly like the clean one ----------------------------------
def _trailing(text: str, header: bool) -> str:
    lines = text.strip().split("\n")
    return "\n".join(ln + "," if (i or header) else ln for i, ln in enumerate(lines)) + "\n"


VARIANTS: dict[str, Callable[[str], bytes]] = {
    "crlf": lambda t: t.replace("\n", "\r\n").encode(),
    "cr_only": lambda t: t.replace("\n", "\r").encode(),
    "bom": lambda t: b"\xef\xbb\xbf" + t.encode(),
    "bom_crlf": lambda t: b"\xef\xbb\xbf" + t.replace("\n", "\r\n").encode(),
    "blank_lines": lambda t: ("\n" + t.replace("\n", "\n\n", 4) + "\n  \n,,,\n").encode(),
    "trailing_delimiter": lambda t: _trailing(t, header=True).encode(),
    "trailing_delimiter_rows_only": lambda t: _trailing(t, header=False).encode(),
    "quoted_numbers": lambda t: "\n".join(",".join(f'"{c}"' for c in ln.split(",")) if ln else ""
                                          for ln in t.split("\n")).encode(),
    "spaces_after_delimiter": lambda t: t.replace(",", ", ").encode(),
    "semicolon": lambda t: t.replace(",", ";").encode(),
    "tab": lambda t: t.replace(",", "\t").encode(),
    "pipe": lambda t: t.replace(",", "|").encode(),
    "no_final_newline": lambda t: t.rstrip("\n").encode(),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_equivalent_files_load_identically(tmp_path: Path, variant: str) -> None:
    clean = load_csv(_write(tmp_path / "clean.csv", _BASE.encode()), "y")
    other = load_csv(_write(tmp_path / "other.csv", VARIANTS[variant](_BASE)), "y")
    assert other.feature_names == clean.feature_names == ("a", "b")
    assert other.fingerprint() == clean.fingerprint()


def test_latin1_loads_with_data_encoding(tmp_path: Path) -> None:
    path = _write(tmp_path / "l1.csv", _BASE.replace("a,b,y", "d\xe9bit,b,y", 1).encode("latin-1"))
    d = load_csv(path, "y", encoding="latin-1")
    assert d.feature_names == ("d\u00e9bit", "b") and d.n_rows == 20


def test_load_csv_default_row_limit_is_the_config_default() -> None:
    from vaeok.config.schema import DataConfig

    assert DataConfig().max_rows == data_mod.DEFAULT_MAX_ROWS


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


# --- end to end: these must WORK (exit 0) -----------------------------------------------------------
@pytest.mark.parametrize("k,extra", [(1, ["model.latent=1"]), (50, [])], ids=["one_feature", "fifty_features"])
def test_narrow_and_wide_csv_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], k: int,
                                 extra: list[str]) -> None:
    path = tmp_path / "d.csv"
    path.write_text(csv_text(60 if k > 1 else 30, k=k).replace(",", ";"))  # semicolon-separated, detected
    code, out, err = run_cli(run_csv(path, *extra), capsys)
    assert code == 0, err
    assert f"rows, {k} features)" in out and "pooled held-out  R2" in out


# --- sweeps validate the data before any Optuna trial (or study) exists -------------------------------
def test_sweep_with_bad_csv_fails_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(with_line(_BASE, 14, "0.1,abc,3"))
    line = one_line_error(["sweep", "--no-progress", "--n-trials", "1", "data=csv", f"data.path={path}",
                           "data.target=y", *FAST], capsys, monkeypatch)
    assert "column 'b' row 14 is not numeric" in line
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


def test_sweep_rejects_data_config_mismatch_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "one.csv"
    path.write_text(csv_text(20, k=1))
    line = one_line_error(["sweep", "--no-progress", "data=csv", f"data.path={path}", "data.target=y", *FAST],
                          capsys, monkeypatch)
    assert "model.latent=2 exceeds" in line
    assert not (tmp_path / "mlruns" / "optuna.db").exists()


# --- as a user runs it: a subprocess ----------------------------------------------------------------
def _env() -> dict[str, str]:
    env = cli_env()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH", "")) if p)
    return env


@pytest.mark.parametrize("content,needle", [
    (with_line(_BASE, 14, "0.1,abc,3").encode(), "column 'b' row 14 is not numeric: 'abc'"),
    (b"", "the file is empty"),
], ids=["non_numeric", "empty"])
def test_subprocess_one_line_exit_2(tmp_path: Path, content: bytes, needle: str) -> None:
    (tmp_path / "bad.csv").write_bytes(content)
    res = subprocess.run([sys.executable, "-m", "vaeok", *run_csv(Path("bad.csv"))], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0] and "bad.csv" in lines[0], res.stderr
