"""What a packaged model needs at prediction time, and nothing more.

`vaeok predict` and MLflow's pyfunc loader import only this module of vaeok (plus its small
helpers): numpy, pandas, MLflow and the modules of the pickled regressor and kriging labeler
(scikit-learn, pykrige/gstools). Not torch, Lightning, Hydra's instantiate or Optuna, which cost
several seconds of start-up and which prediction does not use. The VAE weights (``vae.pt``, read
with torch) are loaded only when `PackagedPipeline.sample_virtual` asks for them.

`predict_csv` checks the input's columns against the model's signature, read from the small
``MLmodel`` file, before it loads the pickled pipeline: a wrong column answers at once.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from vaeok.core.errors import UserError, message

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

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
        """Predictions and an uncertainty column where the pipeline has one: the kriging std of
        the labeler (VAE-OK), or the regressor's own predictive std (regressor=kriging: kriging
        std; regressor=gpr: GP std)."""
        X = np.asarray(X, dtype=float)
        own_std = getattr(self.regressor, "std_name", None) if self.labeler is None else None
        if own_std is not None:
            mean, std = self.regressor.predict(X, return_std=True)
            return pd.DataFrame({self.target_name + PRED_SUFFIX: mean, f"{self.target_name}_{own_std}": std})
        out = pd.DataFrame({self.target_name + PRED_SUFFIX: self.regressor.predict(X)})
        if self.labeler is not None:
            _, std = self.labeler.predict(X, return_std=True)
            out[self.target_name + STD_SUFFIX] = std
        return out

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Validate a feature frame (columns by name, numeric, finite) and predict."""
        return self.predict_array(validate_features(df, self.feature_names))


@dataclass
class EnsemblePipeline:
    """A weighted mean of fitted pipelines (greedy ensemble selection over a study's trials).

    Uncertainty: when every member reports a predictive std, ``<target>_std`` is the std of the
    weighted mixture of the members' predictive distributions (their stds and their spread).
    The members' generator states are packaged in ``vae.pt`` (read only by `sample_virtual`)."""

    members: list[FittedPipeline]
    weights: list[float]
    config_yaml: str = ""
    vae_state: dict[str, Any] | None = None

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.members[0].feature_names

    @property
    def target_name(self) -> str:
        return self.members[0].target_name

    @property
    def has_kriging(self) -> bool:
        return any(m.has_kriging for m in self.members)

    @property
    def n_virtual(self) -> int:
        return max(m.n_virtual for m in self.members)

    def predict_array(self, X: np.ndarray) -> pd.DataFrame:
        """Weighted mean prediction (and the mixture std when every member has a std)."""
        w = np.asarray(self.weights, dtype=float) / float(np.sum(self.weights))
        frames = [m.predict_array(X) for m in self.members]
        mus = np.column_stack([f.iloc[:, 0].to_numpy() for f in frames])
        mean = mus @ w
        out = pd.DataFrame({self.target_name + PRED_SUFFIX: mean})
        if all(f.shape[1] > 1 for f in frames):
            sig = np.column_stack([f.iloc[:, 1].to_numpy() for f in frames])
            out[self.target_name + "_std"] = np.sqrt(np.maximum((sig**2 + mus**2) @ w - mean**2, 0.0))
        return out

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Validate a feature frame (columns by name, numeric, finite) and predict."""
        return self.predict_array(validate_features(df, self.feature_names))


def check_columns(columns: Sequence[Any], feature_names: Sequence[str], source: str = "input") -> None:
    """UserError naming the missing and unexpected columns, if `columns` are not the model's features."""
    cols = [str(c) for c in columns]
    missing = [c for c in feature_names if c not in cols]
    extra = [c for c in cols if c not in feature_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected column(s) {', '.join(extra)}")
        raise UserError(f"{source}: {'; '.join(parts)} (the model expects: {', '.join(feature_names)})")


def validate_features(df: pd.DataFrame, feature_names: tuple[str, ...] | list[str],
                      source: str = "input") -> np.ndarray:
    """The frame's features as a float matrix in training order; UserError on missing, extra,
    non-numeric or non-finite columns (naming them)."""
    check_columns(df.columns, feature_names, source)
    cols = [str(c) for c in df.columns]
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


class PackagedPipeline(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: loads ``pipeline.pkl`` and predicts from a feature DataFrame; the VAE
    weights (``vae.pt``) are read on first use by `sample_virtual`."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the fitted pipeline from the model's artifacts (not the VAE weights: torch)."""
        with open(context.artifacts["pipeline"], "rb") as fh:
            self.pipeline: FittedPipeline | EnsemblePipeline = pickle.load(fh)
        self.pipeline.vae_state = None
        self._vae_path: str | None = context.artifacts.get("vae")

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Predictions (column ``<target>_pred``) and, with kriging, ``<target>_kriging_std``."""
        try:
            return self.pipeline.predict_frame(pd.DataFrame(model_input))
        except UserError as exc:
            raise ValueError(str(exc)) from None

    def vae_state(self) -> dict[str, Any] | None:
        """The packaged generator state (VAE weights and scaler), loaded with torch on first use."""
        if self.pipeline.vae_state is None and getattr(self, "_vae_path", None):
            import torch

            state = torch.load(self._vae_path, weights_only=False)
            self._vae_path = None
            if isinstance(state, dict) and "members" in state:  # an ensemble: one state (or None) per member
                for member, member_state in zip(self.pipeline.members, state["members"], strict=True):
                    member.vae_state = member_state
                self.pipeline.vae_state = state.get("ensemble")
            else:
                self.pipeline.vae_state = state
        members = [m.vae_state for m in getattr(self.pipeline, "members", []) if m.vae_state]
        return self.pipeline.vae_state or (members[0] if members else None)

    def sample_virtual(self, n: int, seed: int | None = None) -> np.ndarray:
        """Fresh virtual feature rows from the packaged VAE (needs a VAE generator)."""
        state = self.vae_state()
        if state is None:
            raise ValueError("this pipeline has no generator state to sample from")
        from hydra.utils import get_class

        return get_class(state["generator"]).sample_state(state, n, seed)


def load_pipeline(model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    """Load a packaged model; UserError (one line) if the URI does not resolve."""
    try:
        return mlflow.pyfunc.load_model(model_uri)
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise UserError(f"cannot load model '{model_uri}': {message(exc)}") from None


def feature_names_of(model: mlflow.pyfunc.PyFuncModel) -> list[str]:
    """The feature columns a loaded model expects (from its signature)."""
    return _input_names(model.metadata.get_input_schema())


def _input_names(schema: Any) -> list[str]:
    if schema is None:
        raise UserError("model has no input signature; cannot validate columns")
    return list(schema.input_names())


def signature_features(model_uri: str) -> list[str]:
    """The model's feature columns read from its ``MLmodel`` file only (no pickle, no code loaded)."""
    from mlflow.models import get_model_info

    try:
        signature = get_model_info(model_uri).signature
    except (mlflow.exceptions.MlflowException, OSError) as exc:
        raise UserError(f"cannot load model '{model_uri}': {message(exc)}") from None
    return _input_names(None if signature is None else signature.inputs)


def predict_csv(model_uri: str, input_path: str | Path, output_path: str | Path | None = None) -> pd.DataFrame:
    """Validate a feature CSV against a packaged model and predict; write `output_path` if given.

    The input is read like `vaeok run` reads data (vaeok.data.csv_text: encodings, delimiters,
    strict numbers), its columns checked against the model's signature before the pickled pipeline
    (and its imports) is loaded; the output, written whole or not at all, has the input columns
    followed by ``<target>_pred`` (and an uncertainty column where the model has one).
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
    features = signature_features(model_uri)
    check_columns(table.header, features, source=str(p))
    df = pd.DataFrame({c: numeric_column(table, c, str(p)) for c in table.header})
    X = df[list(features)].to_numpy(dtype=float)
    model = load_pipeline(model_uri)
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


def check_model_uri(client: MlflowClient, uri: str) -> None:
    """One-line errors for models:/<name>@<alias> and models:/<name>/<version> that do not resolve."""
    from mlflow.exceptions import MlflowException

    from vaeok.core.redact import redact_url

    m = re.fullmatch(r"models:/([^/@]+)(?:@([^/]+)|/([^/]+))?", uri)
    if not m:
        return
    name, alias, version = m.groups()
    try:
        client.get_registered_model(name)
    except MlflowException:
        raise UserError(f"no registered model '{name}' in {redact_url(mlflow.get_tracking_uri())} "
                        "(run `vaeok promote --study NAME` first)") from None
    try:
        if alias:
            client.get_model_version_by_alias(name, alias)
        elif version and version != "latest":
            client.get_model_version(name, version)
    except MlflowException:
        what = f"alias '{alias}'" if alias else f"version '{version}'"
        raise UserError(f"registered model '{name}' has no {what}") from None


def predict(model_uri: str, input_path: str | Path, output_path: str | Path | None = None,
            overrides: Sequence[str] = ()) -> pd.DataFrame:
    """Predict a feature CSV with a packaged model from this project's MLflow store (see `predict_csv`)."""
    from mlflow.tracking import MlflowClient

    from vaeok.config.compose import load_config
    from vaeok.core.redact import redact_url
    from vaeok.tracking.runs import absolute_sqlite_uri

    if not Path(input_path).expanduser().is_file():
        raise UserError(f"--input: file not found: {input_path}")
    cfg = load_config(overrides)  # the tracking store (no torch: prediction does not use it)
    uri = str(cfg.tracking.uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file() \
            and model_uri.startswith("models:/"):
        raise UserError(f"no MLflow store at {redact_url(uri)} (run from the project directory, or promote a "
                        "model first)")
    from vaeok.tracking.stores import open_mlflow_store

    mlflow.set_tracking_uri(absolute_sqlite_uri(uri))
    open_mlflow_store(mlflow.get_tracking_uri())  # a damaged or half-made store: one line, exit 2
    check_model_uri(MlflowClient(), model_uri)
    return predict_csv(model_uri, input_path, output_path)
