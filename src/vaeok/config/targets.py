"""What a config may instantiate: the `_target_` allowlist, and no resolvers in user overrides.

Configs are code: Hydra's `instantiate` calls whatever importable callable a `_target_` names, and
study overrides are stored in the Optuna database and replayed by `promote` and `--from-run`. So
every composed config is checked before anything runs: each `_target_` (at any depth) must match
an allowlist entry by name. Every node is checked again right before it is built (`build`, the
project's only way to call `instantiate`): the object the name resolves to must be of the kind
that entry permits (an estimator class, not a library's helper function; defined in that
library, not re-exported from `os`). Locating an object imports its module, so that second check
waits until the module is needed anyway (torch and Lightning cost seconds to import).
`VAEOK_ALLOWED_TARGETS` (comma-separated patterns such as `mypkg.models.*`) extends the list; it
is read from the environment of the process, so neither a config nor a stored study can extend it.

User overrides (command line, study specs, stored studies, --from-run) may reference other keys
(`${seed}`) but not call resolvers (`${oc.env:HOME}` would copy environment variables, secrets
included, into logged params); conf/ files, which the user owns, may.
"""

from __future__ import annotations

import fnmatch
import functools
import inspect
import os
from collections.abc import Callable, Iterable
from typing import Any

from vaeok.core.errors import UserError

ENV_VAR = "VAEOK_ALLOWED_TARGETS"


def _subclass_of(base: str) -> Callable[[Any], bool]:
    """A check that the located object is a class deriving from the class named `base`."""
    def check(obj: Any) -> bool:
        if not inspect.isclass(obj):
            return False
        return any(f"{c.__module__}.{c.__qualname__}" == base for c in inspect.getmro(obj))
    return check


def _function_named(*names: str) -> Callable[[Any], bool]:
    """A check that the located object is one of these functions (by qualified name)."""
    def check(obj: Any) -> bool:
        return inspect.isfunction(obj) and f"{obj.__module__}.{obj.__qualname__}" in names
    return check


def _any_class(obj: Any) -> bool:
    return inspect.isclass(obj)


# (pattern on the `_target_` string, package the object must be defined in, kind check)
DEFAULT_ALLOWLIST: tuple[tuple[str, str, Callable[[Any], bool]], ...] = (
    ("vaeok.generators.*", "vaeok.generators", _any_class),
    ("vaeok.labelers.*", "vaeok.labelers", _any_class),
    ("vaeok.regressors.*", "vaeok.regressors", _any_class),
    ("sklearn.*", "sklearn", _subclass_of("sklearn.base.BaseEstimator")),
    ("sklearn.pipeline.make_*", "sklearn",
     _function_named("sklearn.pipeline.make_pipeline", "sklearn.pipeline.make_union")),
    ("sklearn.compose.make_column_transformer", "sklearn",
     _function_named("sklearn.compose._column_transformer.make_column_transformer")),
    ("torch.nn.*", "torch.nn.modules.activation", _subclass_of("torch.nn.modules.module.Module")),
    ("lightning.Trainer", "lightning.pytorch.trainer", _any_class),
    ("lightning.pytorch.Trainer", "lightning.pytorch.trainer", _any_class),
    ("lightning.pytorch.callbacks.*", "lightning.pytorch.callbacks",
     _subclass_of("lightning.pytorch.callbacks.callback.Callback")),
    ("optuna.samplers.*", "optuna.samplers", _subclass_of("optuna.samplers._base.BaseSampler")),
    ("optuna.pruners.*", "optuna.pruners", _subclass_of("optuna.pruners._base.BasePruner")),
)


def extra_patterns() -> list[str]:
    """Patterns from $VAEOK_ALLOWED_TARGETS (the documented extension)."""
    return [p.strip() for p in os.environ.get(ENV_VAR, "").split(",") if p.strip()]


def check_target(target: Any, key: str, locate: bool = True) -> None:
    """UserError naming `key` unless `target` names an allowlisted callable.

    The name is always checked against the allowlist patterns; with `locate`, the object is also
    imported and must be defined in the entry's package and be of its kind (which imports its module)."""
    if not isinstance(target, str) or not target:
        raise UserError(f"{key} must be a dotted name of a class, got {target!r}")
    if any(fnmatch.fnmatchcase(target, p) for p in extra_patterns()):
        return
    refusal = (f"{key}={target} is not allowed: a config may only build the project's generators and labelers, "
               "scikit-learn estimators, torch activations, Lightning trainers/callbacks and Optuna "
               f"samplers/pruners; to allow your own, set {ENV_VAR}='mypkg.*'")
    entries = tuple((pkg, kind) for pattern, pkg, kind in DEFAULT_ALLOWLIST if fnmatch.fnmatchcase(target, pattern))
    if not entries or any(part.startswith("_") for part in target.split(".")):
        raise UserError(refusal)
    if not locate:
        return
    verdict = _located_verdict(target, entries)
    if verdict == "missing":
        raise UserError(f"{key}={target}: no such class or function")
    if verdict == "refused":
        raise UserError(refusal)


@functools.lru_cache(maxsize=256)
def _located_verdict(target: str, entries: tuple[tuple[str, Callable[[Any], bool]], ...]) -> str:
    """'ok', 'missing' or 'refused' for an allowlisted name, judged on the object it resolves to."""
    from hydra._internal.utils import _locate  # what instantiate itself resolves `_target_` with

    try:
        obj = _locate(target)
    except (ImportError, ValueError, AttributeError):
        return "missing"
    module = getattr(obj, "__module__", "") or ""
    for pkg, kind in entries:
        if (module == pkg or module.startswith(pkg + ".")) and kind(obj):
            return "ok"
    return "refused"


def check_targets(node: Any, prefix: str = "", locate: bool = False) -> None:
    """Check every `_target_` in a resolved config container (dicts and lists, any depth).

    Composition checks names only (cheap: nothing is imported, so `predict` or a config error does
    not pay for torch and Lightning); `build` checks the located objects right before building."""
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if k == "_target_":
                check_target(v, key, locate)
            else:
                check_targets(v, key + ".", locate)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_targets(v, f"{prefix[:-1]}[{i}].", locate)


def build(node: Any, key: str = "", **kwargs: Any) -> Any:
    """Hydra's `instantiate` of a config node, after every `_target_` in it passed the full check."""
    from hydra.utils import instantiate
    from omegaconf import DictConfig, ListConfig, OmegaConf

    container = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig | ListConfig) else node
    check_targets(container, f"{key}." if key else "", locate=True)
    return instantiate(node, **kwargs)


def resolvers_in(text: str) -> list[str]:
    """Names of the OmegaConf resolvers an interpolation string calls ('?' for a computed name)."""
    if "${" not in text:
        return []
    from omegaconf import grammar_parser
    from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

    try:
        tree = grammar_parser.parse(text, parser_rule="configValue")
    except Exception:  # not a valid interpolation: OmegaConf refuses it when resolving
        return []
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, OmegaConfGrammarParser.InterpolationResolverContext):
            name = node.resolverName()
            computed = name.interpolation() if hasattr(name, "interpolation") else []
            found.append("?" if computed else name.getText())
        for child in getattr(node, "children", None) or []:
            walk(child)

    walk(tree)
    return found


def check_overrides(overrides: Iterable[str], where: str = "override") -> None:
    """UserError if a user override calls a resolver (e.g. `+x=${oc.env:HOME}`); the value is not echoed."""
    for ov in overrides:
        names = resolvers_in(str(ov))
        if names:
            key = str(ov).split("=", 1)[0]
            shown = ", ".join(sorted({n if n != "?" else "a computed resolver name" for n in names}))
            raise UserError(f"{where} '{key}' calls the resolver {shown}: resolvers (e.g. oc.env, which would "
                            "copy environment variables into logged params) are not accepted in overrides; "
                            "reference other keys (${seed}) or put the resolver in a conf/ file")


def check_container_strings(node: Any, where: str, prefix: str = "") -> None:
    """UserError if any string in a logged config container calls a resolver (a tampered config.yaml)."""
    if isinstance(node, dict):
        for k, v in node.items():
            check_container_strings(v, where, f"{prefix}{k}.")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_container_strings(v, where, f"{prefix[:-1]}[{i}].")
    elif isinstance(node, str) and resolvers_in(node):
        raise UserError(f"{where}: {prefix[:-1]} calls a resolver ({', '.join(resolvers_in(node))}); "
                        "a logged config holds plain values only")
