"""What scoring a config produces, and the reporter a sweep passes for intermediate values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from vaeok.generators.base import VirtualSet

Reporter = Callable[[int, float], None]
HONEST_PREFIX = "val"
LEAKY_PREFIX = "leaky"


@dataclass
class EvalResult:
    """Scores of one config: pooled metrics, per-row predictions, fold scores, diagnostics."""

    metrics: dict[str, float]
    predictions: pd.DataFrame
    fold_metrics: list[dict[str, float]]
    virtual: list[VirtualSet] = field(default_factory=list)
    loss_history: dict[str, np.ndarray] = field(default_factory=dict)
    intermediate: list[tuple[int, float]] = field(default_factory=list)
    objective_key: str = f"{HONEST_PREFIX}/r2"

    @property
    def objective(self) -> float:
        return self.metrics[self.objective_key]
