"""Process-level settings for a run: thread counts, seeds, and silencing per-trial chatter."""

from __future__ import annotations

import logging
import os
import warnings

import torch
from threadpoolctl import threadpool_limits


def configure_runtime(torch_threads: int = 1) -> None:
    """Set intra-op threads and quiet Lightning/MLflow/alembic info logs and known warnings."""
    if torch.get_num_threads() != torch_threads:
        torch.set_num_threads(torch_threads)
    # BLAS/OpenMP pools (numpy, scikit-learn) likewise: on tiny matrices extra threads only add
    # synchronisation (GaussianMixture measured 10-50x slower with the default pool on 2 cores).
    threadpool_limits(limits=torch_threads)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "alembic", "mlflow", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"lightning(\..*)?")
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow(\..*)?")
    warnings.filterwarnings("ignore", message=r".*experimental feature.*")
    warnings.filterwarnings("ignore", message=r".*tight_layout.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow(\..*)?")
