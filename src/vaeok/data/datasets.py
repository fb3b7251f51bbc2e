"""Data sets: the embedded synthetic surrogate, CSV loading, and validation at the boundary."""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vaeok.core.errors import UserError
from vaeok.data.csv_text import Table, delimiter_name, read_table

MIN_ROWS = 10
# Default data.max_rows: above it ordinary kriging on every fold's rows takes too long (see check_row_limit).
DEFAULT_MAX_ROWS = 5000

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
    from scipy.stats import qmc  # scipy.stats costs ~1 s of imports; only the embedded data set needs it

    u = qmc.LatinHypercube(d=3, seed=seed).random(n_rows)
    X = _SURROGATE_LOW + u * (_SURROGATE_HIGH - _SURROGATE_LOW)
    X[:, 0] = X[:, 0].round(3)
    X[:, 1:] = X[:, 1:].round(2)
    rng = np.random.default_rng(seed + 1)
    y = surrogate_oracle(X) + rng.normal(0.0, noise, n_rows)
    return Dataset(X, y.round(2), SURROGATE_FEATURES, SURROGATE_TARGET, "rubber_surrogate (synthetic)")


def load_csv(path: str | Path, target: str, features: list[str] | None = None, encoding: str = "utf-8",
             delimiter: str | None = None, max_rows: int | None = DEFAULT_MAX_ROWS) -> Dataset:
    """Load and validate a numeric CSV; raise UserError naming the bad file, column or row.

    Rows are named by their line in the file (as an editor or spreadsheet numbers them; the header
    is line 1). What the reader accepts is described in `vaeok.data.csv_text`.
    """
    p = Path(path).expanduser()
    table = read_table(p, encoding, delimiter)
    columns = list(table.header)
    dupes = sorted({c for c in columns if columns.count(c) > 1})
    if dupes:
        raise UserError(f"{p}: duplicate column name(s): {', '.join(dupes)}")
    if target not in columns:
        raise UserError(f"{p}: target column '{target}' not found{_column_hint(target, table)}")
    if features is None:
        features = [c for c in columns if c != target]
    else:
        features = [str(c) for c in features]
        missing = [c for c in features if c not in columns]
        if missing:
            raise UserError(f"{p}: feature column(s) not found: {', '.join(missing)}; "
                            f"columns are: {', '.join(columns)}")
        if target in features:
            raise UserError(f"{p}: target '{target}' is also listed in data.features")
        repeated = sorted({c for c in features if features.count(c) > 1})
        if repeated:
            raise UserError(f"data.features lists column(s) more than once: {', '.join(repeated)}")
    if not features:
        raise UserError(f"{p}: no feature columns besides the target '{target}'")
    n = len(table.rows)
    if n == 0:
        raise UserError(f"{p}: no data rows (only the header line)")
    if n < MIN_ROWS:
        raise UserError(f"{p}: {n} rows; need at least {MIN_ROWS}")
    check_row_limit(n, max_rows, str(p))
    source = str(p)
    X = np.column_stack([numeric_column(table, col, source) for col in features])
    y = numeric_column(table, target, source)
    _check_not_constant(X, y, features, target, source)
    return Dataset(X, y, tuple(features), target, p.name)


def check_row_limit(n_rows: int, max_rows: int | None, source: str) -> None:
    """UserError if a data set has more rows than data.max_rows (null = no limit)."""
    if max_rows is not None and n_rows > max_rows:
        raise UserError(
            f"{source}: {n_rows} rows exceed data.max_rows={max_rows}: ordinary kriging costs O(n^2) memory and "
            "O(n^3) time per fold (2000 rows take ~3 min per run here); subsample the file, or set "
            f"labeler.max_points=1000 data.max_rows={n_rows} to krige on a subsample of each fold"
        )


def _column_hint(name: str, table: Table) -> str:
    """'; columns are: ...' plus a likely intended column or a delimiter hint."""
    columns = list(table.header)
    hint = f"; columns are: {', '.join(columns)}"
    close = difflib.get_close_matches(name, columns, n=1, cutoff=0.6) or [
        c for c in columns if c.lower() == name.lower()]
    if close:
        hint += f" (did you mean '{close[0]}'?)"
    if len(columns) == 1:
        hint += (f"; the header has a single column when read {delimiter_name(table.delimiter)}-separated: "
                 "set data.delimiter to the file's delimiter")
    return hint


_MISSING_TOKENS = {"na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>", "nil", "missing", "?", "-", "--"}
_DECIMAL_COMMA = re.compile(r"^[+-]?\d*,\d+$")


# Beyond this magnitude squares and variances overflow float64 (scalers, kriging, the VAE loss).
MAX_ABS_VALUE = 1e100


def numeric_column(table: Table, col: str, source: str) -> np.ndarray:
    """A column's cells as finite floats; UserError naming the first bad row (and how many there are)."""
    cells = table.column(col)
    values = np.array([_to_float(c) for c in cells], dtype=float)
    bad = ~np.isfinite(values)
    if not bad.any():
        huge = np.flatnonzero(np.abs(values) > MAX_ABS_VALUE)
        if len(huge):
            more = f" (and {len(huge) - 1} more row(s) in this column)" if len(huge) > 1 else ""
            raise UserError(f"{source}: column '{col}' row {table.lines[huge[0]]} is too large "
                            f"({cells[huge[0]]}){more}: values beyond +-{MAX_ABS_VALUE:g} overflow the "
                            "arithmetic; rescale the column")
        return values
    idx = np.flatnonzero(bad)
    cell = cells[idx[0]]
    more = f" (and {len(idx) - 1} more row(s) in this column)" if len(idx) > 1 else ""
    where = f"{source}: column '{col}' row {table.lines[idx[0]]}"
    if cell == "":
        raise UserError(f"{where} is missing (empty cell){more}; fill or drop rows with missing values")
    if cell.lower() in _MISSING_TOKENS or cell.lower().lstrip("+-") == "nan":
        raise UserError(f"{where} is missing ({cell!r}){more}; fill or drop rows with missing values")
    if np.isnan(values[idx[0]]):
        hint = "; decimal commas are not read: use '.' as the decimal separator" if _DECIMAL_COMMA.match(cell) else ""
        raise UserError(f"{where} is not numeric: {cell!r}{more}{hint}")
    raise UserError(f"{where} is not finite ({cell!r}){more}")


def _to_float(cell: str) -> float:
    """A cell as a float; NaN for anything that is not a plain ASCII decimal number (or inf/nan)."""
    if not cell.isascii() or "_" in cell:
        return np.nan
    try:
        return float(cell)
    except ValueError:
        return np.nan


def _check_not_constant(X: np.ndarray, y: np.ndarray, features: list[str], target: str, source: str) -> None:
    for j, col in enumerate(features):
        if np.ptp(X[:, j]) == 0:
            raise UserError(f"{source}: feature column '{col}' is constant ({X[0, j]:g} in every row); "
                            "leave it out with data.features=[...]")
    if np.ptp(y) == 0:
        raise UserError(f"{source}: target column '{target}' is constant ({y[0]:g} in every row); "
                        "there is nothing to predict")


def same_rows(a: Any, b: Any) -> bool:
    """True if two `data` config nodes read the same rows (the VAE batch size aside)."""
    from omegaconf import OmegaConf

    da = OmegaConf.to_container(a, resolve=True)
    db = OmegaConf.to_container(b, resolve=True)
    da.pop("batch_size", None)
    db.pop("batch_size", None)
    return da == db


_LOADED: dict[str, Dataset] = {}


def _source_key(data_cfg: Any) -> str:
    """What a data config reads: its settings (batch size aside) and, for a CSV, the file's
    absolute path, size and modification time."""
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(data_cfg, resolve=True)
    d.pop("batch_size", None)
    if d.get("source") == "csv" and d.get("path"):
        path = Path(str(d["path"])).resolve()
        st = path.stat() if path.is_file() else None
        d["path"] = (str(path), st.st_size if st else None, st.st_mtime_ns if st else None)
    return repr(sorted(d.items()))


def load_dataset_cached(data_cfg: Any) -> Dataset:
    """`load_dataset`, reading and validating each data source once per process (sweep trials)."""
    key = _source_key(data_cfg)
    if key not in _LOADED:
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = load_dataset(data_cfg)
    return _LOADED[key]


def load_dataset(data_cfg) -> Dataset:
    """The data set a `data` config group describes (embedded surrogate or CSV)."""
    if data_cfg.source == "surrogate":
        check_row_limit(data_cfg.n_rows, data_cfg.max_rows, "data.n_rows")
        return rubber_surrogate(n_rows=data_cfg.n_rows, noise=data_cfg.noise, seed=data_cfg.data_seed)
    if data_cfg.source == "csv":
        features = list(data_cfg.features) if data_cfg.features is not None else None
        return load_csv(data_cfg.path, data_cfg.target, features, encoding=data_cfg.encoding,
                        delimiter=data_cfg.delimiter, max_rows=data_cfg.max_rows)
    raise UserError(f"data.source must be surrogate or csv, got '{data_cfg.source}'")
