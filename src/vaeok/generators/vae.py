"""VAE generator (VAE-OK and VAE-VSG) as a Lightning module that trains all folds at once.

Each fold gets its own independent VAE (paper Table 1 architecture). The K fold-VAEs are stored
as stacked weights and run with batched matrix products, so one optimiser step trains every
fold on its own rows (Adam is element-wise, so this equals K separate optimisers). Each fold is
standardised with a scaler fitted on its own training rows; nothing else is shared.
Source: Kingma & Welling, "Auto-Encoding Variational Bayes" (2014); loss as in Hu et al. 2024,
Algorithm 1: sum-squared reconstruction error + KL divergence.
"""

from __future__ import annotations

import itertools
import math
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from vaeok.config.schema import ACTIVATIONS
from vaeok.config.targets import build
from vaeok.core.errors import NumericalError, UserError
from vaeok.generators.base import TrainSet, VirtualSet

_ACTIVATIONS = dict(zip(ACTIVATIONS, (torch.relu, torch.tanh, torch.sigmoid, nn.functional.elu,
                                        nn.functional.leaky_relu, nn.functional.gelu, nn.functional.silu), strict=True))


class StackedLinear(nn.Module):
    """K independent linear layers applied to a [K, B, in] batch with one bmm."""

    def __init__(self, k: int, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(k, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(k, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class StackedVAE(nn.Module):
    """K fold-VAEs: encoder MLP -> (mu, logvar) -> decoder MLP, stacked along dim 0."""

    def __init__(self, k: int, n_in: int, hidden: int, n_layers: int, latent: int, activation: str) -> None:
        super().__init__()
        self.act = _ACTIVATIONS[activation]
        enc = [n_in] + [hidden] * n_layers
        self.encoder = nn.ModuleList(StackedLinear(k, a, b) for a, b in itertools.pairwise(enc))
        self.mu = StackedLinear(k, hidden, latent)
        self.logvar = StackedLinear(k, hidden, latent)
        dec = [latent] + [hidden] * n_layers
        self.decoder = nn.ModuleList(StackedLinear(k, a, b) for a, b in itertools.pairwise(dec))
        self.out = StackedLinear(k, hidden, n_in)
        self.latent = latent

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        for layer in self.encoder:
            x = self.act(layer(x))
        return self.mu(x), self.logvar(x)

    def decode(self, z: Tensor) -> Tensor:
        for layer in self.decoder:
            z = self.act(layer(z))
        return self.out(z)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decode(z), mu, logvar


class FoldBatches:
    """Per-epoch shuffled mini-batches of row positions for every fold (padded, masked).

    Iterating yields ONE item per epoch: the tuple of that epoch's [K, batch] position tensors,
    so Lightning's per-step machinery runs once per epoch (see `VAEModule.training_step`).
    """

    def __init__(self, counts: Tensor, batch_size: int, seed: int) -> None:
        self.counts = counts
        self.n_max = int(counts.max())
        self.batch_size = min(batch_size, self.n_max)
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return 1

    def epoch(self) -> tuple[Tensor, ...]:
        """A fresh shuffle of every fold's rows, split into mini-batches."""
        k = len(self.counts)
        keys = torch.rand(k, self.n_max, generator=self.gen)
        keys[torch.arange(self.n_max)[None, :] >= self.counts[:, None]] = 2.0  # padding last
        perm = keys.argsort(dim=1)
        return tuple(perm[:, start : start + self.batch_size] for start in range(0, self.n_max, self.batch_size))

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        yield self.epoch()


class VAEModule(L.LightningModule):
    """Lightning module training K fold-VAEs on padded, per-fold standardised data."""

    def __init__(
        self,
        data: Tensor,
        counts: Tensor,
        mean: Tensor,
        scale: Tensor,
        hidden: int = 65,
        n_layers: int = 1,
        latent: int = 2,
        activation: str = "relu",
        lr: float = 0.002,
        beta: float = 1.0,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["data", "counts", "mean", "scale"])
        k, _, n_in = data.shape
        self.data, self.counts, self.mean, self.scale = data, counts, mean, scale
        self.vae = StackedVAE(k, n_in, hidden, n_layers, latent, activation)
        self.history: dict[str, list[Tensor]] = {"recon": [], "kld": []}
        self._epoch_recon = torch.zeros(k)
        self._epoch_kld = torch.zeros(k)
        self.batches = FoldBatches(counts, batch_size, seed)
        self.seed = seed
        self.automatic_optimization = False

    @property
    def n_folds(self) -> int:
        return int(self.data.shape[0])

    def train_dataloader(self) -> FoldBatches:
        return self.batches

    def batch_loss(self, positions: Tensor) -> Tensor:
        """Summed (over folds) sum-MSE reconstruction + beta * KLD of one mini-batch; accumulates
        each fold's epoch losses."""
        valid = (positions < self.counts[:, None]).unsqueeze(-1).to(self.data.dtype)
        x = torch.gather(self.data, 1, positions.unsqueeze(-1).expand(-1, -1, self.data.shape[2]))
        x_hat, mu, logvar = self.vae(x)
        recon = (((x_hat - x) ** 2) * valid).sum(dim=(1, 2))
        kld = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()) * valid).sum(dim=(1, 2))
        self._epoch_recon += recon.detach()
        self._epoch_kld += kld.detach()
        return (recon + self.hparams.beta * kld).sum()

    def training_step(self, batches: tuple[Tensor, ...], batch_idx: int) -> None:
        """One epoch: an Adam step per mini-batch (manual optimisation). The tiny models are
        overhead-bound, so Lightning's per-step hooks run once per epoch instead of per batch,
        and the steps use the plain torch optimizer and backward (`use_pl_optimizer=False`):
        on one CPU process in fp32 Lightning's optimizer wrapper and `manual_backward` only add
        hook calls (~26 per epoch; about 12 % of a default VAE fit, measured). The arithmetic is
        the same as automatic optimisation, step for step (bit-identical samples)."""
        opt = self.optimizers(use_pl_optimizer=False)
        for positions in batches:
            loss = self.batch_loss(positions)
            opt.zero_grad()
            loss.backward()
            opt.step()

    def on_train_epoch_end(self) -> None:
        n = self.counts.to(self.data.dtype)
        self.history["recon"].append(self._epoch_recon / n)
        self.history["kld"].append(self._epoch_kld / n)
        self._epoch_recon = torch.zeros_like(self._epoch_recon)
        self._epoch_kld = torch.zeros_like(self._epoch_kld)
        # One check of K numbers per epoch (no per-step sync): a diverged fold poisons its epoch sums.
        bad = ~torch.isfinite(self.history["recon"][-1] + self.hparams.beta * self.history["kld"][-1])
        if bad.any():
            fold = int(bad.nonzero()[0, 0])
            raise NumericalError(
                f"VAE loss is not finite at epoch {self.current_epoch + 1} (fold {fold}); training diverged: "
                f"lower model.lr (now {self.hparams.lr:g}) or model.beta (now {self.hparams.beta:g})")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def loss_history(self) -> dict[str, np.ndarray]:
        """Per-epoch mean per-sample losses, shape [epochs, folds]: recon, kld, total."""
        if not self.history["recon"]:
            return {}
        recon = torch.stack(self.history["recon"]).numpy()
        kld = torch.stack(self.history["kld"]).numpy()
        return {"recon": recon, "kld": kld, "loss": recon + self.hparams.beta * kld}

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None) -> list[np.ndarray]:
        """Decode n draws of z ~ N(0, I) per fold, back in original units."""
        gen = torch.Generator().manual_seed(self.seed if seed is None else seed)
        z = torch.randn(self.n_folds, n, self.vae.latent, generator=gen)
        x = self.vae.decode(z) * self.scale[:, None, :] + self.mean[:, None, :]
        bad = ~torch.isfinite(x).all(dim=(1, 2))
        if bad.any():
            raise NumericalError(f"VAE generated non-finite virtual samples (fold {int(bad.nonzero()[0, 0])}); "
                                 f"lower model.lr (now {self.hparams.lr:g}) or model.beta (now {self.hparams.beta:g})")
        return [xi.numpy().astype(float) for xi in x]


def build_module(train_sets: Sequence[np.ndarray], model: dict[str, Any], batch_size: int, seed: int) -> VAEModule:
    """Pad and standardise each fold's rows (own mean/std) and build the module."""
    k = len(train_sets)
    n_in = train_sets[0].shape[1]
    counts = torch.tensor([len(a) for a in train_sets])
    n_max = int(counts.max())
    data = torch.zeros(k, n_max, n_in)
    mean = torch.zeros(k, n_in)
    scale = torch.ones(k, n_in)
    for i, a in enumerate(train_sets):
        m, s = a.mean(axis=0), a.std(axis=0)
        s[s == 0] = 1.0
        mean[i], scale[i] = torch.from_numpy(m), torch.from_numpy(s)
        data[i, : len(a)] = torch.from_numpy((a - m) / s)
    torch.manual_seed(seed)
    return VAEModule(data, counts, mean, scale, batch_size=batch_size, seed=seed, **model)


class VAEGenerator:
    """VAE-OK (joint=False: VAE on features, labels from the labeler) or VAE-VSG (joint=True:
    VAE on features+target, the decoded target column is the label)."""

    def __init__(
        self,
        name: str = "vae_ok",
        n_virtual: int = 1000,
        joint: bool = False,
        model: DictConfig | dict | None = None,
        trainer: DictConfig | dict | None = None,
        batch_size: int = 64,
    ) -> None:
        self.name = name
        self.n_virtual = n_virtual
        self.joint = joint
        if isinstance(model, DictConfig):
            model = OmegaConf.to_container(model, resolve=True)
        self.model = dict(model or {})
        self.trainer_cfg = trainer if trainer is not None else {"_target_": "lightning.Trainer", "max_epochs": 400}
        self.batch_size = batch_size
        self.module: VAEModule | None = None

    trains_with_callbacks = True

    @property
    def labels_own_rows(self) -> bool:
        """VAE-VSG decodes its own label column; VAE-OK rows are labelled by the labeler."""
        return self.joint

    def check_input(self, n_features: int) -> None:
        """The latent space must not be wider than the VAE's input (features, + target if joint)."""
        width = n_features + (1 if self.joint else 0)
        latent = int(self.model.get("latent", 2))
        if latent > width:
            what = f"{n_features} feature(s)" + (" + the target" if self.joint else "")
            raise UserError(f"model.latent={latent} exceeds the VAE's input width {width} ({what}); "
                            f"set model.latent<={width}")

    def describe(self) -> str:
        """Hidden width, epochs, learning rate and batch size."""
        epochs = self.trainer_cfg.get("max_epochs", "?")
        return f"h{self.model.get('hidden')}-e{epochs}-lr{self.model.get('lr', 0):g}-b{self.batch_size}"

    def export_state(self) -> dict[str, Any] | None:
        """Weights, architecture and scaler of the fitted VAE (None before `fit`)."""
        module = self.module
        if module is None:
            return None
        hp = dict(module.hparams)
        return {
            "state_dict": {k: v.detach().clone() for k, v in module.vae.state_dict().items()},
            "arch": {k: hp[k] for k in ("hidden", "n_layers", "latent", "activation")},
            "n_in": int(module.data.shape[2]),
            "mean": module.mean.clone(),
            "scale": module.scale.clone(),
            "joint": self.joint,
            "seed": int(module.seed),
        }

    @staticmethod
    def sample_state(state: dict[str, Any], n: int, seed: int | None = None) -> np.ndarray:
        """Decode n draws of z ~ N(0, I) from exported VAE weights, in original units."""
        vae = StackedVAE(1, state["n_in"], **state["arch"])
        vae.load_state_dict(state["state_dict"])
        vae.eval()
        gen = torch.Generator().manual_seed(state["seed"] if seed is None else seed)
        with torch.no_grad():
            z = torch.randn(1, n, vae.latent, generator=gen)
            x = vae.decode(z) * state["scale"][:, None, :] + state["mean"][:, None, :]
        return x[0].numpy().astype(float)

    def fit(self, train_sets: Sequence[TrainSet], seed: int, callbacks: Sequence[L.Callback] = ()) -> VAEModule:
        """Train one VAE per training set (all at once) and keep the module."""
        arrays = [np.column_stack([t.X, t.y]) if self.joint else t.X for t in train_sets]
        L.seed_everything(seed, workers=False, verbose=False)
        self.module = build_module(arrays, self.model, self.batch_size, seed)
        trainer = build(self.trainer_cfg, "trainer", callbacks=list(callbacks), _convert_="all")
        sigint = signal.getsignal(signal.SIGINT)
        try:
            trainer.fit(self.module)
        except SystemExit as exc:
            # Lightning turns Ctrl-C (or SIGTERM, see vaeok.core.signals) into sys.exit(1); surface it as
            # the interrupt it was, keeping which signal it was.
            if trainer.interrupted:
                cause = exc.__context__
                raise (cause if isinstance(cause, KeyboardInterrupt) else KeyboardInterrupt()) from None
            raise
        finally:
            signal.signal(signal.SIGINT, sigint)  # Lightning sets SIG_IGN on interrupt
        if trainer.interrupted:
            raise KeyboardInterrupt
        return self.module

    def virtual_sets(self, module: VAEModule, seed: int | None = None) -> list[VirtualSet]:
        """Sample n_virtual rows per fold from a trained module."""
        samples = module.sample(self.n_virtual, seed)
        if self.joint:
            return [VirtualSet(s[:, :-1], s[:, -1]) for s in samples]
        return [VirtualSet(s, None) for s in samples]

    def generate(
        self, train_sets: Sequence[TrainSet], seed: int, callbacks: Sequence[L.Callback] = ()
    ) -> list[VirtualSet]:
        """Fit on each training set and return its virtual samples."""
        return self.virtual_sets(self.fit(train_sets, seed, callbacks), seed)
