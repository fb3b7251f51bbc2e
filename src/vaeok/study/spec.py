"""Study specs (sweeps/*.yaml): search space, sampler, pruner, budget; validated before any trial.

Search-space entries use a compact syntax over any config key, for example::

    trainer.max_epochs: int 100..1000 step 50
    model.lr: float 1e-3..1e-2 log
    data.batch_size: categorical [16, 32, 64, 128]
    model.hidden: int 8..128
    generator: categorical [none, vae_ok]
    generator.n_virtual: int 0..2000 step 100 if generator=vae_ok

A trailing ``if <key>=<value>[|<value>...]`` (mapping form: ``when: {key: [values]}``) makes a
parameter conditional: it is sampled only when an earlier searched key has one of those values,
and otherwise keeps its config default (Optuna's define-by-run conditional spaces).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import yaml
from omegaconf import OmegaConf

from vaeok.core.errors import UserError, first_line, message
from vaeok.core.paths import safe_name
from vaeok.study.samplers import PRUNER_TARGETS, SAMPLER_TARGETS, make_pruner, make_sampler

_RANGE = re.compile(
    r"^(int|float)\s+(\S+?)\s*\.\.\s*(\S+?)(?:\s+step\s+(\S+))?(\s+log)?\s*$"
)
_CATEGORICAL = re.compile(r"^categorical\s+(\[.*\])\s*$")
_CONDITION = re.compile(r"^(.*?)\s+if\s+([\w.]+)\s*=\s*(\S+)\s*$")
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
MAX_TRIALS = 100_000  # more trials than any study here could run; a typo such as 1e12 is refused
MAX_GRID = 100_000    # grid points (product over the space) a grid sampler may enumerate
MAX_YAML_NODES = 100_000  # a spec expanded through YAML aliases ("billion laughs") beyond this is refused


@dataclass(frozen=True)
class Param:
    """One searched config key."""

    key: str
    kind: str  # int | float | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()
    when: tuple[str, tuple[Any, ...]] | None = None  # (key, values): sampled only if key has one of values

    def active(self, sampled: dict[str, Any]) -> bool:
        """Whether this parameter is searched given the values sampled so far."""
        return self.when is None or sampled.get(self.when[0], _UNSET) in self.when[1]

    def suggest(self, trial: optuna.Trial) -> Any:
        """Draw this parameter from a trial."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def grid(self, default: Any = None) -> list[Any]:
        """All values (categorical, or a stepped range), for grid and one-at-a-time samplers."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None:
            raise UserError(f"sweep space '{self.key}': grid samplers need 'step' on numeric ranges")
        n = round((self.high - self.low) / self.step)
        if n + 1 > MAX_GRID:
            raise UserError(f"sweep space '{self.key}': a grid of {n + 1} values is too large (at most {MAX_GRID}); "
                            "use a larger step or another sampler")
        vals = [self.low + i * self.step for i in range(n + 1)]
        return [round(v) for v in vals] if self.kind == "int" else [round(v, 12) for v in vals]


@dataclass
class StudySpec:
    """A parsed, validated study spec."""

    name: str
    space: list[Param]
    directions: list[str] = field(default_factory=lambda: ["maximize"])
    metrics: list[str] = field(default_factory=lambda: ["val/r2"])
    sampler: dict[str, Any] = field(default_factory=lambda: {"type": "tpe"})
    pruner: dict[str, Any] = field(default_factory=lambda: {"type": "median"})
    n_trials: int = 20
    timeout: float | None = None
    overrides: list[str] = field(default_factory=list)
    source: str = ""
    selection: dict[str, Any] = field(default_factory=lambda: {"rule": DEFAULT_RULE})
    explicit_pruner: bool = False  # the spec names its pruner (the default median is silent)

    @property
    def multi_objective(self) -> bool:
        return len(self.directions) > 1

    def as_dict(self) -> dict[str, Any]:
        """Plain-data form (logged with the study)."""
        return {
            "name": self.name, "directions": self.directions, "metrics": self.metrics, "sampler": self.sampler,
            "pruner": self.pruner, "n_trials": self.n_trials, "timeout": self.timeout, "overrides": self.overrides,
            "space": {p.key: _describe(p) for p in self.space}, "selection": self.selection,
        }


_UNSET = object()
# Selection rules of `vaeok promote` (see vaeok.study.evidence.make_rule).
RULES = ("best", "one_se", "ensemble")
DEFAULT_RULE = "ensemble"


def parse_param(key: str, value: Any) -> Param:
    """Parse one search-space entry (compact string or mapping); raise UserError naming the key."""
    where = f"sweep space '{key}'"
    if not _KEY.fullmatch(key) or key.split(".")[0] == "hydra":
        raise UserError(f"{where}: not a config key (dotted names such as model.hidden or a group such as generator)")
    when = None
    if isinstance(value, list):
        value = {"type": "categorical", "choices": value}
    if isinstance(value, str):
        cond = _CONDITION.match(value.strip())
        if cond:
            value = cond.group(1)
            when = (cond.group(2), tuple(yaml.safe_load(v) for v in cond.group(3).split("|")))
    if isinstance(value, dict) and "when" in value:
        when = _parse_when(where, value.get("when"))
    if isinstance(value, str):
        m = _CATEGORICAL.match(value.strip())
        if m:
            try:
                choices = yaml.safe_load(m.group(1))
            except yaml.YAMLError:
                raise UserError(f"{where}: cannot parse choices {m.group(1)}") from None
            value = {"type": "categorical", "choices": choices}
        else:
            m = _RANGE.match(value.strip())
            if not m:
                raise UserError(f"{where}: cannot parse '{value}' (expected e.g. 'int 8..128 step 8', "
                                "'float 1e-3..1e-2 log' or 'categorical [16, 32]')")
            kind, lo, hi, step, log = m.groups()
            value = {"type": kind, "low": lo, "high": hi, "step": step, "log": bool(log)}
    if not isinstance(value, dict) or "type" not in value:
        raise UserError(f"{where}: expected a string like 'int 8..128' or a mapping with 'type'")
    kind = value["type"]
    if kind == "categorical":
        choices = value.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: categorical needs a non-empty list of choices")
        return Param(key, "categorical", choices=tuple(choices), when=when)
    if kind not in ("int", "float"):
        raise UserError(f"{where}: type must be int, float or categorical, got '{kind}'")
    try:
        low, high = float(value["low"]), float(value["high"])
        step = float(value["step"]) if value.get("step") is not None else None
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{where}: low/high/step must be numbers") from None
    log = bool(value.get("log", False))
    if not low < high:
        raise UserError(f"{where}: low ({low:g}) must be < high ({high:g})")
    if step is not None and step <= 0:
        raise UserError(f"{where}: step must be > 0")
    if log and low <= 0:
        raise UserError(f"{where}: log scale needs low > 0")
    if log and step is not None:
        raise UserError(f"{where}: use either 'step' or 'log', not both")
    if kind == "int" and not (low.is_integer() and high.is_integer() and (step is None or step.is_integer())):
        raise UserError(f"{where}: int ranges need integer bounds and step")
    return Param(key, kind, low, high, step, log, when=when)


def sample(space: list[Param], trial: optuna.Trial) -> dict[str, Any]:
    """Draw the active parameters of a space from a trial, in order (conditions see earlier draws)."""
    sampled: dict[str, Any] = {}
    for p in space:
        if p.active(sampled):
            sampled[p.key] = p.suggest(trial)
    return sampled


def _parse_when(where: str, when: Any) -> tuple[str, tuple[Any, ...]]:
    """`when: {key: value or [values]}` -> (key, values)."""
    if not isinstance(when, dict) or len(when) != 1:
        raise UserError(f"{where}: 'when' must map one earlier searched key to a value or list of values")
    (k, v), = when.items()
    return str(k), tuple(v) if isinstance(v, list) else (v,)


def _check_conditions(p: Path, space: list[Param]) -> None:
    """A condition must refer to an EARLIER categorical key and to values among its choices."""
    seen: dict[str, Param] = {}
    for param in space:
        if param.when is not None:
            key, values = param.when
            ref = seen.get(key)
            if ref is None or ref.kind != "categorical":
                raise UserError(f"{p}: sweep space '{param.key}': condition on '{key}', which is not an earlier "
                                "categorical key of the space")
            bad = [v for v in values if v not in ref.choices]
            if bad:
                raise UserError(f"{p}: sweep space '{param.key}': condition value(s) {bad} are not choices of "
                                f"'{key}' {list(ref.choices)}")
        seen[param.key] = param


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec file (structure only; keys are checked by `check_keys`)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"sweep spec not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{p}: invalid YAML: {message(exc)}") from None
    if _expanded_size(raw, {}) > MAX_YAML_NODES:
        raise UserError(f"{p}: expands to more than {MAX_YAML_NODES} values through YAML aliases (&/*); "
                        "write the values out")
    if not isinstance(raw, dict):
        raise UserError(f"{p}: a spec is a mapping")
    known = {"name", "direction", "directions", "metric", "metrics", "sampler", "pruner", "n_trials", "timeout",
             "overrides", "space", "description", "selection"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise UserError(f"{p}: unknown spec key(s): {', '.join(unknown)}")
    space_raw = raw.get("space") or {}
    if not isinstance(space_raw, dict) or not space_raw:
        raise UserError(f"{p}: 'space' must map config keys to ranges")
    directions = _as_list(raw.get("directions", raw.get("direction", "maximize")))
    metrics = _as_list(raw.get("metrics", raw.get("metric", "val/r2")))
    bad = [d for d in directions if d not in ("maximize", "minimize")]
    if bad:
        raise UserError(f"{p}: direction must be maximize or minimize, got {bad}")
    if len(metrics) != len(directions):
        raise UserError(f"{p}: {len(metrics)} metric(s) but {len(directions)} direction(s)")
    sampler = _typed(raw.get("sampler", "tpe"), "sampler", tuple(SAMPLER_TARGETS), p)
    pruner = _typed(raw.get("pruner", "median"), "pruner", tuple(PRUNER_TARGETS), p)
    if len(directions) > 1 and pruner["type"] != "none":
        pruner = {"type": "none"}  # Optuna does not prune multi-objective studies
    n_trials = raw.get("n_trials", 20)
    if not isinstance(n_trials, int) or isinstance(n_trials, bool) or not 1 <= n_trials <= MAX_TRIALS:
        raise UserError(f"{p}: n_trials must be an integer in 1..{MAX_TRIALS}, got {n_trials!r}")
    timeout = raw.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or not 0 < timeout < math.inf):
        raise UserError(f"{p}: timeout must be a positive, finite number of seconds, got {timeout!r}")
    name = str(raw.get("name", p.stem))
    safe_name(name, f"{p}: study name")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"{p}: overrides must be a list of 'key=value' strings")
    space = [parse_param(str(k), v) for k, v in space_raw.items()]
    _check_conditions(p, space)
    selection = _selection(raw.get("selection"), p)
    if sampler["type"] == "grid":
        points = math.prod(len(param.grid()) for param in space)
        if points > MAX_GRID:
            raise UserError(f"{p}: the grid has {points} points (at most {MAX_GRID}); use larger steps or another "
                            "sampler")
    return StudySpec(
        name=name, space=space,
        directions=directions, metrics=metrics, sampler=sampler, pruner=pruner, n_trials=n_trials,
        timeout=timeout, overrides=list(overrides), source=str(p), selection=selection,
        explicit_pruner="pruner" in raw,
    )


def _selection(raw: Any, p: Path) -> dict[str, Any]:
    """The spec's `selection:` (how promote picks from the trials): {rule: best|one_se|ensemble}."""
    d = {"rule": raw} if isinstance(raw, str) else dict(raw or {})
    unknown = sorted(set(d) - {"rule"})
    if unknown:
        raise UserError(f"{p}: unknown selection key(s): {', '.join(unknown)}")
    rule = d.get("rule", DEFAULT_RULE)
    if rule not in RULES:
        raise UserError(f"{p}: selection rule must be one of {', '.join(RULES)}, got '{rule}'")
    return {"rule": rule}


def _expanded_size(node: Any, memo: dict[int, int]) -> int:
    """Number of values `node` stands for once YAML aliases are expanded (shared nodes counted
    each time they are referenced, computed once each)."""
    if not isinstance(node, (dict, list)):
        return 1
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once
    items = [*node.keys(), *node.values()] if isinstance(node, dict) else node
    memo[id(node)] = 1 + sum(_expanded_size(v, memo) for v in items)
    return memo[id(node)]


def check_objectives(spec: StudySpec, cfg: Any) -> None:
    """Fail before the study opens if an objective metric is not one a run produces, or if the
    spec asks for pruning but trials report no intermediate values."""
    from vaeok.evaluation.metrics import METRICS
    from vaeok.evaluation.result import HONEST_PREFIX, LEAKY_PREFIX

    prefix = LEAKY_PREFIX if cfg.evaluation.protocol == "paper" else HONEST_PREFIX
    known = [f"{prefix}/{m}" for m in (*METRICS, "ks")]  # what evaluation.scoring reports
    if prefix == HONEST_PREFIX:
        known.append(f"{HONEST_PREFIX}/n_virtual")
    else:
        known += [f"{LEAKY_PREFIX}/{m}_real_rows" for m in METRICS] + [f"{LEAKY_PREFIX}/test_virtual_share"]
    bad = [m for m in spec.metrics if m not in known]
    if bad:
        raise UserError(f"{spec.source or spec.name}: metric {', '.join(bad)} is not produced by a run "
                        f"(protocol {cfg.evaluation.protocol}: {', '.join(known)})")
    pruning = spec.explicit_pruner and spec.pruner["type"] != "none" and not spec.multi_objective
    if pruning and not cfg.evaluation.eval_every_n_epochs:
        raise UserError(f"{spec.source or spec.name}: pruner '{spec.pruner['type']}' needs intermediate values, but "
                        "evaluation.eval_every_n_epochs is 0; set it (e.g. overrides: "
                        "[evaluation.eval_every_n_epochs=50]) or use pruner: none")


def check_keys(spec: StudySpec, base_overrides: list[str]) -> None:
    """Fail before any trial if a searched key is not in the config, a value does not compose or
    cannot run on the data set (e.g. model.latent wider than the features), or the sampler/pruner
    options are not accepted by Optuna."""
    from vaeok.config.compose import load_config, load_trial_config
    from vaeok.data.datasets import load_dataset, same_rows
    from vaeok.evaluation.preflight import (
        check_data_against_config,
        check_regressor,
        check_trainer,
        load_checked_dataset,
    )

    _check_optuna_objects(spec)
    base = [*spec.overrides, *base_overrides]
    base_cfg = load_config(base)
    check_objectives(spec, base_cfg)
    data = load_checked_dataset(base_cfg)
    for param in spec.space:
        # probe under the entry's condition (e.g. keys of one generator only)
        context = {} if param.when is None else {param.when[0]: param.when[1][0]}
        cfg = load_trial_config(base, context)
        if OmegaConf.select(cfg, param.key, default="__missing__") == "__missing__":
            raise UserError(f"sweep space '{param.key}': no such config key")
        probes = list(param.choices) if param.kind == "categorical" else [param.low, param.high]
        for v in probes:
            value = int(v) if param.kind == "int" else v
            try:
                probe = load_trial_config(base, {**context, param.key: value})
                rows = data if same_rows(probe.data, base_cfg.data) else load_dataset(probe.data)
                check_data_against_config(probe, rows)
                check_regressor(probe, rows)
                if param.key.startswith("trainer"):
                    check_trainer(probe)
            except UserError as exc:
                raise UserError(f"sweep space '{param.key}' value {value!r}: {exc}") from None


def _check_optuna_objects(spec: StudySpec) -> None:
    """Build the spec's sampler and pruner once: unknown or bad options fail here, naming the spec."""
    from hydra.errors import InstantiationException

    for what, build in (("sampler", make_sampler), ("pruner", make_pruner)):
        try:
            build(spec)
        except (InstantiationException, TypeError, ValueError) as exc:
            cause = exc.__cause__ if isinstance(exc, InstantiationException) and exc.__cause__ else exc
            raise UserError(f"{spec.source or spec.name}: {what} {getattr(spec, what)}: {first_line(cause)}") from None


def _as_list(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else [str(v)]


def _typed(v: Any, what: str, allowed: tuple[str, ...], p: Path) -> dict[str, Any]:
    d = {"type": v} if isinstance(v, str) else dict(v or {})
    if d.get("type") not in allowed:
        raise UserError(f"{p}: {what} type must be one of {', '.join(allowed)}, got '{d.get('type')}'")
    return d


def _describe(p: Param) -> str:
    if p.kind == "categorical":
        s = f"categorical {list(p.choices)}"
    else:
        s = f"{p.kind} {p.low:g}..{p.high:g}"
        if p.step:
            s += f" step {p.step:g}"
        if p.log:
            s += " log"
    if p.when is not None:
        s += f" if {p.when[0]}=" + "|".join(map(str, p.when[1]))
    return s


def grid_spec(overrides: list[str] | tuple[str, ...]) -> tuple[StudySpec, list[str]]:
    """A grid study for Hydra-style multirun overrides (`vaeok run -m model.hidden=16,32 generator=none,vae_ok`):
    every sweep override (comma list, `choice(...)`, `range(...)`) becomes a categorical entry of the
    space, the others are base overrides. The study is named after its overrides (`multirun-<hash>`),
    so the same command resumes it. UserError if no override sweeps anything."""
    import hashlib

    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise UserError(f"bad override: {str(exc).splitlines()[0]}") from None
    space: list[Param] = []
    base: list[str] = []
    for o in parsed:
        if not o.is_sweep_override():
            base.append(o.input_line)
            continue
        values = [yaml.safe_load(v) for v in o.sweep_string_iterator()]
        space.append(parse_param(o.key_or_group, {"type": "categorical", "choices": values}))
    if not space:
        raise UserError("-m/--multirun needs at least one comma list, e.g. vaeok run -m model.hidden=16,32")
    n = 1
    for p in space:
        n *= len(p.choices)
    digest = hashlib.sha256(" ".join(overrides).encode()).hexdigest()[:8]
    spec = StudySpec(name=f"multirun-{digest}", space=space, sampler={"type": "grid", "seed": 0},
                     pruner={"type": "none"}, n_trials=n, source="vaeok run -m " + " ".join(overrides))
    return spec, base
