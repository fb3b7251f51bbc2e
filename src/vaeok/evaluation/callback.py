"""The kriging + regressor evaluation as a Lightning Callback on a generator's training."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L

from vaeok.evaluation.result import EvalResult, Reporter
from vaeok.generators.base import VirtualSet


class EvaluationCallback(L.Callback):
    """Scores the VAE's virtual samples with kriging + regressor at fit end (the result) and
    every `every_n_epochs` epochs (reported to `report`, e.g. an Optuna trial for pruning)."""

    def __init__(self, score: Callable[[list[VirtualSet]], EvalResult], generator: Any,
                 every_n_epochs: int = 0, report: Reporter | None = None) -> None:
        self.score = score
        self.generator = generator
        self.every_n_epochs = every_n_epochs
        self.report = report
        self.intermediate: list[tuple[int, float]] = []
        self.result: EvalResult | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if not self.every_n_epochs or epoch % self.every_n_epochs or epoch >= trainer.max_epochs:
            return
        value = self.score(self.generator.virtual_sets(pl_module)).objective
        self.intermediate.append((epoch, value))
        if self.report is not None:
            self.report(epoch, value)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.interrupted:
            return
        self.result = self.score(self.generator.virtual_sets(pl_module))
