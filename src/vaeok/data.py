"""Data sets: the embedded synthetic surrogate, CSV loading, and validation at the boundary."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import qmc

from vaeok.errors import UserError

MIN_ROWS = 10

# --- Embedded default: a SYNTHETIC surrogate of the paper's 86 natural-rubber MD samples. ---
# The real data are not public. This surrogate has the same shape and qualitative behaviour:
# features omega (mass fraction of phospholipids+proteins), eps_h (H-bond strength),
# eps_nh (non-H-bond strength); target stress_600 (tensile stress at 600 % strain).
SURROGATE_FEATURES = ("omega", "eps_h", "eps_nh")
SURROGATE_TARGET = "stress_600"
_SURROGATE_LOW = np.array([0.02, 1.0, 0.5])
_SURROGATE_HIGH = np.array([0.20, 12.0, 2.0])
_SURROGATE_OFFSET = 850.0
_SURROGATE_SCALE = 1265.0


@dataclass(frozen=True)
class Dataset:
    """A validated regression data set: feature matrix, target vector and their names."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_name: str
    name: str

    @property
    def n_rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.X.shape[1])

    def fingerprint(self) -> str:
        """Short content hash of names and values (logged as the data set hash)."""
        h = hashlib.sha256()
        h.update(",".join((*self.feature_names, self.target_name)).encode())
        h.update(np.ascontiguousarray(self.X, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.y, dtype=np.float64).tobytes())
        return h.hexdigest()[:16]

    def frame(self) -> pd.DataFrame:
        """The data as a DataFrame (features then target)."""
        df = pd.DataFrame(self.X, columns=list(self.feature_names))
        df[self.target_name] = self.y
        return df


def surrogate_oracle(X: np.ndarray) -> np.ndarray:
    """Noise-free stress_600 of the synthetic surrogate at feature rows (omega, eps_h, eps_nh).

    Smooth, monotone increasing in every feature, importance eps_h > omega > eps_nh.
    """
    X = np.asarray(X, dtype=float)
    u = (X - _SURROGATE_LOW) / (_SURROGATE_HIGH - _SURROGATE_LOW)
    w, h, nh = np.clip(u[:, 0], 0, None), u[:, 1], u[:, 2]
    g = 1.2 * (1.0 - np.exp(-2.5 * h)) + 0.5 * w**1.3 + 0.25 * nh + 0.3 * h * w
    return _SURROGATE_OFFSET + _SURROGATE_SCALE * g


def rubber_surrogate(n_rows: int = 86, noise: float = 60.0, seed: int = 2024) -> Dataset:
    """The embedded SYNTHETIC natural-rubber surrogate (not the paper's MD data).

    Features on a Latin-hypercube design, target = oracle + Gaussian noise (std `noise`).
    """
    if n_rows < MIN_ROWS:
        raise UserError(f"data.n_rows={n_rows}: need at least {MIN_ROWS} rows")
    u = qmc.LatinHypercube(d=3, seed=seed).random(n_rows)
    X = _SURROGATE_LOW + u * (_SURROGATE_HIGH - _SURROGATE_LOW)
    X[:, 0] = X[:, 0].round(3)
    X[:, 1:] = X[:, 1:].round(2)
    rng = np.random.default_rng(seed + 1)
    y = surrogate_oracle(X) + rng.normal(0.0, noise, n_rows)
    return Dataset(X, y.round(2), SURROGATE_FEATURES, SURROGATE_TARGET, "rubber_surrogate (synthetic)")


def load_csv(path: str | Path, target: str, features: list[str] | None = None) -> Dataset:
    """Load and validate a numeric CSV; raise UserError naming the bad file, column or row."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"data.path: file not found: {p}")
    try:
        with p.open(newline="") as fh:
            header = next(csv.reader(fh), [])
        df = pd.read_csv(p)
    except (pd.errors.ParserError, OSError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{p}: cannot parse as CSV: {str(exc).splitlines()[0]}") from None
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise UserError(f"{p}: duplicate column name(s): {', '.join(map(str, dupes))}")
    if target not in df.columns:
        raise UserError(f"{p}: target column '{target}' not found; columns are: {', '.join(map(str, df.columns))}")
    if features is None:
        features = [c for c in df.columns if c != target]
    else:
        features = list(features)
        missing = [c for c in features if c not in df.columns]
        if missing:
            raise UserError(f"{p}: feature column(s) not found: {', '.join(missing)}")
        if target in features:
            raise UserError(f"{p}: target '{target}' is also listed in data.features")
    if not features:
        raise UserError(f"{p}: no feature columns besides the target '{target}'")
    return validate_frame(df[[*features, target]], target, name=p.name, source=str(p))


def validate_frame(df: pd.DataFrame, target: str, name: str, source: str) -> Dataset:
    """Check a frame is numeric, finite, non-constant and large enough; return a Dataset."""
    for col in df.columns:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & df[col].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(
                f"{source}: column '{col}' row {row + 2} is not numeric: {df[col].iloc[row]!r}"
            )
        arr = values.to_numpy(dtype=float)
        nonfinite = ~np.isfinite(arr)
        if nonfinite.any():
            row = int(np.flatnonzero(nonfinite)[0])
            raise UserError(f"{source}: column '{col}' row {row + 2} is {_describe(df[col].iloc[row])}")
        df = df.assign(**{col: arr})
    if len(df) < MIN_ROWS:
        raise UserError(f"{source}: {len(df)} rows; need at least {MIN_ROWS}")
    features = [c for c in df.columns if c != target]
    for col in features:
        if np.ptp(df[col].to_numpy()) == 0:
            raise UserError(f"{source}: feature column '{col}' is constant")
    if np.ptp(df[target].to_numpy()) == 0:
        raise UserError(f"{source}: target column '{target}' is constant")
    X = df[features].to_numpy(dtype=float)
    y = df[target].to_numpy(dtype=float)
    return Dataset(X, y, tuple(map(str, features)), str(target), name)


def _describe(value: object) -> str:
    """Human name of a missing/non-finite cell value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "missing (NaN)"
    return f"not finite ({value!r})"


def load_dataset(data_cfg) -> Dataset:
    """The data set a `data` config group describes (embedded surrogate or CSV)."""
    if data_cfg.source == "surrogate":
        return rubber_surrogate(n_rows=data_cfg.n_rows, noise=data_cfg.noise, seed=data_cfg.data_seed)
    if data_cfg.source == "csv":
        features = list(data_cfg.features) if data_cfg.features is not None else None
        return load_csv(data_cfg.path, data_cfg.target, features)
    raise UserError(f"data.source must be surrogate or csv, got '{data_cfg.source}'")
