"""Training methods, one registry: name -> function that prepares a loaded model for training.

Each function takes the base model and the run config, marks what trains, and returns the model to optimise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lapidar.errors import UserError, unknown_choice
from lapidar.models.qwen import LORA_TARGETS

if TYPE_CHECKING:
    from lapidar.config import TrainConfig

__all__ = ["METHODS", "apply_method", "resolve_targets"]

QWEN_LINEAR = set(LORA_TARGETS["all-linear"])


def resolve_targets(names: list[str]) -> list[str]:
    """Expand presets (`attention`, `mlp`, `all-linear`) into Qwen2.5 module names; reject unknown names."""
    out: list[str] = []
    for name in names:
        expanded = LORA_TARGETS.get(name, [name])
        for module in expanded:
            if module not in QWEN_LINEAR:
                raise UserError(
                    f"unknown target module {name!r}; valid: {', '.join([*LORA_TARGETS, *sorted(QWEN_LINEAR)])}"
                )
            if module not in out:
                out.append(module)
    return out


def _lora(model, cfg: TrainConfig):
    """LoRA (Hu et al. 2021, arXiv:2106.09685): frozen base, low-rank A·B trained on the target projections."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=resolve_targets(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _full(model, cfg: TrainConfig):
    """Full fine-tuning: every weight trains (needs ~16 bytes/parameter with AdamW in fp32)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


METHODS: dict[str, Callable] = {"lora": _lora, "full": _full}


def apply_method(model, cfg: TrainConfig):
    """Prepare `model` for training with `cfg.method`."""
    if cfg.method not in METHODS:
        raise unknown_choice("method", cfg.method, list(METHODS))
    return METHODS[cfg.method](model, cfg)
