"""The packaged pipeline: generator -> kriging labeler -> regressor, refit on all development rows,
saved and loaded as one MLflow pyfunc model.

What is inside a packaged model (artifacts of the MLflow model):
- ``pipeline.pkl``: the fitted regressor, the kriging labeler (if the pipeline has kriging), the
  feature/target names and the resolved config;
- ``vae.pt``: the VAE weights and the scaler it was trained with (mean/std of the development
  rows), so virtual samples can be regenerated (`PackagedPipeline.sample_virtual`);
- the ``vaeok`` source (``code_paths``), so a fresh process only needs the dependencies.

Uncertainty: where virtual rows are labelled by ordinary kriging (VAE-OK), `predict` also
returns the kriging standard deviation at the query rows. That kriging model is fitted on the
REAL development rows only (the same fit that labelled the virtual rows). Refitting it on real +
virtual rows would treat kriging's own interpolations as observations and shrink the variance
towards zero around every virtual point, i.e. report confidence the data do not support.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

import vaeok
from vaeok.config.compose import to_yaml
from vaeok.core.errors import UserError, message
from vaeok.data.datasets import Dataset
from vaeok.evaluation.scoring import augmented, fit_regressor, fitted_labeler, label_virtual
from vaeok.generators.base import TrainSet
from vaeok.labelers.kriging import OrdinaryKrigingLabeler

PRED_SUFFIX = "_pred"
STD_SUFFIX = "_kriging_std"


@dataclass
class FittedPipeline:
    """A config's whole pipeline fitted on one set of (development) rows."""

    feature_names: tuple[str, ...]
    target_name: str
    regressor: Any
    labeler: OrdinaryKrigingLabeler | None
    config_yaml: str
    n_virtual: int
    vae_state: dict[str, Any] | None = None

    @property
    def has_kriging(self) -> bool:
        """True when virtual rows were labelled by kriging (so a kriging std is available)."""
        return self.labeler is not None

    def predict_array(self, X: np.ndarray) -> pd.DataFrame:
        """Predictions (and kriging std where available) for a numeric feature matrix."""
        X = np.asarray(X, dtype=float)
        out = pd.DataFrame({self.target_name + PRED_SUFFIX: self.regressor.predict(X)})
        if self.labeler is not None:
            _, std = self.labeler.predict(X, return_std=True)
            out[self.target_name + STD_SUFFIX] = std
        return out

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Validate a feature frame (columns by name, numeric, finite) and predict."""
        return self.predict_array(validate_features(df, self.feature_names))


def validate_features(df: pd.DataFrame, feature_names: tuple[str, ...] | list[str],
                      source: str = "input") -> np.ndarray:
    """The frame's features as a float matrix in training order; UserError on missing, extra,
    non-numeric or non-finite columns (naming them)."""
    cols = [str(c) for c in df.columns]
    missing = [c for c in feature_names if c not in cols]
    extra = [c for c in cols if c not in feature_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra)}")
        raise UserError(f"{source}: {'; '.join(parts)} (the model expects: {', '.join(feature_names)})")
    if len(df) == 0:
        raise UserError(f"{source}: no rows")
    df = df.copy()
    df.columns = cols
    for col in feature_names:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise UserError(f"{source}: column '{col}' row {row + 2} is not a finite number: {df[col].iloc[row]!r}")
        df[col] = values.astype(float)
    return df[list(feature_names)].to_numpy(dtype=float)


def fit_pipeline(cfg: DictConfig, rows: Dataset) -> FittedPipeline:
    """Fit generator, labeler and regressor of `cfg` on `rows` (the development rows; never the holdout).

    The same steps as one fold of `vaeok.evaluation.scoring.score_folds`, with all rows as training rows.
    """
    train = TrainSet(rows.X, rows.y)
    generator = instantiate(cfg.generator, _recursive_=False)
    if generator.trains_with_callbacks:
        virtual = generator.virtual_sets(generator.fit([train], cfg.seed))[0]
    else:
        virtual = generator.generate([train], cfg.seed)[0]
    vae_state = generator.export_state()
    if vae_state is not None:
        vae_state["generator"] = str(cfg.generator._target_)
    kriged = virtual.y is None and len(virtual.X) > 0
    virtual = label_virtual(cfg, virtual, train)
    regressor = fit_regressor(cfg, *augmented(cfg, train, virtual))  # weighted as in evaluation
    labeler = fitted_labeler(cfg, train) if kriged else None  # the fit that labelled the virtual rows
    return FittedPipeline(
        feature_names=rows.feature_names,
        target_name=rows.target_name,
        regressor=regressor,
        labeler=labeler,
        config_yaml=to_yaml(cfg),
        n_virtual=len(virtual.X),
        vae_state=vae_state,
    )


# --- MLflow packaging --------------------------------------------------------------------------

class PackagedPipeline(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: loads ``pipeline.pkl`` (+ ``vae.pt``) and predicts from a feature DataFrame."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the fitted pipeline (and VAE weights, if any) from the model's artifacts."""
        with open(context.artifacts["pipeline"], "rb") as fh:
            self.pipeline: FittedPipeline = pickle.load(fh)
        vae_path = context.artifacts.get("vae")
        self.pipeline.vae_state = torch.load(vae_path, weights_only=False) if vae_path else None

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Predictions (column ``<target>_pred``) and, with kriging, ``<target>_kriging_std``."""
        try:
            return self.pipeline.predict_frame(pd.DataFrame(model_input))
        except UserError as exc:
            raise ValueError(str(exc)) from None

    def sample_virtual(self, n: int, seed: int | None = None) -> np.ndarray:
        """Fresh virtual feature rows from the packaged VAE (needs a VAE generator)."""
        state = self.pipeline.vae_state
        if state is None:
            raise ValueError("this pipeline has no generator state to sample from")
        from hydra.utils import get_class

        return get_class(state["generator"]).sample_state(state, n, seed)


def log_pipeline(pipeline: FittedPipeline, example: pd.DataFrame, name: str = "model") -> mlflow.models.model.ModelInfo:
    """Log a fitted pipeline as a pyfunc model (signature, input example, VAE weights) in the active run."""
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"pipeline": str(Path(tmp) / "pipeline.pkl")}
        state = pipeline.vae_state
        pipeline.vae_state = None
        try:
            with open(artifacts["pipeline"], "wb") as fh:
                pickle.dump(pipeline, fh)
        finally:
            pipeline.vae_state = state
        if state is not None:
            artifacts["vae"] = str(Path(tmp) / "vae.pt")
            torch.save(state, artifacts["vae"])
        example = example[list(pipeline.feature_names)].astype(float)
        signature = infer_signature(example, pipeline.predict_frame(example))
        return mlflow.pyfunc.log_model(
            name=name,
            python_model=PackagedPipeline(),
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            code_paths=[str(Path(vaeok.__file__).parent)],
            pip_requirements=_requirements(),
            metadata={"feature_names": list(pipeline.feature_names), "target": pipeline.target_name,
                      "has_kriging": pipeline.has_kriging, "n_virtual": pipeline.n_virtual},
        )


def _requirements() -> list[str]:
    """Pinned runtime requirements (given explicitly: inference would re-import the model in a subprocess)."""
    from importlib.metadata import PackageNotFoundError, version

    reqs = []
    for pkg in ("mlflow", "torch", "lightning", "hydra-core", "omegaconf", "scikit-learn", "gstools", "pykrige",
                "numpy", "pandas", "scipy"):
        try:
            reqs.append(f"{pkg}=={version(pkg)}")
        except PackageNotFoundError:
            reqs.append(pkg)
    return reqs


def load_pipeline(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a packaged model; UserError (one line) if the URI does not resolve."""
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise UserError(f"cannot load model '{model_uri}': {message(exc)}") from None


def feature_names_of(model: mlflow.pyfunc.PyFuncModel) -> list[str]:
    """The feature columns a loaded model expects (from its signature)."""
    schema = model.metadata.get_input_schema()
    if schema is None:
        raise UserError("model has no input signature; cannot validate columns")
    return list(schema.input_names())


def predict_csv(model_uri: str, input_path: str | Path, output_path: str | Path | None = None) -> pd.DataFrame:
    """Validate a feature CSV against a packaged model and predict; write `output_path` if given.

    The input is read like `vaeok run` reads data (vaeok.data.csv_text: encodings, delimiters,
    strict numbers); the output, written whole or not at all, has the input columns followed by
    ``<target>_pred`` (and ``<target>_kriging_std``).
    """
    from vaeok.data.csv_text import read_table
    from vaeok.data.datasets import numeric_column

    out_path = None if output_path is None else _output_path(output_path)
    p = Path(input_path).expanduser()
    table = read_table(p, what="--input")
    if not table.rows:
        raise UserError(f"{p}: no data rows (only the header line)")
    dupes = sorted({c for c in table.header if table.header.count(c) > 1})
    if dupes:
        raise UserError(f"{p}: duplicate column name(s): {', '.join(dupes)}")
    df = pd.DataFrame({c: numeric_column(table, c, str(p)) for c in table.header})  # before the model loads
    model = load_pipeline(model_uri)
    features = feature_names_of(model)
    if set(table.header) != set(features):  # one message naming the missing and unexpected columns
        validate_features(pd.DataFrame(columns=list(table.header)), features, source=str(p))
    X = df[list(features)].to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        pred = pd.DataFrame(model.predict(pd.DataFrame(X, columns=features))).reset_index(drop=True)
    bad = ~np.isfinite(pred.to_numpy(dtype=float)).all(axis=1)
    if bad.any():
        row = table.lines[int(np.flatnonzero(bad)[0])]
        raise UserError(f"{p}: the prediction for row {row} is not finite (its values are far outside the range "
                        f"the model was trained on); {int(bad.sum())} row(s) affected")
    out = pd.concat([df.reset_index(drop=True), pred], axis=1)
    if out_path is not None:
        _write_whole(out, out_path)
    return out


def _output_path(path: str | Path) -> Path:
    """`--output` as a Path if a regular file can be written there; UserError naming --output otherwise."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"--output: {p} is a directory; give a file name, e.g. {p / 'predictions.csv'}")
    if p.exists() and not p.is_file():
        raise UserError(f"--output: {p} is not a regular file (a device, pipe or socket)")
    for parent in (p.parent, *p.parent.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"--output: {parent} is not a directory")
            break
    return p


def _write_whole(frame: pd.DataFrame, path: Path) -> None:
    """Write a CSV next to `path` and move it into place: a failed write leaves `path` as it was."""
    import os
    import tempfile

    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp",
                                         delete=False, newline="") as fh:
            tmp = Path(fh.name)
            frame.to_csv(fh, index=False)
        os.replace(tmp, path)
    except OSError as exc:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        raise UserError(f"--output: cannot write {path}: {exc.strerror or exc}") from None
