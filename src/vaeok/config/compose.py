"""Config composition: conf/config.yaml + Hydra overrides -> a typed, resolved, checked config."""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vaeok.config.overrides import override
from vaeok.config.schema import TrackingConfig, register_configs, validate_config
from vaeok.config.targets import check_overrides, check_targets
from vaeok.core.errors import UserError, first_line, message
from vaeok.core.redact import redact_text


def config_dir() -> Path:
    """The Hydra config root: $VAEOK_CONFIG_DIR, else ./conf, else the checkout's conf/."""
    env = os.environ.get("VAEOK_CONFIG_DIR")
    if env:
        return Path(env).resolve()
    cwd = Path.cwd() / "conf"
    if (cwd / "config.yaml").is_file():
        return cwd.resolve()
    return (Path(__file__).resolve().parents[3] / "conf").resolve()


def config_groups() -> set[str]:
    """Names of the config groups (sub-directories of the config root, e.g. generator, regressor)."""
    return {p.name for p in config_dir().iterdir() if p.is_dir()}


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """Compose conf/config.yaml with Hydra overrides; raise UserError on any composition problem."""
    cfg = _compose(tuple(overrides))
    _resolve(cfg)
    validate_config(cfg)
    return cfg


MAX_OVERRIDE_CHARS = 10_000


def check_user_overrides(overrides: tuple[str, ...] | list[str], groups: set[str]) -> None:
    """Refuse overrides that compose but cannot mean anything, before Hydra sees them: absurdly long
    ones, resolver calls (`${oc.env:...}`, see vaeok.config.targets), and deleting a config group
    (`~model`), which would silently fall back to the schema's defaults."""
    for ov in overrides:
        if len(ov) > MAX_OVERRIDE_CHARS:
            raise UserError(f"override '{ov[:40]}...' is {len(ov)} characters long (at most {MAX_OVERRIDE_CHARS})")
        key = ov.split("=", 1)[0]
        if key.startswith("~") and key[1:].lstrip("/") in groups - {"experiment"}:
            raise UserError(f"override '{key}' deletes the config group '{key[1:]}', which every run needs; "
                            f"choose one of its options instead ({key[1:]}=<option>)")
    check_overrides(overrides)


def overlay_root(tracking_uri: str | None = None) -> Path:
    """Where promoted overlays live: `conf/` next to the SQLite store of `tracking_uri` (default
    sqlite:///mlruns/mlflow.db, i.e. ./mlruns/conf); ./mlruns/conf for other stores. It is on the
    Hydra search path (after the config dir), so `vaeok run experiment=promoted_<study>` finds them."""
    uri = tracking_uri or TrackingConfig.uri
    if uri.startswith("sqlite:///"):
        return Path(os.path.abspath(Path(uri.removeprefix("sqlite:///")).parent / "conf"))
    return Path(os.path.abspath("mlruns/conf"))


def _search_path(overrides: tuple[str, ...]) -> list[str]:
    """The overlay root (of `tracking.uri=` if overridden) as an extra Hydra search path, unless the
    user sets one."""
    if any(ov.lstrip("+").startswith("hydra.searchpath") for ov in overrides):
        return []
    uris = [ov.split("=", 1)[1].strip("'\"") for ov in overrides if ov.startswith("tracking.uri=")]
    root = overlay_root(uris[-1] if uris else None)
    return [f"hydra.searchpath=[file://{root}]"] if (root / "experiment").is_dir() else []


def _compose(overrides: tuple[str, ...]) -> DictConfig:
    """Hydra composition (interpolations not yet resolved)."""
    register_configs()
    cdir = config_dir()
    if not (cdir / "config.yaml").is_file():
        raise UserError(f"config directory not found: {cdir} (set VAEOK_CONFIG_DIR)")
    check_user_overrides(overrides, {p.name for p in cdir.iterdir() if p.is_dir()})
    parsed = _parse_overrides(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(cdir), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[*overrides, *_search_path(overrides)])
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise UserError(f"bad config: {first_line(exc)}{_group_options_hint(exc, cdir)}") from None
    except OSError as exc:  # e.g. a group option too long for a file name
        raise UserError(f"bad config: {exc.strerror or exc}") from None
    finally:
        GlobalHydra.instance().clear()
    if any(o.is_add() or o.is_force_add() for o in parsed):
        _check_targets_first(cfg)  # a refused `_target_` is named as such, before its added keys
    for o in parsed:
        if o.is_add() or o.is_force_add():
            _check_added_key(cfg, o.key_or_group)
    return cfg


def _parse_overrides(overrides: tuple[str, ...]) -> list[Any]:
    """Hydra's parse of the overrides; UserError for a sweep (`a=1,2`, `range(...)`) outside `-m`.
    Syntax errors are left to compose(), which names them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException:
        return []
    for o in parsed:
        if o.is_sweep_override():
            raise UserError(f"{o.input_line} is several values (a sweep): run them as a grid study with "
                            f"`vaeok run -m {o.input_line} ...`, or search them with a `vaeok sweep` spec")
    return parsed


def _check_targets_first(cfg: DictConfig) -> None:
    """The `_target_` allowlist check of `validate_config`, run on the composed config (when its
    interpolations resolve; otherwise `validate_config` runs it after resolving)."""
    try:
        container = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:
        return
    check_targets(container)


def _check_added_key(cfg: DictConfig, key: str) -> None:
    """UserError unless `+key=value` adds a key its node accepts: a field of a typed (dataclass)
    node, or a parameter of the node's `_target_` (e.g. `+regressor.subsample=0.8`). Group
    additions (`+experiment=smoke`) are Hydra's to check."""
    import dataclasses
    import inspect

    if "." not in key and key in config_groups():
        return
    parent_key, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent_key) if parent_key else cfg
    if not isinstance(node, DictConfig):
        return
    where = parent_key or "the root config"
    target = node.get("_target_") if "_target_" in node else None
    if isinstance(target, str):
        try:
            from hydra.utils import get_object

            params = inspect.signature(get_object(target)).parameters
        except Exception:  # not importable or no signature: instantiate will say
            return
        if leaf in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        options = sorted(k for k in params if not k.startswith("_"))
        raise UserError(f"bad config: unknown key '{key}': {target} takes no '{leaf}' "
                        f"(its parameters: {', '.join(options)})")
    schema = OmegaConf.get_type(node)
    if schema is not None and dataclasses.is_dataclass(schema):
        fields = [f.name for f in dataclasses.fields(schema)]
        if leaf not in fields:
            raise UserError(f"bad config: unknown key '{key}' (keys of {where}: {', '.join(fields)})")


def group_options() -> dict[str, list[str]]:
    """Config groups and their options (the YAML files of each group directory), sorted."""
    cdir = config_dir()
    return {g: sorted(p.stem for p in (cdir / g).glob("*.yaml")) for g in sorted(config_groups())}


def describe_config(overrides: list[str] | tuple[str, ...], cfg: str | None = None, resolve: bool = False,
                    info: bool = False) -> str:
    """What Hydra's `--cfg job|hydra|all [--resolve]` and `--info` print, for the composed config.

    job: the config as YAML (interpolations kept unless `resolve`); hydra: the chosen option of
    every group (`hydra.runtime.choices`); all: both. info: config search path, groups with their
    options, and the defaults chosen for these overrides."""
    job = _compose(tuple(overrides))
    if resolve:
        _resolve(job)
    validate_config(job if resolve else _resolved_copy(job))  # bad values fail as in `vaeok run`
    choices = _choices(tuple(overrides))
    if info:
        lines = ["Config search path:", f"  {config_dir()}", "", "Config groups (group=option):"]
        lines += [f"  {g}: {', '.join(opts)}" for g, opts in group_options().items()]
        lines += ["", "Defaults (chosen options):"]
        lines += [f"  {g}: {v}" for g, v in choices.items()]
        return "\n".join(lines) + "\n"
    hydra_node = {"hydra": {"runtime": {"choices": choices, "config_sources": [str(config_dir())]}}}
    if cfg == "hydra":
        return OmegaConf.to_yaml(OmegaConf.create(hydra_node))
    text = OmegaConf.to_yaml(job, resolve=resolve)
    if cfg == "all":
        text = OmegaConf.to_yaml(OmegaConf.create(hydra_node)) + text
    return redact_text(text)


def _resolved_copy(cfg: DictConfig) -> DictConfig:
    out = copy.deepcopy(cfg)
    _resolve(out)
    return out


def _choices(overrides: tuple[str, ...]) -> dict[str, str]:
    """The option chosen for every config group (Hydra's hydra.runtime.choices)."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            full = compose(config_name="config", overrides=list(overrides), return_hydra_config=True)
        return {str(k): str(v) for k, v in full.hydra.runtime.choices.items() if not str(k).startswith("hydra/")}
    except (HydraException, OmegaConfBaseException, ValueError) as exc:
        raise UserError(f"bad config: {first_line(exc)}") from None
    finally:
        GlobalHydra.instance().clear()


def _group_options_hint(exc: BaseException, cdir: Path) -> str:
    """'; options of generator: gmm_vsg, none, ...' when Hydra could not find a group option."""
    m = re.search(r"Could not find '([\w/]+)/([^']*)'", str(exc))
    if not m or not (cdir / m.group(1)).is_dir():
        return ""
    options = sorted(p.stem for p in (cdir / m.group(1)).glob("*.yaml"))
    return f" (options of {m.group(1).replace('/', '.')}: {', '.join(options)})"


def _resolve(cfg: DictConfig) -> None:
    try:
        OmegaConf.resolve(cfg)
    except (OmegaConfBaseException, ValueError) as exc:
        raise UserError(f"bad config: {first_line(exc)}") from None


_BASE_CACHE: dict[tuple[str, tuple[str, ...]], DictConfig] = {}


def load_trial_config(base_overrides: list[str] | tuple[str, ...], values: dict[str, Any]) -> DictConfig:
    """`load_config([*base_overrides, *key=value])` for sampled values, composing as little as possible.

    Hydra composition costs ~0.13 s; a sweep composes each combination of base overrides and
    config-group choices (e.g. `generator=vae_ok`) once per process and sets the trial's sampled
    leaf values on a copy of that typed, still-unresolved config (type-checked by the structured
    schema), then resolves interpolations. Equivalence is tested against load_config.
    """
    groups = config_groups()
    choices = tuple(override(k, v) for k, v in values.items() if k in groups)
    key = (str(config_dir()), (*base_overrides, *choices))
    if key not in _BASE_CACHE:
        _BASE_CACHE[key] = _compose(key[1])
    cfg = copy.deepcopy(_BASE_CACHE[key])
    for k, v in values.items():
        if k in groups:
            continue
        if OmegaConf.select(cfg, k, default=_MISSING) is _MISSING:
            raise UserError(f"bad config: Key '{k}' not in config")
        try:
            OmegaConf.update(cfg, k, v, merge=True)
        except OmegaConfBaseException as exc:
            raise UserError(f"bad config: {k}={v!r}: {message(exc)}") from None
    _resolve(cfg)
    validate_config(cfg)
    return cfg


_MISSING = object()


def to_yaml(cfg: DictConfig) -> str:
    """The resolved config as YAML (passwords in URLs masked: it is logged and written to files)."""
    return redact_text(OmegaConf.to_yaml(cfg, resolve=True))


def flatten(cfg: DictConfig) -> dict[str, str]:
    """Flatten a config to dotted keys (for MLflow params; passwords in URLs masked)."""
    out: dict[str, str] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = redact_text(str(node))[:500]

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out
