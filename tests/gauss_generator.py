"""A second Lightning-trained generator, written the way a user would add one: this module and one
YAML file (see test_new_generator.py). Per fold it fits a diagonal Gaussian to the standardised
training features by gradient descent on the negative log-likelihood, and samples virtual rows
from it; ordinary kriging labels them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from torch import nn

from vaeok.generators.base import TrainSet, VirtualSet


class GaussModule(L.LightningModule):
    """Per-fold mean and log-std, one Adam step per epoch on the Gaussian NLL of all rows."""

    def __init__(self, data: list[np.ndarray], lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.loc = [torch.tensor(a.mean(0)) for a in data]
        self.scale = [torch.tensor(a.std(0) + 1e-9) for a in data]
        self.rows = [torch.tensor((a - m.numpy()) / s.numpy()) for a, m, s in zip(data, self.loc, self.scale)]
        d = data[0].shape[1]
        self.mean = nn.Parameter(torch.zeros(len(data), d, dtype=torch.float64))
        self.log_std = nn.Parameter(torch.full((len(data), d), 0.5, dtype=torch.float64))

    def train_dataloader(self) -> Any:
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(1)))

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        nll = sum(((x - self.mean[i]) ** 2 / (2 * torch.exp(2 * self.log_std[i])) + self.log_std[i]).mean()
                  for i, x in enumerate(self.rows))
        return nll

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.lr)

    def state(self) -> dict[str, Any]:
        """Fitted mean and std per fold, in original units."""
        return {"mean": [(self.mean[i].detach() * s + m).numpy() for i, (m, s) in enumerate(zip(self.loc, self.scale))],
                "std": [(torch.exp(self.log_std[i].detach()) * s).numpy() for i, s in enumerate(self.scale)]}


class GaussGenerator:
    """Lightning-trained diagonal-Gaussian generator (features only: kriging labels its rows)."""

    labels_own_rows = False
    trains_with_callbacks = True

    def __init__(self, name: str = "gauss", n_virtual: int = 100, lr: float = 0.05,
                 trainer: Any = None, seed_offset: int = 0) -> None:
        self.name = name
        self.n_virtual = n_virtual
        self.lr = lr
        self.trainer_cfg = trainer or {"_target_": "lightning.Trainer", "max_epochs": 50}
        self.module: GaussModule | None = None

    def fit(self, train_sets: Sequence[TrainSet], seed: int, callbacks: Sequence[L.Callback] = ()) -> GaussModule:
        L.seed_everything(seed, verbose=False)
        self.module = GaussModule([t.X for t in train_sets], self.lr)
        trainer = instantiate(self.trainer_cfg, callbacks=list(callbacks), _convert_="all")
        trainer.fit(self.module)
        return self.module

    def virtual_sets(self, module: GaussModule, seed: int | None = None) -> list[VirtualSet]:
        st = module.state()
        return [VirtualSet(self.sample_state({"mean": m, "std": s, "seed": 0}, self.n_virtual, seed), None)
                for m, s in zip(st["mean"], st["std"])]

    def generate(self, train_sets: Sequence[TrainSet], seed: int) -> list[VirtualSet]:
        return self.virtual_sets(self.fit(train_sets, seed), seed)

    def check_input(self, n_features: int) -> None:
        """Any number of features works."""

    def describe(self) -> str:
        return f"lr{self.lr:g}"

    def export_state(self) -> dict[str, Any] | None:
        if self.module is None:
            return None
        st = self.module.state()
        return {"mean": st["mean"][0], "std": st["std"][0], "seed": 0}

    @staticmethod
    def sample_state(state: dict[str, Any], n: int, seed: int | None = None) -> np.ndarray:
        rng = np.random.default_rng(state["seed"] if seed is None else seed)
        return state["mean"] + rng.standard_normal((n, len(state["mean"]))) * state["std"]
