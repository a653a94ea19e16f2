"""The search space of `lapidar sweep`: the `sweep:` section of a training YAML, validated, and what it implies.

A sweep config is an ordinary training config plus one top-level `sweep:` mapping::

    sweep:
      trials: 8
      objective: val_loss          # or an eval metric name (accuracy, token_f1, ...)
      direction: minimize          # default: minimize for val_loss, the metric's own direction otherwise
      pruner: {type: median, n_startup_trials: 1, n_warmup_steps: 2}
      sampler: {type: tpe, seed: 0}
      params:
        lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
        lora_r: {type: categorical, choices: [8, 16, 32]}

Every key of `params` is a `TrainConfig` field. `lapidar train` refuses the `sweep:` key (the config is strict);
`load_sweep_config` takes it off before the rest is validated as a `TrainConfig`.
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from lapidar.config import TrainConfig, load_config
from lapidar.errors import UserError
from lapidar.evaluation.metrics import METRICS
from lapidar.training.estimate import MEMORY_FIELDS

__all__ = [
    "MEMORY_FIELDS",
    "ParamSpec",
    "PrunerSpec",
    "SamplerSpec",
    "SweepSpec",
    "describe",
    "load_sweep_config",
    "memory_combinations",
    "trial_config",
]

# Fields a trial may not vary: where the trial's run goes and how the run is launched are the sweep's to decide.
FIXED_FIELDS = ("output", "name", "nproc", "data", "val_data")


class ParamSpec(BaseModel):
    """One searched field: a float or int range (optionally log scale or stepped), or a list of choices."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty `choices` list")
            if self.low is not None or self.high is not None or self.step is not None or self.log:
                raise ValueError("a categorical parameter takes only `choices` (no low/high/step/log)")
            return self
        if self.choices is not None:
            raise ValueError(f"`choices` is for categorical parameters; a {self.type} range takes low and high")
        if self.low is None or self.high is None:
            raise ValueError(f"a {self.type} parameter needs `low` and `high`")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        if self.log and self.step is not None and not (self.type == "int" and self.step == 1):
            raise ValueError("log: true cannot be combined with `step`")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step must be > 0 (got {self.step})")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and value != int(value):
                    raise ValueError(f"an int parameter needs whole numbers; {name} is {value}")
        return self

    def extremes(self) -> list[Any]:
        """The values that bound memory: every choice, or the two ends of a range (the last value on its grid)."""
        if self.type == "categorical":
            assert self.choices is not None
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            low, high, step = int(self.low), int(self.high), int(self.step or 1)
            return sorted({low, low + (high - low) // step * step})
        return sorted({self.low, self.high})

    def suggest(self, trial: Any, name: str) -> Any:
        """The value an Optuna trial draws for this parameter."""
        if self.type == "categorical":
            return trial.suggest_categorical(name, self.choices)
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)


class PrunerSpec(BaseModel):
    """Which pruner stops bad trials early, with its options (Optuna's MedianPruner / HyperbandPruner arguments)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["median", "hyperband", "none"] = "median"
    # median: prune a trial whose validation loss at a step is worse than the median of earlier trials there.
    n_startup_trials: int = 2
    n_warmup_steps: int = 0
    interval_steps: int = 1
    # hyperband: the steps between the smallest and the largest budget.
    min_resource: int = 1
    reduction_factor: int = 3

    def build(self, max_resource: int) -> Any:
        """The Optuna pruner."""
        import optuna

        if self.type == "median":
            return optuna.pruners.MedianPruner(self.n_startup_trials, self.n_warmup_steps, self.interval_steps)
        if self.type == "hyperband":
            return optuna.pruners.HyperbandPruner(self.min_resource, max_resource, self.reduction_factor)
        return optuna.pruners.NopPruner()


class SamplerSpec(BaseModel):
    """How parameter values are drawn: tpe (default), random, or grid (every combination of categorical choices)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["tpe", "random"] = "tpe"
    seed: int | None = None
    n_startup_trials: int = 4

    def build(self) -> Any:
        """The Optuna sampler."""
        import optuna

        if self.type == "random":
            return optuna.samplers.RandomSampler(seed=self.seed)
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=self.n_startup_trials)


class SweepSpec(BaseModel):
    """The `sweep:` section."""

    model_config = ConfigDict(extra="forbid")

    trials: int = 10
    objective: str = "val_loss"
    direction: Literal["minimize", "maximize"] | None = None
    pruner: PrunerSpec = PrunerSpec()
    sampler: SamplerSpec = SamplerSpec()
    params: dict[str, ParamSpec]

    @field_validator("objective")
    @classmethod
    def _known_objective(cls, v: str) -> str:
        if v != "val_loss" and v not in METRICS:
            raise ValueError(f"objective {v!r} is not val_loss or a metric: {', '.join(METRICS)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> SweepSpec:
        if self.trials < 1:
            raise ValueError(f"trials must be at least 1 (got {self.trials})")
        if self.objective != "val_loss" and METRICS[self.objective].higher_is_better is None and not self.direction:
            raise ValueError(f"objective {self.objective} has no better direction: set direction")
        if not self.params:
            raise ValueError("params is empty: name at least one config field to search, e.g. lr")
        return self

    def resolved_direction(self) -> str:
        """minimize for val_loss; for a metric, its own better direction unless `direction` says otherwise."""
        if self.direction:
            return self.direction
        if self.objective == "val_loss":
            return "minimize"
        return "maximize" if METRICS[self.objective].higher_is_better else "minimize"


def _sweep_error(err: ValidationError, where: str) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(["sweep", *(str(x) for x in e["loc"])])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parts.append(f"{where}: unknown key {field}")
        else:
            parts.append(f"{where}: {field}: {msg}")
    return "; ".join(parts)


def load_sweep_config(path: Path) -> tuple[TrainConfig, SweepSpec]:
    """Read a sweep YAML: the training config (validated as `lapidar train` would) and its `sweep:` section."""
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("sweep"), dict):
        raise UserError(
            f"{path}: no `sweep:` section; add one with the params to search, e.g. "
            "`sweep: {params: {lr: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}}}` (see configs/sweep.yaml)"
        )
    section = loaded.pop("sweep")
    try:
        spec = SweepSpec(**section)
    except ValidationError as e:
        raise UserError(_sweep_error(e, str(path))) from None
    valid = list(TrainConfig.model_fields)
    for name in spec.params:
        if name not in TrainConfig.model_fields:
            raise UserError(f"{path}: sweep.params.{name} is not a config field; valid fields: {', '.join(valid)}")
        if name in FIXED_FIELDS:
            raise UserError(f"{path}: sweep.params.{name} cannot vary between trials; set it outside `sweep:`")
    # The rest is an ordinary training config, validated by the same loader `lapidar train` uses.
    with tempfile.TemporaryDirectory() as tmp:
        rest = Path(tmp) / path.name
        rest.write_text(yaml.safe_dump(loaded, sort_keys=False), encoding="utf-8")
        try:
            base = load_config(rest, {})
        except UserError as e:
            raise UserError(str(e).replace(str(rest), str(path))) from None
    # Every value a parameter can take must be a valid value of its field (a choice of a Literal, a bound).
    for name, param in spec.params.items():
        for value in param.extremes():
            try:
                base.model_copy().__setattr__(name, value)
            except ValidationError as e:
                msg = e.errors()[0]["msg"]
                raise UserError(f"{path}: sweep.params.{name}: {value!r} is not a valid {name}: {msg}") from None
    return base, spec


def trial_config(base: TrainConfig, values: dict[str, Any], output: Path) -> TrainConfig:
    """The training config of one trial: the base with the drawn values, writing into `output`."""
    data = base.model_dump()
    data.update(values)
    data["output"] = str(output)
    return TrainConfig(**data)


def memory_combinations(base: TrainConfig, spec: SweepSpec) -> list[dict[str, Any]]:
    """Every combination of the memory-relevant parameters' values (choices, or the ends of a range).

    Continuous parameters outside MEMORY_FIELDS (lr, warmup_ratio...) do not change memory and are left out; with
    none inside, the one combination is the base config itself.
    """
    names = [n for n in spec.params if n in MEMORY_FIELDS]
    grids = [spec.params[n].extremes() for n in names]
    combos = [dict(zip(names, values, strict=True)) for values in itertools.product(*grids)]
    return combos or [{}]


def describe(values: dict[str, Any]) -> str:
    """`lr=3.2e-04 lora_r=16` for a progress line."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 or v == 0 or math.isnan(v) else f"{v:.2e}"
        return str(v)

    return " ".join(f"{k}={fmt(v)}" for k, v in values.items())
