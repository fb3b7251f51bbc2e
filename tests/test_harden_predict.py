"""#17 class 7: `vaeok predict` reads its input with the project's CSV reader (the one `run` uses)
and writes its output safely: every bad input or output is one line, exit 2, naming the file."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .harden_utils import error_line, ok, vaeok

pytestmark = pytest.mark.slow  # needs a promoted model (one module-wide build, ~1-2 min)

MODEL = "models:/rubber@champion"
HEADER = "omega,eps_h,eps_nh"
ROWS = ["0.12,1.1,0.9", "0.2,1.3,1.0", "0.15,0.9,1.2"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory with a champion `rubber` (tiny study, promoted by the real CLI)."""
    from .conftest import CONF

    d = tmp_path_factory.mktemp("predict")
    shutil.copytree(CONF, d / "conf")
    env = {"VAEOK_CONFIG_DIR": str(d / "conf")}
    (d / "s.yaml").write_text("name: p\nsampler: random\npruner: none\nn_trials: 1\n"
                              "overrides: [generator=none, regressor.n_estimators=10, tracking.log_figures=false]\n"
                              "space:\n  regressor.max_depth: int 2..3\n")
    ok(vaeok("sweep", "--spec", "s.yaml", "--no-progress", cwd=d, env=env))
    ok(vaeok("promote", "--study", "p", "--model-name", "rubber", cwd=d, env=env))
    yield d


def _predict(workdir: Path, body: str, *extra: str) -> tuple[Path, object]:
    path = workdir / "in.csv"
    path.write_text(body)
    return path, vaeok("predict", "--model", MODEL, "--input", str(path), *extra, cwd=workdir,
                       env={"VAEOK_CONFIG_DIR": str(workdir / "conf"), "PYTHONWARNINGS": ""})


def test_good_input_predicts(workdir: Path) -> None:
    _, proc = _predict(workdir, HEADER + "\n" + "\n".join(ROWS) + "\n")
    out = ok(proc).stdout.splitlines()
    assert out[0].startswith(HEADER) and len(out) == 4


def test_semicolon_file_with_bom_is_read_like_run_reads_it(workdir: Path) -> None:
    body = "\ufeff" + HEADER.replace(",", ";") + "\r\n" + "\r\n".join(r.replace(",", ";") for r in ROWS) + "\r\n"
    _, proc = _predict(workdir, body)
    assert len(ok(proc).stdout.splitlines()) == 4


@pytest.mark.parametrize("cell", ["True", "false", "NA", "1_000", ""],
                         ids=["True", "false", "NA", "underscore", "empty"])
def test_non_numeric_cells_are_refused_naming_the_column_and_row(workdir: Path, cell: str) -> None:
    rows = [*ROWS[:1], f"{cell},1.0,1.0", *ROWS[1:]]
    _, proc = _predict(workdir, HEADER + "\n" + "\n".join(rows) + "\n")
    error_line(proc, "in.csv", "omega", "row 3")


@pytest.mark.parametrize("value", ["1e308", "-1e300", "1e400"])
def test_huge_values_are_one_line(workdir: Path, value: str) -> None:
    _, proc = _predict(workdir, HEADER + "\n" + ROWS[0] + f"\n{value},1,1\n")
    error_line(proc, "in.csv", "omega")


def test_extra_index_column_is_refused(workdir: Path) -> None:
    _, proc = _predict(workdir, "," + HEADER + "\n" + "\n".join(f"{i},{r}" for i, r in enumerate(ROWS)) + "\n")
    error_line(proc, "in.csv")


@pytest.mark.parametrize("target", ["dir", "/dev/full", "/proc/version", "missing-dir-file"])
def test_unusable_output_is_one_line(workdir: Path, target: str) -> None:
    if target == "dir":
        out = workdir / "outdir"
        out.mkdir(exist_ok=True)
    elif target == "missing-dir-file":
        blocker = workdir / "afile"
        blocker.write_text("x")
        out = blocker / "out.csv"  # a path below a regular file
    else:
        if not os.path.exists(target):
            pytest.skip(f"no {target}")
        out = Path(target)
    _, proc = _predict(workdir, HEADER + "\n" + "\n".join(ROWS) + "\n", "--output", str(out))
    error_line(proc, "--output")
    if target == "dir":
        assert list(out.iterdir()) == []


def test_output_written_whole_or_not_at_all(workdir: Path) -> None:
    out = workdir / "preds.csv"
    out.write_text("previous predictions\n")
    _, proc = _predict(workdir, HEADER + "\nTrue,1,1\n", "--output", str(out))
    error_line(proc, "in.csv")
    assert out.read_text() == "previous predictions\n"
    _, proc = _predict(workdir, HEADER + "\n" + "\n".join(ROWS) + "\n", "--output", str(out))
    ok(proc)
    assert out.read_text().splitlines()[0].startswith(HEADER)
