"""`lapidar estimate`: will a training run fit in memory, how long will an epoch take, what makes it fit."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from lapidar.config.options import config_options
from lapidar.training.estimate import MEMORY_FIELDS

__all__ = ["ESTIMATE_FIELDS", "estimate"]

console = Console()


# The TrainConfig fields the memory and time model reads (training/estimate.py); each is also an estimate flag.
ESTIMATE_FIELDS = (*MEMORY_FIELDS[:2], "data", *MEMORY_FIELDS[2:], "seed")


@config_options(ESTIMATE_FIELDS)
def estimate(
    config: Annotated[Path | None, typer.Argument(help="YAML training config; flags below override it.")] = None,
    quant: Annotated[str | None, typer.Option(help="4bit or 8bit base under an adapter (QLoRA).")] = None,
    gpus: Annotated[int, typer.Option(help="GPUs of the named device.")] = 1,
    zero: Annotated[int, typer.Option(help="ZeRO stage over --gpus: 2 or 3 (0: plain data parallel).")] = 0,
    strategy: Annotated[
        str | None,
        typer.Option(help="ddp, fsdp, zero2, zero3 or zero3-offload over --gpus (sets --zero: fsdp shards like 3)."),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="GPU to estimate for, e.g. 'RTX 4090', 'A100 80GB', T4 (default: this machine).")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(help="Memory of the device instead of a name, e.g. 24GB (GB = GiB here).")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the estimate as JSON.")] = False,
    **overrides: Any,
) -> None:
    """Estimate peak memory (weights, gradients, optimiser, activations, logits), the verdict for a device,
    the cheapest changes that make a run fit, and the time per epoch."""
    from lapidar.commands import quiet_libraries
    from lapidar.config import load_config
    from lapidar.errors import UserError
    from lapidar.training.estimate import estimate as run_estimate
    from lapidar.training.estimate import print_report

    if quant not in (None, "4bit", "8bit"):
        raise UserError(f"--quant {quant!r}: use 4bit or 8bit")
    cfg = load_config(config, overrides)
    if cfg.data:
        quiet_libraries()
    report = run_estimate(cfg, device=device, memory=memory, quant=quant, gpus=gpus, zero=zero, strategy=strategy)
    if json_output:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        print_report(console, report)
