"""Optimisers: one registry, name -> builder(param_groups, cfg). Parameter groups come from the method
(LoRA+ gives B matrices a higher learning rate; GaLore projects the gradients of 2-D weights)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from lapidar.errors import UserError, unknown_choice
from lapidar.methods import get_method

if TYPE_CHECKING:
    from lapidar.config import TrainConfig

__all__ = ["OPTIMIZERS", "build_optimizer", "param_groups"]

# GaLore projects only the big matrices of the decoder blocks; embeddings, norms and biases use plain AdamW.
_GALORE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def param_groups(model, cfg: TrainConfig, optimizer: str) -> list[dict[str, Any]]:
    """Split the trainable parameters into optimiser groups for `cfg.method` and `optimizer`."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise UserError(f"method {cfg.method!r} left no trainable parameters")
    method = get_method(cfg.method)
    if method.param_groups is not None:
        return method.param_groups(named, cfg)
    if optimizer in ("galore", "q-galore"):
        proj = [p for n, p in named if p.dim() == 2 and any(t in n for t in _GALORE_TARGETS)]
        ids = {id(p) for p in proj}
        rest = [p for _, p in named if id(p) not in ids]
        galore = {
            "params": proj,
            "rank": cfg.galore_rank,
            "update_proj_gap": cfg.galore_update_interval,
            "scale": 0.25,
            "proj_type": "std",
        }
        return [{"params": rest}, galore]
    return [{"params": [p for _, p in named]}]


def _adamw(groups, cfg: TrainConfig):
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.999))


def _needs(package: str, extra: str, what: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise UserError(f"{what} needs the {package} package: pip install 'lapidar[{extra}]'") from None


def _adamw_8bit(groups, cfg: TrainConfig):
    bnb = _needs("bitsandbytes", "qlora", "optimizer adamw-8bit")
    return bnb.optim.AdamW8bit(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _adafactor(groups, cfg: TrainConfig):
    from transformers.optimization import Adafactor

    return Adafactor(
        groups, lr=cfg.lr, weight_decay=cfg.weight_decay, scale_parameter=False, relative_step=False, warmup_init=False
    )


def _lion(groups, cfg: TrainConfig):
    bnb = _needs("bitsandbytes", "qlora", "optimizer lion")
    return bnb.optim.Lion(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _galore(groups, cfg: TrainConfig):
    galore = _needs("galore_torch", "galore", "GaLore")
    return galore.GaLoreAdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _q_galore(groups, cfg: TrainConfig):
    qgalore = _needs("q_galore_torch", "galore", "Q-GaLore")
    bnb = _needs("bitsandbytes", "qlora", "Q-GaLore")
    major, minor = (int(x) for x in bnb.__version__.split(".")[:2])
    if (major, minor) >= (0, 44):
        # q-galore-torch 1.0 (its only release) calls bitsandbytes' 8-bit update kernels with the pre-0.44
        # signature (config keys `percentile_clipping`/`block_wise`, no `absmax2`): it fails at the first step.
        raise UserError(
            f"q-galore: q-galore-torch 1.0 does not work with bitsandbytes {bnb.__version__} (it needs < 0.44, "
            "whose kernels are CUDA-only); use --method galore (same projection, fp32 states) instead"
        )
    return qgalore.QGaLoreAdamW8bit(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


OPTIMIZERS: dict[str, Callable[[list, TrainConfig], torch.optim.Optimizer]] = {
    "adamw": _adamw,
    "adamw-8bit": _adamw_8bit,
    "adafactor": _adafactor,
    "lion": _lion,
    "galore": _galore,
    "q-galore": _q_galore,
}


def build_optimizer(model, cfg: TrainConfig, implied: str | None = None) -> torch.optim.Optimizer:
    """The optimiser for `model`: the method's own (GaLore) if it implies one, else `cfg.optimizer`."""
    name = implied or cfg.optimizer
    if name not in OPTIMIZERS:
        raise unknown_choice("optimizer", name, list(OPTIMIZERS))
    return OPTIMIZERS[name](param_groups(model, cfg, name), cfg)
