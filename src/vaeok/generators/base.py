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
    """Fits on each fold's training rows and returns that fold's virtual samples.

    Capabilities (what evaluation, packaging, preflight and run naming ask instead of the type):
    - ``labels_own_rows``: the virtual rows come with labels; False = the labeler (ordinary
      kriging) labels them;
    - ``trains_with_callbacks``: ``fit(train_sets, seed, callbacks)`` trains a Lightning module and
      ``virtual_sets(module)`` samples it, so the evaluation callback can score during training;
    - ``export_state()``: what a packaged model needs to sample again (None: nothing), restored
      by the class's ``sample_state(state, n, seed)``.
    """

    name: str
    n_virtual: int
    labels_own_rows: bool
    trains_with_callbacks: bool

    def generate(self, train_sets: Sequence[TrainSet], seed: int) -> list[VirtualSet]:
        """One VirtualSet per training set, fitted on that set only."""
        ...

    def check_input(self, n_features: int) -> None:
        """UserError naming the config key if this generator cannot run on `n_features` features."""
        ...

    def describe(self) -> str:
        """The knobs that distinguish runs of this generator, for run names ('' = none)."""
        ...

    def export_state(self) -> dict | None:
        """The fitted state a packaged model needs to sample again, or None."""
        ...


class PlainGenerator:
    """Defaults of the Generator capabilities for generators fitted in `generate` alone."""

    labels_own_rows = True
    trains_with_callbacks = False

    def check_input(self, n_features: int) -> None:
        """Every feature count works."""

    def describe(self) -> str:
        """No knobs in the run name."""
        return ""

    def export_state(self) -> dict | None:
        """Nothing to package."""
        return None


class NoGenerator(PlainGenerator):
    """No augmentation: every fold gets an empty virtual set (the baseline)."""

    def __init__(self, name: str = "none", n_virtual: int = 0) -> None:
        self.name = name
        self.n_virtual = 0

    def generate(self, train_sets: Sequence[TrainSet], seed: int) -> list[VirtualSet]:
        d = train_sets[0].X.shape[1] if train_sets else 0
        return [VirtualSet(np.zeros((0, d)), np.zeros(0)) for _ in train_sets]
