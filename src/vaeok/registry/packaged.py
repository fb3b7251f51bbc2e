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
from pathlib import Path

import mlflow
import pandas as pd
import torch
from omegaconf import DictConfig

import vaeok
from vaeok.config.compose import to_yaml
from vaeok.config.targets import build
from vaeok.data.datasets import Dataset
from vaeok.evaluation.scoring import augmented, fit_regressor, fitted_labeler, label_virtual
from vaeok.generators.base import TrainSet
from vaeok.registry.serving import (  # noqa: F401  (re-exported: pickles of older models name them here)
    PRED_SUFFIX,
    STD_SUFFIX,
    EnsemblePipeline,
    FittedPipeline,
    PackagedPipeline,
    feature_names_of,
    load_pipeline,
    predict_csv,
    validate_features,
)


def fit_pipeline(cfg: DictConfig, rows: Dataset) -> FittedPipeline:
    """Fit generator, labeler and regressor of `cfg` on `rows` (the development rows; never the holdout).

    The same steps as one fold of `vaeok.evaluation.scoring.score_folds`, with all rows as training rows.
    """
    train = TrainSet(rows.X, rows.y)
    generator = build(cfg.generator, "generator", _recursive_=False)
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

def log_pipeline(pipeline: FittedPipeline | EnsemblePipeline, example: pd.DataFrame,
                 name: str = "model") -> mlflow.models.model.ModelInfo:
    """Log a fitted pipeline as a pyfunc model (signature, input example, VAE weights) in the active run."""
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory() as tmp:
        artifacts = {"pipeline": str(Path(tmp) / "pipeline.pkl")}
        ensemble = isinstance(pipeline, EnsemblePipeline)
        holders = [*pipeline.members, pipeline] if ensemble else [pipeline]
        states = [m.vae_state for m in holders]
        for m in holders:  # the weights go to vae.pt: unpickling torch tensors would import torch in predict
            m.vae_state = None
        try:
            with open(artifacts["pipeline"], "wb") as fh:
                pickle.dump(pipeline, fh)
        finally:
            for m, state in zip(holders, states, strict=True):
                m.vae_state = state
        if any(s is not None for s in states):
            artifacts["vae"] = str(Path(tmp) / "vae.pt")
            torch.save({"members": states[:-1], "ensemble": states[-1]} if ensemble else states[0], artifacts["vae"])
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
