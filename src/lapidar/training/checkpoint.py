"""Checkpoints: trained weights and the whole loop state, written atomically, for exact resume after kill -9."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from lapidar.errors import UserError
from lapidar.io import atomic_dir

__all__ = ["STATE_FILE", "latest_checkpoint", "load_checkpoint_weights", "save_checkpoint", "save_weights"]

STATE_FILE = "trainer_state.pt"


def save_weights(model, tokenizer, path: Path, state_dict: dict | None = None) -> None:
    """Save trained weights (adapter or whole model) and, when given, the tokenizer, atomically.

    `state_dict`: the weights gathered from the shards of a sharded run (None: the model's own)."""
    with atomic_dir(path) as tmp:
        _save_pretrained(model, tmp, state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp))


def _save_pretrained(model, path: Path, state_dict: dict | None) -> None:
    if state_dict is None:
        model.save_pretrained(str(path))
    else:
        model.save_pretrained(str(path), state_dict=state_dict)


def save_checkpoint(
    run_dir: Path,
    model,
    step: int,
    keep: int,
    state: dict,
    state_dict: dict | None = None,
    engine_dir: Path | None = None,
) -> Path:
    """Write weights + optimiser/scheduler/RNG/loop state into checkpoints/step-N atomically; keep the last `keep`.

    `engine_dir`: what the processes of a sharded run wrote (each its optimiser shard: DeepSpeed's or fsdp's),
    moved in under its own name; its parent directory, made for it, is removed."""
    root = run_dir / "checkpoints"
    path = root / f"step-{step:06d}"
    with atomic_dir(path) as tmp:
        _save_pretrained(model, tmp, state_dict)
        if engine_dir is not None:
            shutil.move(str(engine_dir), str(tmp / engine_dir.name))
            shutil.rmtree(engine_dir.parent, ignore_errors=True)
        torch.save(state, tmp / STATE_FILE)
    done = sorted(p for p in root.glob("step-*") if p.is_dir() and (p / STATE_FILE).is_file())
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run (None if it has none)."""
    done = sorted(p for p in (run_dir / "checkpoints").glob("step-*") if (p / STATE_FILE).is_file())
    return done[-1] if done else None


def load_checkpoint_weights(model, path: Path, adapter: bool) -> None:
    """Load a checkpoint's trained weights into `model` (a peft model for adapter methods)."""
    from safetensors.torch import load_file

    if adapter:
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(model, load_file(str(path / "adapter_model.safetensors")))
        return
    state: dict = {}
    for shard in sorted(path.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("lm_head.weight")]:
        raise UserError(f"{path}: checkpoint does not match the model (missing {missing[:3]}, extra {unexpected[:3]})")
