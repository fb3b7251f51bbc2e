import numpy as np
import torch

from vaeok.generators.base import TrainSet
from vaeok.generators.vae import FoldBatches, VAEGenerator, build_module

TRAINER = {"_target_": "lightning.Trainer", "max_epochs": 60, "logger": False, "enable_checkpointing": False,
           "enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}


def _sets(k: int = 3) -> list[TrainSet]:
    rng = np.random.default_rng(0)
    return [TrainSet(rng.normal([1, 10, 100], [0.1, 1, 10], (30 + i, 3)), rng.random(30 + i)) for i in range(k)]


def test_loss_decreases_and_is_logged_per_epoch() -> None:
    gen = VAEGenerator(model={"hidden": 16}, trainer=TRAINER, batch_size=8)
    gen.fit(_sets(), seed=0)
    hist = gen.module.loss_history()
    assert hist["loss"].shape == (60, 3) and hist["recon"].shape == (60, 3) and hist["kld"].shape == (60, 3)
    first, last = hist["loss"][:5].mean(axis=0), hist["loss"][-5:].mean(axis=0)
    assert (last < first).all()
    np.testing.assert_allclose(hist["loss"], hist["recon"] + hist["kld"], rtol=1e-6)


def test_sample_is_in_original_units_with_right_shapes() -> None:
    gen = VAEGenerator(n_virtual=200, model={"hidden": 16}, trainer=TRAINER, batch_size=8)
    virtual = gen.generate(_sets(), seed=0)
    assert [v.X.shape for v in virtual] == [(200, 3)] * 3
    assert all(v.y is None for v in virtual)
    means = virtual[0].X.mean(axis=0)
    assert np.allclose(means, [1, 10, 100], rtol=0.2)


def test_joint_vae_decodes_labels() -> None:
    gen = VAEGenerator(n_virtual=50, joint=True, model={"hidden": 8}, trainer={**TRAINER, "max_epochs": 5})
    virtual = gen.generate(_sets(2), seed=0)
    assert virtual[0].X.shape == (50, 3) and virtual[0].y.shape == (50,)


def test_fold_models_are_independent() -> None:
    """Changing one fold's data leaves the other fold's trained weights unchanged."""
    sets = _sets(2)
    a = VAEGenerator(model={"hidden": 8}, trainer={**TRAINER, "max_epochs": 10}, batch_size=8)
    a.fit(sets, seed=0)
    changed = [sets[0], TrainSet(np.random.default_rng(9).normal(size=sets[1].X.shape), sets[1].y)]
    b = VAEGenerator(model={"hidden": 8}, trainer={**TRAINER, "max_epochs": 10}, batch_size=8)
    b.fit(changed, seed=0)
    wa, wb = a.module.vae.encoder[0].weight.detach(), b.module.vae.encoder[0].weight.detach()
    assert torch.equal(wa[0], wb[0]) and not torch.equal(wa[1], wb[1])


def test_batches_cover_each_fold_once_per_epoch() -> None:
    counts = torch.tensor([5, 7])
    epochs = list(FoldBatches(counts, batch_size=3, seed=0))
    assert len(epochs) == 1 and [b.shape for b in epochs[0]] == [(2, 3), (2, 3), (2, 1)]
    pos = torch.cat(epochs[0], dim=1)
    assert sorted(pos[0][pos[0] < 5].tolist()) == list(range(5))
    assert sorted(pos[1].tolist()) == list(range(7))


def test_module_standardises_each_fold_with_its_own_rows() -> None:
    sets = _sets(2)
    m = build_module([s.X for s in sets], {"hidden": 4}, batch_size=8, seed=0)
    np.testing.assert_allclose(m.mean[1].numpy(), sets[1].X.mean(axis=0), rtol=1e-5)
    assert abs(float(m.data[0, :30].mean())) < 1e-5
