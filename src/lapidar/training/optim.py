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

__all__ = ["OPTIMIZERS", "build_optimizer", "check_optimizer", "param_groups", "q_galore_problem"]

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


def q_galore_problem() -> str | None:
    """Why Q-GaLore cannot run in this environment, or None when it can.

    q-galore-torch 1.0 (its only release) calls bitsandbytes' 8-bit update kernels with the pre-0.44 signature
    (config keys `percentile_clipping`/`block_wise`, no `absmax2`): with bitsandbytes >= 0.44 it fails at the first
    step, and bitsandbytes < 0.44 has CUDA-only kernels. So no `pip install` makes it work next to lapidar's qlora
    extra; the message says what would, and what to use instead.
    """
    import importlib.metadata as md

    instead = "use --method galore (the same gradient projection with fp32 optimiser states) instead"
    try:
        bnb_version = md.version("bitsandbytes")
    except md.PackageNotFoundError:
        bnb_version = None
    if bnb_version is not None and tuple(int(x) for x in bnb_version.split(".")[:2]) >= (0, 44):
        return (
            f"q-galore: q-galore-torch 1.0 does not work with bitsandbytes {bnb_version} (it needs bitsandbytes "
            f"< 0.44, whose kernels are CUDA-only); {instead}"
        )
    try:
        md.version("q-galore-torch")
    except md.PackageNotFoundError:
        return (
            "q-galore needs the q-galore-torch package and bitsandbytes < 0.44 (CUDA only), which lapidar does not "
            f"install because its qlora extra needs bitsandbytes >= 0.45; {instead}"
        )
    return None


def _q_galore(groups, cfg: TrainConfig):
    problem = q_galore_problem()
    if problem:
        raise UserError(problem)
    import q_galore_torch  # present: q_galore_problem() checked it

    return q_galore_torch.QGaLoreAdamW8bit(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


OPTIMIZERS: dict[str, Callable[[list, TrainConfig], torch.optim.Optimizer]] = {
    "adamw": _adamw,
    "adamw-8bit": _adamw_8bit,
    "adafactor": _adafactor,
    "lion": _lion,
    "galore": _galore,
    "q-galore": _q_galore,
}


# The packages each optimiser needs, checked before any weights load: (import name, extra that installs it).
_PACKAGES = {
    "adamw-8bit": [("bitsandbytes", "qlora")],
    "lion": [("bitsandbytes", "qlora")],
    "galore": [("galore_torch", "galore")],
}


def check_optimizer(name: str) -> None:
    """Fail before the model loads when optimiser `name` cannot run here (a missing package, q-galore's clash)."""
    import importlib.util

    if name not in OPTIMIZERS:
        raise unknown_choice("optimizer", name, list(OPTIMIZERS))
    if name == "q-galore" and (problem := q_galore_problem()):
        raise UserError(problem)
    for package, extra in _PACKAGES.get(name, []):
        if importlib.util.find_spec(package) is None:
            raise UserError(f"optimizer {name} needs the {package} package: pip install 'lapidar[{extra}]'")


def build_optimizer(model, cfg: TrainConfig, implied: str | None = None) -> torch.optim.Optimizer:
    """The optimiser for `model`: the method's own (GaLore) if it implies one, else `cfg.optimizer`."""
    name = implied or cfg.optimizer
    if name not in OPTIMIZERS:
        raise unknown_choice("optimizer", name, list(OPTIMIZERS))
    return OPTIMIZERS[name](param_groups(model, cfg, name), cfg)
