from pathlib import Path

import numpy as np
import pytest

from vaeok.core.errors import UserError
from vaeok.data.datasets import SURROGATE_FEATURES, load_csv, rubber_surrogate, surrogate_oracle


def test_surrogate_shape_and_moments() -> None:
    d = rubber_surrogate()
    assert d.X.shape == (86, 3) and d.feature_names == SURROGATE_FEATURES and d.target_name == "stress_600"
    assert abs(d.y.mean() - 2340) < 60 and abs(d.y.std() - 510) < 40
    assert "synthetic" in d.name
    assert d.fingerprint() == rubber_surrogate().fingerprint()


def test_oracle_monotone_with_expected_importance() -> None:
    d = rubber_surrogate()
    base = surrogate_oracle(d.X)
    effects = []
    for j in range(3):
        hi, lo, mid = d.X.copy(), d.X.copy(), d.X.copy()
        hi[:, j], lo[:, j], mid[:, j] = d.X[:, j].max(), d.X[:, j].min(), d.X[:, j].mean()
        assert (surrogate_oracle(hi) - surrogate_oracle(lo) > 0).all()
        effects.append(np.abs(base - surrogate_oracle(mid)).mean())  # main-effect size, SHAP-like
    omega, eps_h, eps_nh = effects
    assert eps_h > omega > eps_nh


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _rows(n: int, extra: str = "") -> str:
    rng = np.random.default_rng(0)
    body = "\n".join(",".join(f"{v:.4f}" for v in rng.random(3)) for _ in range(n))
    return "a,b,y\n" + body + extra


def test_csv_ok(tmp_path: Path) -> None:
    d = load_csv(_write(tmp_path / "ok.csv", _rows(12)), "y")
    assert d.X.shape == (12, 2) and d.feature_names == ("a", "b")
    d2 = load_csv(tmp_path / "ok.csv", "y", ["b"])
    assert d2.feature_names == ("b",)


@pytest.mark.parametrize(
    "content,target,features,match",
    [
        (None, "y", None, "file not found"),
        (_rows(12), "nope", None, "target column 'nope' not found"),
        (_rows(12), "y", ["zz"], "feature column.*zz"),
        (_rows(12, "\n0.1,abc,0.3"), "y", None, "column 'b' row 14 is not numeric"),
        (_rows(12, "\n0.1,,0.3"), "y", None, "column 'b' row 14 is missing"),
        (_rows(12, "\n0.1,inf,0.3"), "y", None, "column 'b' row 14 is not finite"),
        (_rows(5), "y", None, "5 rows; need at least 10"),
        ("a,a,y\n" + "\n".join(f"{i},{i},{i}" for i in range(12)), "y", None, "duplicate column"),
        ("a,b,y\n" + "\n".join(f"1,{i},{i}" for i in range(12)), "y", None, "feature column 'a' is constant"),
    ],
)
def test_csv_errors_name_the_problem(tmp_path: Path, content, target, features, match) -> None:
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=match) as info:
        load_csv(path, target, features)
    assert "\n" not in str(info.value)
