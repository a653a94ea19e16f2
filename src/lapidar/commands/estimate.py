"""`lapidar estimate`: will a training run fit in memory, how long will an epoch take, what makes it fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["estimate"]

console = Console()


def estimate(
    config: Annotated[Path | None, typer.Argument(help="YAML training config; flags below override it.")] = None,
    model: Annotated[str | None, typer.Option(help="Preset (see `lapidar models`) or model directory.")] = None,
    init: Annotated[str | None, typer.Option(help="pretrained (bf16 weights) or random (fp32 below 1B).")] = None,
    method: Annotated[
        str | None, typer.Option(help="lora, qlora, full, freeze, galore... (`lapidar methods`).")
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Max tokens per example.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Examples per forward pass.")] = None,
    grad_accum: Annotated[int | None, typer.Option(help="Forward passes per optimiser step.")] = None,
    gradient_checkpointing: Annotated[
        bool | None, typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Recompute activations.")
    ] = None,
    quant: Annotated[str | None, typer.Option(help="4bit or 8bit base under an adapter (QLoRA).")] = None,
    gpus: Annotated[int, typer.Option(help="GPUs of the named device.")] = 1,
    zero: Annotated[int, typer.Option(help="ZeRO stage over --gpus: 2 or 3 (0: plain data parallel).")] = 0,
    device: Annotated[
        str | None, typer.Option(help="GPU to estimate for, e.g. 'RTX 4090', 'A100 80GB', T4 (default: this machine).")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory of the device instead of a name, e.g. 24GB (GB = GiB here).")
    ] = None,
    lora_r: Annotated[int | None, typer.Option(help="LoRA rank.")] = None,
    target_modules: Annotated[
        str | None, typer.Option(help="attention, mlp, all-linear or comma-separated module names.")
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="adamw, adamw-8bit, adafactor, lion, galore.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto, fp32 or bf16.")] = None,
    data: Annotated[str | None, typer.Option(help="Training data: real widths and the time per epoch.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
) -> None:
    """Estimate peak memory (weights, gradients, optimiser, activations, logits), the verdict for a device,
    the cheapest changes that make a run fit, and the time per epoch."""
    from lapidar.commands import quiet_libraries
    from lapidar.config import load_config
    from lapidar.errors import UserError
    from lapidar.recipes.estimate import estimate as run_estimate
    from lapidar.recipes.estimate import print_report

    if quant not in (None, "4bit", "8bit"):
        raise UserError(f"--quant {quant!r}: use 4bit or 8bit")
    overrides = {
        "model": model,
        "init": init,
        "method": method,
        "max_length": max_length,
        "batch_size": batch_size,
        "grad_accum": grad_accum,
        "gradient_checkpointing": gradient_checkpointing,
        "lora_r": lora_r,
        "target_modules": target_modules,
        "optimizer": optimizer,
        "precision": precision,
        "data": data,
    }
    cfg = load_config(config, overrides)
    if cfg.data:
        quiet_libraries()
    report = run_estimate(cfg, device=device, memory=memory, quant=quant, gpus=gpus, zero=zero)
    if json_output:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        print_report(console, report)
