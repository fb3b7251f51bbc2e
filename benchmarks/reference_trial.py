"""Bare reference for one default trial: no Hydra, Lightning, MLflow or Optuna.

Same work as `vaeok run` with the paper's Table 1 config (hidden 65, latent 2, ReLU, Adam lr
0.002, batch 64, 400 epochs, 1000 virtual samples per fold, GBR) under the honest 5-fold
protocol on the development rows: the same data, the same outer holdout and inner folds
(vaeok.data.splits), the same kriging labeler class (vaeok.labelers.kriging.OrdinaryKrigingLabeler) and the
same sklearn GradientBoostingRegressor. Two ways to train the five fold-VAEs:

* ``batched``: one plain torch loop over stacked weights (``torch.baddbmm``) on preloaded,
  padded tensors. It follows the harness's seeding and RNG order, so it reproduces the
  harness's pooled R2 exactly (checked by trial_overhead.py) - proof that it does the same work.
* ``sequential``: the naive reference - five ordinary ``nn.Linear`` VAEs trained one after the
  other, each on its own fold's rows (same epochs, batch size, optimiser; different RNG stream).

Cold/warm semantics match the harness: the harness memoises each fold's fitted kriging labeler
in-process (vaeok.evaluation.scoring.fitted_labeler). ``cold`` = fit the labelers (empty cache);
``warm`` = reuse labelers fitted earlier in the process (pass the same ``labelers`` dict).

Run: PYTHONPATH=src python benchmarks/reference_trial.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.ensemble import GradientBoostingRegressor
from torch import nn

import _common  # noqa: F401  (puts src/ on sys.path when run as a script)
from vaeok.data.datasets import Dataset, rubber_surrogate
from vaeok.data.splits import Fold, holdout_split, inner_folds
from vaeok.evaluation.metrics import ks_statistic, regression_metrics
from vaeok.labelers.kriging import OrdinaryKrigingLabeler


@dataclass(frozen=True)
class RefConfig:
    """The default trial (paper Table 1 + the default honest_kfold protocol), spelled out."""

    seed: int = 42
    hidden: int = 65
    latent: int = 2
    lr: float = 0.002
    batch_size: int = 64
    epochs: int = 400
    n_virtual: int = 1000
    n_splits: int = 5
    holdout_fraction: float = 0.15
    holdout_seed: int = 0
    gbr: dict = field(default_factory=lambda: {"n_estimators": 100, "learning_rate": 0.1, "max_depth": 3})
    candidates: tuple[str, ...] = ("linear", "power", "gaussian", "spherical", "exponential")


def development_data(rc: RefConfig, data: Dataset | None = None) -> tuple[np.ndarray, np.ndarray, list[Fold]]:
    """Development rows and inner folds exactly as the harness builds them."""
    data = data if data is not None else rubber_surrogate()
    dev_idx, _ = holdout_split(data.n_rows, rc.holdout_fraction, rc.holdout_seed)
    X, y = data.X[dev_idx], data.y[dev_idx]
    folds = inner_folds(len(X), "honest_kfold", rc.n_splits, 1, 30, rc.seed)
    return X, y, folds


# -- VAE training ------------------------------------------------------------------------------
def _standardise(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m, s = a.mean(axis=0), a.std(axis=0)
    s[s == 0] = 1.0
    return m, s, (a - m) / s


def _stacked(k: int, n_in: int, n_out: int) -> tuple[nn.Parameter, nn.Parameter]:
    bound = 1.0 / math.sqrt(n_in)
    w = nn.Parameter(torch.empty(k, n_in, n_out).uniform_(-bound, bound))
    b = nn.Parameter(torch.empty(k, 1, n_out).uniform_(-bound, bound))
    return w, b


def train_batched(train_X: list[np.ndarray], rc: RefConfig) -> list[np.ndarray]:
    """All K fold-VAEs as one stacked model, one Adam, a plain loop; returns virtual X per fold."""
    k, n_in = len(train_X), train_X[0].shape[1]
    counts = torch.tensor([len(a) for a in train_X])
    n_max = int(counts.max())
    data = torch.zeros(k, n_max, n_in)
    mean, scale = torch.zeros(k, n_in), torch.ones(k, n_in)
    for i, a in enumerate(train_X):
        m, s, z = _standardise(a)
        mean[i], scale[i] = torch.from_numpy(m), torch.from_numpy(s)
        data[i, : len(a)] = torch.from_numpy(z)
    torch.manual_seed(rc.seed)  # same init order as vaeok's StackedVAE
    e_w, e_b = _stacked(k, n_in, rc.hidden)
    mu_w, mu_b = _stacked(k, rc.hidden, rc.latent)
    lv_w, lv_b = _stacked(k, rc.hidden, rc.latent)
    d_w, d_b = _stacked(k, rc.latent, rc.hidden)
    o_w, o_b = _stacked(k, rc.hidden, n_in)
    params = [e_w, e_b, mu_w, mu_b, lv_w, lv_b, d_w, d_b, o_w, o_b]
    opt = torch.optim.Adam(params, lr=rc.lr)
    gen = torch.Generator().manual_seed(rc.seed)
    bs = min(rc.batch_size, n_max)
    pad = torch.arange(n_max)[None, :] >= counts[:, None]
    valid_all = (~pad).to(data.dtype)

    def decode(z: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(o_b, torch.relu(torch.baddbmm(d_b, z, d_w)), o_w)

    for _epoch in range(rc.epochs):
        keys = torch.rand(k, n_max, generator=gen)
        keys[pad] = 2.0
        perm = keys.argsort(dim=1)
        for start in range(0, n_max, bs):
            pos = perm[:, start : start + bs]
            valid = torch.gather(valid_all, 1, pos).unsqueeze(-1)
            x = torch.gather(data, 1, pos.unsqueeze(-1).expand(-1, -1, n_in))
            h = torch.relu(torch.baddbmm(e_b, x, e_w))
            mu, logvar = torch.baddbmm(mu_b, h, mu_w), torch.baddbmm(lv_b, h, lv_w)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            x_hat = decode(z)
            recon = (((x_hat - x) ** 2) * valid).sum(dim=(1, 2))
            kld = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()) * valid).sum(dim=(1, 2))
            loss = (recon + kld).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        g = torch.Generator().manual_seed(rc.seed)
        z = torch.randn(k, rc.n_virtual, rc.latent, generator=g)
        x = decode(z) * scale[:, None, :] + mean[:, None, :]
    return [xi.numpy().astype(float) for xi in x]


class PlainVAE(nn.Module):
    """One fold's VAE (paper Table 1) built from nn.Linear."""

    def __init__(self, n_in: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.enc, self.mu, self.logvar = nn.Linear(n_in, hidden), nn.Linear(hidden, latent), nn.Linear(hidden, latent)
        self.dec, self.out = nn.Linear(latent, hidden), nn.Linear(hidden, n_in)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.dec(z)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        return self.decode(mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)), mu, logvar


def train_sequential(train_X: list[np.ndarray], rc: RefConfig) -> list[np.ndarray]:
    """The naive reference: one VAE per fold, trained one after another."""
    out = []
    for i, a in enumerate(train_X):
        m, s, z = _standardise(a)
        data = torch.from_numpy(z).float()
        torch.manual_seed(rc.seed + i)
        vae = PlainVAE(a.shape[1], rc.hidden, rc.latent)
        opt = torch.optim.Adam(vae.parameters(), lr=rc.lr)
        n = len(data)
        for _epoch in range(rc.epochs):
            perm = torch.randperm(n)
            for start in range(0, n, rc.batch_size):
                x = data[perm[start : start + rc.batch_size]]
                x_hat, mu, logvar = vae(x)
                loss = ((x_hat - x) ** 2).sum() + (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        with torch.no_grad():
            g = torch.Generator().manual_seed(rc.seed)
            x = vae.decode(torch.randn(rc.n_virtual, rc.latent, generator=g)).numpy().astype(float)
        out.append(x * s + m)
    return out


# -- kriging + GBR -----------------------------------------------------------------------------
def labeler_for(rc: RefConfig, X: np.ndarray, y: np.ndarray, fold: int,
                labelers: dict[int, OrdinaryKrigingLabeler]) -> OrdinaryKrigingLabeler:
    """The fold's fitted labeler (memoised in `labelers`, like the harness's per-fold cache)."""
    if fold not in labelers:
        labelers[fold] = OrdinaryKrigingLabeler(variogram="auto", candidates=list(rc.candidates),
                                                nugget=None, backend="auto", exact=True, seed=rc.seed).fit(X, y)
    return labelers[fold]


def reference_trial(mode: str = "batched", rc: RefConfig | None = None,
                    labelers: dict[int, OrdinaryKrigingLabeler] | None = None,
                    inputs: tuple[np.ndarray, np.ndarray, list[Fold]] | None = None) -> dict:
    """One trial; returns pooled R2 and a timing breakdown in seconds."""
    rc = rc or RefConfig()
    labelers = {} if labelers is None else labelers
    X, y, folds = inputs or development_data(rc)
    t: dict[str, float] = {"train": 0.0, "krige_fit": 0.0, "krige_predict": 0.0, "gbr": 0.0}
    t0 = time.perf_counter()
    train_X = [X[f.train] for f in folds]
    virtual = (train_batched if mode == "batched" else train_sequential)(train_X, rc)
    t["train"] = time.perf_counter() - t0
    y_true, y_pred = [], []
    for i, (f, vx) in enumerate(zip(folds, virtual)):
        ta = time.perf_counter()
        lab = labeler_for(rc, X[f.train], y[f.train], i, labelers)
        tb = time.perf_counter()
        vy, _std = lab.predict(vx, return_std=True)
        ks_statistic(y[f.train], vy)
        tc = time.perf_counter()
        gbr = GradientBoostingRegressor(random_state=rc.seed, **rc.gbr)
        gbr.fit(np.vstack([X[f.train], vx]), np.concatenate([y[f.train], vy]))
        y_pred.append(gbr.predict(X[f.test]))
        y_true.append(y[f.test])
        td = time.perf_counter()
        t["krige_fit"] += tb - ta
        t["krige_predict"] += tc - tb
        t["gbr"] += td - tc
    m = regression_metrics(np.concatenate(y_true), np.concatenate(y_pred))
    t["total"] = time.perf_counter() - t0
    return {"mode": mode, "r2": m["r2"], "times": t}


def main() -> None:
    import json

    from _common import RESULTS, env_info, median_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    inputs = development_data(RefConfig())
    rows = []
    for mode in ("batched", "sequential"):
        warm: dict = {}
        for _ in range(args.repeats):
            rows.append({"case": f"{mode} cold", **reference_trial(mode, labelers={}, inputs=inputs)})
        reference_trial(mode, labelers=warm, inputs=inputs)
        for _ in range(args.repeats):
            rows.append({"case": f"{mode} warm", **reference_trial(mode, labelers=warm, inputs=inputs)})
    table = median_table(rows, ["train", "krige_fit", "krige_predict", "gbr", "total"])
    print(table["text"])
    out = {"env": env_info(), "threads": args.threads, "repeats": args.repeats, "runs": rows, "median": table["rows"]}
    (RESULTS / f"reference_trial_t{args.threads}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
