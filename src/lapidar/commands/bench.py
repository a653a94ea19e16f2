"""`lapidar bench`: lapidar's default LoRA path against the plain transformers + peft recipe, in one run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

__all__ = ["bench"]

console = Console()


def bench(
    model: Annotated[str, typer.Option(help="Preset both stacks train (random weights at its real shape).")] = (
        "qwen2.5-0.5b"
    ),
    init: Annotated[str, typer.Option(help="random (default) or pretrained.")] = "random",
    steps: Annotated[int, typer.Option(min=4, help="Optimiser steps per stack; steps 3..N are timed.")] = 14,
    eval_steps: Annotated[int | None, typer.Option(help="Validation loss every N steps (default: steps / 2).")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per step.")] = 4,
    max_length: Annotated[int, typer.Option(min=16, help="Tokens per example (mixed-length data is cut here).")] = 512,
    quick: Annotated[bool, typer.Option("--quick", help="tiny-qwen2.5, 8 steps: checks the bench in ~3 min.")] = False,
    plain_bf16: Annotated[
        bool | None,
        typer.Option(
            "--plain-bf16/--plain-fp32",
            help="Precision of the plain recipe (default: bf16=True where the hardware runs bf16 natively, as blog "
            "recipes set it; fp32 on CPUs that would only emulate it, several times slower).",
        ),
    ] = None,
    lora_dropout: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.99,
            help="LoRA dropout of both stacks (default: lapidar's default). With dropout the two stacks draw different "
            "masks, and the per-step losses differ by that noise; 0 compares the numerics alone.",
        ),
    ] = 0.05,
    val_rows: Annotated[int, typer.Option(min=1, help="Validation conversations (each pass costs a forward).")] = 12,
    output: Annotated[Path, typer.Option(help="Directory for bench.json, the data and both runs.")] = Path(
        "runs/bench"
    ),
) -> None:
    """Train the same LoRA run with the plain transformers Trainer recipe and with lapidar; compare trained
    tokens/s, peak memory (process tree), time to the same validation loss and MFU. Writes OUTPUT/bench.json."""
    from lapidar.recipes.bench import BenchSpec, main, native_bf16

    if quick:
        model, steps = "tiny-qwen2.5", min(steps, 8)
    spec = BenchSpec(
        model=model,
        init=init,
        steps=steps,
        batch_size=batch_size,
        max_length=max_length,
        eval_steps=eval_steps or max(steps // 2, 1),
        lora_dropout=lora_dropout,
        plain_bf16=native_bf16() if plain_bf16 is None else plain_bf16,
    )
    main(spec, output, console, n_val=val_rows)
