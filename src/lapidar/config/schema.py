"""The one declaration of a training run: `TrainConfig`, field by field with its group, help, default, bounds and
allowed values. The `lapidar train` flags (`options.py`), `docs/config.md` (`reference.py`) and YAML loading all read
it; nothing else lists the fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticUndefined

from lapidar.errors import UserError
from lapidar.io import write_text

__all__ = ["GROUPS", "TrainConfig", "field_group", "load_config", "save_yaml", "setting", "validate_config"]

Group = Literal["model", "data", "method", "objective", "optim", "schedule", "compute", "scale", "eval", "output"]

# Section titles, in the order `lapidar train --help` and docs/config.md show them.
GROUPS: dict[str, str] = {
    "model": "Model",
    "data": "Data",
    "method": "Method: LoRA, freeze, GaLore",
    "objective": "Objective: SFT, pretraining, DPO, KTO",
    "optim": "Optimiser and batch",
    "schedule": "Length and LR schedule",
    "compute": "Memory, speed and reproducibility",
    "scale": "Several processes (data parallel)",
    "eval": "Evaluation and early stopping",
    "output": "Output, checkpoints and logging",
}


def setting(default: Any = PydanticUndefined, *, group: Group, help: str, **constraints: Any) -> Any:
    """A `TrainConfig` field: `help` is the flag's help and the reference's description; `constraints` are pydantic's
    (ge, gt, lt, default_factory...)."""
    return Field(default, description=help, json_schema_extra={"group": group}, **constraints)


class TrainConfig(BaseModel):
    """Everything that defines a training run. Each field is also a `lapidar train` flag (`_` -> `-`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # ---- model
    model: str = setting(
        "tiny-qwen2.5", group="model", help="Preset name (see `lapidar models`), hub id, or local directory."
    )
    init: Literal["pretrained", "random"] = setting(
        "pretrained",
        group="model",
        help="pretrained: the checkpoint's weights; random: the preset at its real shape with random weights "
        "(benchmarks).",
    )
    new_tokens: list[str] = setting(
        default_factory=list,
        group="model",
        help="Tokens to add to the vocabulary and train (comma-separated, or a file with one per line); "
        "LoRA methods train only their embedding rows.",
    )
    train_embeddings: bool = setting(
        False,
        group="model",
        help="LoRA methods, freeze: train the whole embed_tokens/lm_head (vocab x hidden more trainable "
        "weights, ~16 bytes each with AdamW).",
    )
    # ---- data
    data: str | None = setting(
        None, group="data", help="Training file (JSON/JSONL/CSV), or `example:claims` (bundled)."
    )
    val_data: str | None = setting(
        None, group="data", help="Validation file; default: hold out `val_fraction` of data."
    )
    val_fraction: float = setting(0.1, group="data", ge=0.0, lt=1.0, help="Share of rows held out when no val_data.")
    max_length: int = setting(1024, group="data", ge=16, help="Tokens per example; longer examples are cut at the end.")
    # ---- method
    method: str = setting(
        "lora",
        group="method",
        help="Training method, a name from `lapidar methods`: lora, qlora, dora, full, freeze, galore...",
    )
    target_modules: list[str] = setting(
        default_factory=lambda: ["all-linear"],
        group="method",
        help="Adapter methods: attention, mlp, all-linear, or module names (q_proj, ..., down_proj).",
    )
    lora_r: int = setting(16, group="method", ge=1, help="LoRA rank.")
    lora_alpha: int = setting(32, group="method", gt=0, help="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = setting(0.05, group="method", ge=0, lt=1, help="Dropout on the LoRA path.")
    loraplus_lr_ratio: float = setting(
        16.0, group="method", gt=0, help="lora-plus: LR of B = lr x this (arXiv:2402.12354)."
    )
    freeze_trainable_layers: int = setting(
        2, group="method", ge=0, help="freeze: how many of the last decoder layers train."
    )
    freeze_extra_modules: list[str] = setting(
        default_factory=list,
        group="method",
        help="freeze: further modules that train, e.g. norm, lm_head, embed_tokens.",
    )
    galore_rank: int = setting(128, group="method", ge=1, help="galore/q-galore: rank of the gradient projection.")
    galore_update_interval: int = setting(
        200, group="method", ge=1, help="galore/q-galore: steps between projection updates."
    )
    # ---- objective
    objective: Literal["auto", "sft", "pretrain", "dpo", "kto"] = setting(
        "auto",
        group="objective",
        help="auto: what the data implies (pairs -> dpo, thumbs -> kto, raw text -> pretrain, else sft).",
    )
    beta: float = setting(
        0.1, group="objective", gt=0, help="dpo/kto: strength of the pull towards the reference model."
    )
    desirable_weight: float = setting(1.0, group="objective", gt=0, help="kto: weight of thumbs-up examples.")
    undesirable_weight: float = setting(1.0, group="objective", gt=0, help="kto: weight of thumbs-down examples.")
    # ---- optimiser and batch
    optimizer: Literal["adamw", "adamw-8bit", "adafactor", "lion", "galore", "q-galore"] = setting(
        "adamw", group="optim", help="Optimiser; galore/q-galore project gradients of 2-D weights to low rank."
    )
    lr: float = setting(2e-4, group="optim", gt=0, help="Peak learning rate.")
    batch_size: int = setting(4, group="optim", ge=1, help="Examples per forward pass.")
    grad_accum: int = setting(1, group="optim", ge=1, help="Forward passes per optimiser step.")
    weight_decay: float = setting(0.0, group="optim", ge=0, help="Decoupled (AdamW-style) weight decay.")
    max_grad_norm: float = setting(1.0, group="optim", gt=0, help="Gradient clipping norm.")
    neftune_alpha: float | None = setting(
        None,
        group="optim",
        gt=0,
        help="NEFTune: uniform noise of this scale on input embeddings, e.g. 5 (arXiv:2310.05914); null: off.",
    )
    # ---- length and schedule
    epochs: float = setting(3.0, group="schedule", gt=0, help="Passes over the training data (ignored with max_steps).")
    max_steps: int | None = setting(None, group="schedule", ge=1, help="Stop after this many optimiser steps.")
    warmup_ratio: float = setting(0.03, group="schedule", ge=0, lt=1, help="Share of steps spent warming the LR up.")
    scheduler: Literal["cosine", "linear", "constant"] = setting(
        "cosine", group="schedule", help="LR schedule after warmup."
    )
    # ---- memory, speed, reproducibility
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        "auto",
        group="compute",
        help="auto: bf16 autocast where the hardware runs it fast (CUDA with bf16, CPU with AVX512-BF16); fp16 "
        "autocast with loss scaling on CUDA GPUs without bf16 (T4, V100); fp32 elsewhere. fp16 elsewhere only "
        "when asked (trained weights stay fp32).",
    )
    gradient_checkpointing: bool = setting(
        False, group="compute", help="Recompute activations in backward: less memory, ~1/3 more compute."
    )
    checkpoint_layers: int | None = setting(
        None,
        group="compute",
        ge=0,
        help="Recompute the activations of the first N decoder layers in backward (selective checkpointing). "
        "Unset: chosen from the memory estimate before the weights load, none when the run fits, else the fewest "
        "layers that make it fit (said in the first lines); 0: never. --gradient-checkpointing means all layers.",
    )
    padding_free: bool = setting(
        True,
        group="compute",
        help="Concatenate each batch into one row, attention kept within each example: no compute or memory "
        "spent on padding (same loss as padded batches). False: right-padded, length-grouped batches.",
    )
    seed: int = setting(42, group="compute", help="Seed for data order, split, initialisation and dropout.")
    force: bool = setting(False, group="compute", help="Train even when the memory estimate says the run cannot fit.")
    # ---- several processes
    nproc: int = setting(
        1,
        group="scale",
        ge=1,
        help="Training processes on this machine (torchrun; DDP through accelerate, gloo on CPU, NCCL on GPUs). "
        "--batch-size is per process: the global batch is batch_size x nproc x grad_accum. Ignored inside a "
        "process torchrun or accelerate launch started (their world size counts).",
    )
    launcher: Literal["torchrun", "ray"] = setting(
        "torchrun",
        group="scale",
        help="What starts the nproc processes: torchrun on this machine, or ray (Ray Train's TorchTrainer with "
        "nproc workers on the Ray cluster at $RAY_ADDRESS, else a local one; the run directory must be on storage "
        "every node sees; pip install 'lapidar[ray]').",
    )
    strategy: Literal["ddp", "fsdp", "zero2", "zero3", "zero3-offload"] = setting(
        "ddp",
        group="scale",
        help="How several processes share the model: ddp copies it into each process (DDP through accelerate); "
        "fsdp shards weights, gradients and optimiser states (torch FSDP2); zero2 shards gradients and optimiser "
        "states, zero3 weights too, zero3-offload keeps optimiser states in CPU memory (DeepSpeed ZeRO, pip install "
        "'lapidar[deepspeed]'; configs in lapidar/resources/strategies). All run on CPU (gloo) and GPUs (NCCL).",
    )
    # ---- evaluation, early stopping
    eval_steps: int = setting(50, group="eval", ge=1, help="Compute validation loss every N optimiser steps.")
    patience: int | None = setting(
        3, group="eval", ge=0, help="Stop after this many evaluations without improvement; 0 or null disables it."
    )
    min_delta: float = setting(0.0, group="eval", ge=0, help="Improvement smaller than this does not count.")
    eval_every: int | None = setting(
        None, group="eval", ge=1, help="Every N steps, generate answers for validation rows and log their metrics."
    )
    eval_metrics: list[str] | None = setting(
        None, group="eval", help="Metrics for eval_every, comma-separated (default: by answer shape)."
    )
    eval_rows: int = setting(32, group="eval", ge=1, help="Validation rows used by eval_every.")
    # ---- output, checkpoints, logging
    output: str | None = setting(None, group="output", help="Run directory; default runs/<timestamp>-<name>.")
    name: str | None = setting(None, group="output", help="Run name used in the default output directory.")
    save_steps: int | None = setting(
        None, group="output", ge=1, help="Write a resumable checkpoint every N steps (default: at every evaluation)."
    )
    keep_checkpoints: int = setting(2, group="output", ge=1, help="Periodic checkpoints kept (the best is kept apart).")
    log_steps: int = setting(5, group="output", ge=1, help="Write metrics every N optimiser steps.")
    report_to: str | None = setting(
        None, group="output", help="Also log to wandb and/or mlflow (comma-separated); offline works."
    )

    # Lists are YAML lists or comma-separated strings (the form a flag gives).
    @field_validator("target_modules", "freeze_extra_modules", "eval_metrics", mode="before")
    @classmethod
    def _split_modules(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [m.strip() for m in v.split(",") if m.strip()]
        return v

    @field_validator("new_tokens", mode="before")
    @classmethod
    def _parse_new_tokens(cls, v: Any) -> Any:
        """A comma-separated string, a file with one token per line, or a list; no empty or whitespace tokens."""
        if isinstance(v, str):
            path = Path(v).expanduser()
            if path.is_file():
                v = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            else:
                v = [t.strip() for t in v.split(",")]
        if not isinstance(v, list):
            return v
        for i, token in enumerate(v, 1):
            if not isinstance(token, str):
                continue  # pydantic rejects it as "not a valid string"
            if not token:
                raise ValueError(
                    f"--new-tokens: token {i} is empty; separate tokens with single commas, e.g. "
                    "--new-tokens '<claim_id>,<policy_ref>'"
                )
            if any(c.isspace() for c in token):
                raise ValueError(f"--new-tokens: token {token!r} contains whitespace; a new token is one word")
        return list(dict.fromkeys(v)) if all(isinstance(t, str) for t in v) else v


def field_group(name: str) -> str:
    """The group (a key of GROUPS) a TrainConfig field belongs to."""
    extra = TrainConfig.model_fields[name].json_schema_extra
    assert isinstance(extra, dict), f"TrainConfig.{name} has no group; declare it with setting(...)"
    return str(extra["group"])


def _format_validation_error(err: ValidationError, where: str) -> str:
    parts = []
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "(config)"
        if e["type"] == "extra_forbidden":
            valid = ", ".join(TrainConfig.model_fields)
            parts.append(f"unknown config key {field!r} in {where}; valid keys: {valid}")
        else:
            parts.append(f"{where}: {field}: {e['msg']} (got {e.get('input')!r})")
    return "; ".join(parts)


def load_config(path: str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    """Read a YAML config (optional), apply command-line overrides (None = not given), and validate."""
    values: dict[str, Any] = {}
    where = "command line"
    if path is not None:
        p = Path(path)
        where = str(p)
        if not p.is_file():
            raise UserError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise UserError(f"{p}{line}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UserError(f"{p}: expected a mapping of config keys (key: value), got {type(loaded).__name__}")
        values.update({str(k).replace("-", "_"): v for k, v in loaded.items()})
        if "sweep" in values:
            raise UserError(
                f"{p}: the `sweep:` section is a search space, read by `lapidar sweep {p}`; to train one setting, "
                "remove the section (or train the best.yaml that `lapidar sweep` writes)"
            )
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        where = f"{where} + command line" if path else where
    values.update(given)
    return validate_config(values, where)


def validate_config(values: dict[str, Any], where: str) -> TrainConfig:
    """A TrainConfig from `values`; a UserError naming each bad field and `where` the values came from."""
    try:
        return TrainConfig(**values)
    except ValidationError as e:
        raise UserError(_format_validation_error(e, where)) from None


def save_yaml(data: dict, path: Path) -> None:
    """Write YAML atomically (temporary file, then rename)."""
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
