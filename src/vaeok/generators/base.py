"""The generator interface and the no-augmentation baseline."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class TrainSet:
    """Real training rows of one fold (original units)."""

    X: np.ndarray
    y: np.ndarray


@dataclass
class VirtualSet:
    """Virtual samples for one fold; y is None until labelled; std is the kriging std if any."""

    X: np.ndarray
    y: np.ndarray | None = None
    std: np.ndarray | None = None


class Generator(Protocol):
    """Fits on each fold's training rows and returns that fold's virtual samples."""

    name: str
    n_virtual: int

    def generate(self, train_sets: Sequence[TrainSet], seed: int) -> list[VirtualSet]:
        """One VirtualSet per training set, fitted on that set only."""
        ...


class NoGenerator:
    """No augmentation: every fold gets an empty virtual set (the baseline)."""

    def __init__(self, name: str = "none", n_virtual: int = 0) -> None:
        self.name = name
        self.n_virtual = 0

    def generate(self, train_sets: Sequence[TrainSet], seed: int) -> list[VirtualSet]:
        d = train_sets[0].X.shape[1] if train_sets else 0
        return [VirtualSet(np.zeros((0, d)), np.zeros(0)) for _ in train_sets]
