"""One typed, validated config per training run: loadable from YAML, overridable from the command line,
saved as `config.yaml` in the run directory next to the results."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lapidar.errors import UserError
from lapidar.io import write_text

__all__ = ["TrainConfig", "load_config", "save_yaml"]


class TrainConfig(BaseModel):
    """Everything that defines a training run. Each field is also a `lapidar train` flag (`_` -> `-`)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # what to train
    model: str = Field("tiny-qwen2.5", description="Preset name (see `lapidar models`), hub id, or local directory.")
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="`random`: build the preset at its real shape with random weights (benchmarks)."
    )
    method: str = Field("lora", description="Training method (see `lapidar methods`): lora (default), qlora, full, ...")
    objective: Literal["auto", "sft", "pretrain", "dpo", "kto"] = Field(
        "auto", description="auto: what the data implies (pairs -> dpo, thumbs -> kto, raw text -> pretrain, else sft)."
    )
    # data
    data: str | None = Field(None, description="Training file (JSON/JSONL/CSV), or `example:claims` (bundled).")
    val_data: str | None = Field(None, description="Validation file; default: hold out `val_fraction` of data.")
    val_fraction: float = Field(0.1, ge=0.0, lt=1.0, description="Share of rows held out when no val_data.")
    max_length: int = Field(1024, ge=16, description="Tokens per example; longer examples are cut at the end.")
    # where results go
    output: str | None = Field(None, description="Run directory; default runs/<timestamp>-<name>.")
    name: str | None = Field(None, description="Run name used in the default output directory.")
    # optimisation
    epochs: float = Field(3.0, gt=0, description="Passes over the training data (ignored with max_steps).")
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimiser steps.")
    lr: float = Field(2e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(4, ge=1, description="Examples per forward pass.")
    grad_accum: int = Field(1, ge=1, description="Forward passes per optimiser step.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming the LR up.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="LR schedule after warmup.")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    optimizer: Literal["adamw", "adamw-8bit", "adafactor", "lion", "galore", "q-galore"] = Field(
        "adamw", description="Optimiser; galore/q-galore project gradients of 2-D weights to low rank."
    )
    neftune_alpha: float | None = Field(
        None, gt=0, description="NEFTune: uniform noise of this scale on input embeddings (arXiv:2310.05914)."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~1/3 more compute."
    )
    padding_free: bool = Field(
        True,
        description="Concatenate each batch into one row, attention kept within each example: no compute or memory "
        "spent on padding (same loss as padded batches). False: right-padded, length-grouped batches.",
    )
    seed: int = Field(42, description="Seed for data order, split, initialisation and dropout.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 autocast where the hardware runs it fast (CUDA, CPU with AVX512-BF16)."
    )
    # LoRA
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    loraplus_lr_ratio: float = Field(16.0, gt=0, description="lora-plus: LR of B = lr x this (arXiv:2402.12354).")
    freeze_trainable_layers: int = Field(2, ge=0, description="freeze: how many of the last decoder layers train.")
    freeze_extra_modules: list[str] = Field(
        default_factory=list, description="freeze: further modules that train, e.g. norm, lm_head, embed_tokens."
    )
    galore_rank: int = Field(128, ge=1, description="galore: rank of the gradient projection.")
    galore_update_interval: int = Field(200, ge=1, description="galore: steps between projection updates.")
    # preference objectives
    beta: float = Field(0.1, gt=0, description="dpo/kto: strength of the pull towards the reference model.")
    desirable_weight: float = Field(1.0, gt=0, description="kto: weight of thumbs-up examples.")
    undesirable_weight: float = Field(1.0, gt=0, description="kto: weight of thumbs-down examples.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="attention, mlp, all-linear, or module names (q_proj, ..., down_proj).",
    )
    # new tokens
    new_tokens: list[str] = Field(
        default_factory=list,
        description="Tokens to add to the vocabulary and train (comma-separated, or a file with one per line); "
        "LoRA methods train only their embedding rows.",
    )
    train_embeddings: bool = Field(
        False,
        description="LoRA methods, freeze: train the whole embed_tokens/lm_head (vocab x hidden more trainable "
        "weights, ~16 bytes each with AdamW).",
    )
    # evaluation, checkpoints, early stopping
    eval_steps: int = Field(50, ge=1, description="Compute validation loss every N optimiser steps.")
    save_steps: int | None = Field(
        None, ge=1, description="Write a resumable checkpoint every N steps (default: at every evaluation)."
    )
    keep_checkpoints: int = Field(2, ge=1, description="Periodic checkpoints kept (the best is kept apart).")
    patience: int | None = Field(
        3, ge=0, description="Stop after this many evaluations without improvement; 0 or null disables it."
    )
    min_delta: float = Field(0.0, ge=0, description="Improvement smaller than this does not count.")
    log_steps: int = Field(5, ge=1, description="Write metrics every N optimiser steps.")
    eval_every: int | None = Field(
        None, ge=1, description="Every N steps, generate answers for validation rows and log their metrics."
    )
    eval_metrics: list[str] | None = Field(None, description="Metrics for eval_every (default: by answer shape).")
    eval_rows: int = Field(32, ge=1, description="Validation rows used by eval_every.")
    force: bool = Field(False, description="Train even when the memory estimate says the run cannot fit.")
    report_to: str | None = Field(None, description="Also log to wandb and/or mlflow (comma-separated); offline works.")

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
    given = {k: v for k, v in overrides.items() if v is not None}
    if given:
        where = f"{where} + command line" if path else where
    values.update(given)
    try:
        return TrainConfig(**values)
    except ValidationError as e:
        raise UserError(_format_validation_error(e, where)) from None


def save_yaml(data: dict, path: Path) -> None:
    """Write YAML atomically (temporary file, then rename)."""
    write_text(path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
