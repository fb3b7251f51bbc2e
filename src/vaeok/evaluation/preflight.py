"""Checks that need the data set and the whole config, run by every entry point before any work.

`vaeok run`, `sweep` (for the base config and every probed value of the search space), `compare`
and `promote` call `load_checked_dataset`, so a config that cannot work on this data (more folds
than rows, a VAE latent space wider than its input, a kriging system too large for memory, a
regressor hyperparameter scikit-learn rejects) fails in seconds with the config key named, not
after the VAE has trained.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from vaeok.core.errors import UserError, first_line
from vaeok.data.datasets import Dataset, load_dataset

# Above this many kriging training rows per fold (without labeler.max_points) the dense kriging
# matrices need several GiB each: 100,000 rows x 3 features ran out of memory (34.5 GiB array).
KRIGING_DENSE_MAX = 5000


def load_checked_dataset(cfg: DictConfig) -> Dataset:
    """The config's data set, checked against the config (`check_data_against_config`, `check_regressor`)."""
    data = load_dataset(cfg.data)
    check_data_against_config(cfg, data)
    check_regressor(cfg, data)
    check_trainer(cfg)
    return data


def check_trainer(cfg: DictConfig) -> None:
    """Build the Lightning Trainer a Lightning-trained generator would get (without fitting), so an
    argument Lightning rejects (`trainer.accelerator=gpu` without a GPU, a bad `precision`, an
    unknown argument) fails now with its key named, not inside the first fold's training."""
    if not generator_of(cfg).trains_with_callbacks:
        return
    import logging

    from vaeok.config.schema import TrainerConfig
    from vaeok.config.targets import build

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    args = OmegaConf.to_container(cfg.trainer, resolve=True)
    try:
        build(args, "trainer", _convert_="all")
        return
    except UserError:  # a refused `_target_`: the allowlist's own message
        raise
    except Exception as exc:
        error = first_line(exc.__cause__ or exc)
    defaults = OmegaConf.to_container(OmegaConf.structured(TrainerConfig))
    for key, value in args.items():  # name the argument: the first changed one Lightning refuses alone
        if key == "_target_" or (key in defaults and defaults[key] == value):
            continue
        try:
            build({**defaults, "_target_": args["_target_"], key: value}, "trainer", _convert_="all")
        except Exception:
            raise UserError(f"trainer.{key}={value!r}: {error}") from None
    raise UserError(f"trainer: Lightning refuses these arguments: {error}")


def generator_of(cfg: DictConfig) -> Any:
    """The configured generator, unfitted (its capabilities say what the config needs)."""
    from vaeok.config.targets import build

    return build(cfg.generator, "generator", _recursive_=False)


def uses_kriging(cfg: DictConfig) -> bool:
    """True if virtual samples are labelled by the labeler (ordinary kriging)."""
    return not generator_of(cfg).labels_own_rows


def development_row_count(cfg: DictConfig, n_rows: int) -> int:
    """Rows left for cross-validation after the untouched outer holdout."""
    from vaeok.data.splits import outer_split

    dev, _ = outer_split(n_rows, cfg.evaluation)
    return len(dev)


def check_data_against_config(cfg: DictConfig, data: Dataset) -> None:
    """UserError naming the config key if the config cannot run on `data` (checked before training)."""
    ev = cfg.evaluation
    n_dev = development_row_count(cfg, data.n_rows)
    held = data.n_rows - n_dev
    rows = (f"{data.name} has {n_dev} development rows ({data.n_rows} minus a holdout of {held})" if held
            else f"{data.name} has {n_dev} rows (no holdout below evaluation.holdout_min_rows)")
    kfold = ev.protocol != "loocv" and n_dev >= ev.loocv_below
    if kfold and ev.n_splits > n_dev:
        raise UserError(f"evaluation.n_splits={ev.n_splits} is more folds than rows: {rows}; "
                        f"use evaluation.n_splits<={n_dev} or evaluation=loocv")
    n_train = n_dev - (n_dev + ev.n_splits - 1) // ev.n_splits if kfold else n_dev - 1
    if n_train < 2:
        raise UserError(f"{rows}: a training fold would have {n_train} row(s); "
                        "lower evaluation.holdout_fraction or add rows")
    generator = generator_of(cfg)
    try:
        generator.check_input(data.n_features)
    except UserError as exc:
        raise UserError(f"{exc} ({data.name})") from None
    if not generator.labels_own_rows:
        _check_kriging(cfg, data, n_train)


def _check_kriging(cfg: DictConfig, data: Dataset, n_train: int) -> None:
    lab = cfg.labeler
    if lab.backend == "pykrige" and data.n_features not in (2, 3):
        raise UserError(f"labeler.backend=pykrige supports 2-3 features, {data.name} has {data.n_features}; "
                        "use labeler.backend=auto or gstools")
    points = n_train if lab.max_points is None else min(n_train, lab.max_points)
    if points > KRIGING_DENSE_MAX:
        gib = 8 * points**2 / 2**30
        raise UserError(f"labeler.max_points: kriging on {points} training rows per fold needs {gib:.1f} GiB "
                        f"per matrix; set labeler.max_points (e.g. 1000; at most {KRIGING_DENSE_MAX})")


def check_regressor(cfg: DictConfig, data: Dataset | None = None) -> None:
    """Build the regressor (UserError naming its `_target_` if that fails) and, given data, fit a
    clone on a few real rows, so a hyperparameter the estimator rejects fails here, naming it."""
    node = cfg.get("regressor")
    if node is None:
        return
    from hydra.errors import InstantiationException

    from vaeok.config.targets import build

    try:
        est = build(node, "regressor", _convert_="all")
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise UserError(f"regressor: cannot build {node.get('_target_')}: {first_line(cause)}") from None
    if data is None:
        return
    key = (OmegaConf.to_yaml(node), data.fingerprint())
    if key in _CHECKED:
        return
    rows = slice(0, min(data.n_rows, _PROBE_ROWS))
    try:
        est.fit(data.X[rows], data.y[rows])
    except (ValueError, TypeError) as exc:
        raise UserError(f"regressor: {first_line(exc)}") from None
    except Exception:  # e.g. too few rows for this estimator: judged at fit time, in the fold
        pass
    _CHECKED.add(key)


_PROBE_ROWS = 20
_CHECKED: set[tuple[str, str]] = set()
