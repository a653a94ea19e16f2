"""fp16 mixed precision with loss scaling (`--precision fp16`; `auto` picks it on CUDA GPUs without bf16, T4/V100).

On CPU torch emulates fp16 (slow, but the same arithmetic as a GPU's): the losses must follow fp32's, the trained
weights stay fp32, the frozen decoder linears are held in fp16, the gradient scaler's state is checkpointed for an
exact resume, and a step whose gradients overflow is skipped, not applied.
"""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from lapidar.config import TrainConfig
from lapidar.errors import UserError
from lapidar.recipes import train
from lapidar.training.checkpoint import STATE_FILE
from lapidar.training.distributed import World, check_strategy
from lapidar.training.estimate import estimate
from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_train_recipe import PAIRS

pytestmark = pytest.mark.recipe

SETTINGS = {"max_steps": 3, "batch_size": 2, "max_length": 96, "lr": 2e-3, "seed": 3, "log_steps": 1}


def _losses(run) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r]


def test_fp16_trains_what_fp32_trains_and_checkpoints_its_scaler(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS[:8]))
    runs = {}
    for precision in ("fp32", "fp16"):
        cfg = TrainConfig(
            data=str(data), val_fraction=0.0, precision=precision, save_steps=3, output=str(tmp_path / precision),
            **SETTINGS,
        )  # fmt: skip
        summary, runs[precision] = train.main(cfg, Console(quiet=True))
        assert summary["precision"] == precision
    assert _losses(runs["fp16"]) == pytest.approx(_losses(runs["fp32"]), abs=2e-2)
    assert summary["fp16_skipped_steps"] == 0
    state = torch.load(next((runs["fp16"] / "checkpoints").glob("step-*")) / STATE_FILE, weights_only=False)
    assert state["scaler"]["scale"] > 0, "the gradient scaler's state is part of the checkpoint"
    # The adapter was trained in fp32 and is saved so.
    from safetensors.torch import load_file

    adapter = load_file(str(runs["fp16"] / "adapter" / "adapter_model.safetensors"))
    assert {t.dtype for t in adapter.values()} == {torch.float32}


def test_fp16_holds_frozen_linears_in_fp16_and_trained_weights_in_fp32(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS[:4]))
    cfg = TrainConfig(data=str(data), precision="fp16", output=str(tmp_path / "run"), **SETTINGS)
    run = train.setup(cfg, Console(quiet=True))
    model = train.load_prepared_model(run)
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    frozen_linear = model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight
    assert trained == {torch.float32} and frozen_linear.dtype == torch.float16
    assert model.base_model.model.model.embed_tokens.weight.dtype == torch.float32  # not autocast: kept


def test_an_overflowed_step_is_skipped_and_the_scale_lowered():
    param = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    (scaler.scale((param * torch.tensor([1.0, float("inf"), 1.0])).sum())).backward()
    assert World().step(param, optimizer, [param], 1.0, scaler) is True
    assert torch.equal(param.detach(), torch.ones(3)) and param.grad is None
    assert scaler.get_scale() == 2.0**15
    (scaler.scale(param.sum())).backward()
    assert World().step(param, optimizer, [param], 1.0, scaler) is False
    assert torch.allclose(param.detach(), torch.full((3,), 1 - 0.1 / 3**0.5)), "clipped to norm 1, unscaled"


def test_fp16_with_a_sharded_strategy_is_refused_before_loading():
    with pytest.raises(UserError, match=r"--precision fp16 with --strategy fsdp: .* use --strategy ddp"):
        check_strategy("fsdp", "lora", "fp16")
    check_strategy("ddp", "lora", "fp16")


def test_the_estimate_for_a_gpu_without_bf16_is_fp16():
    # Random-init weights below 1B are saved in fp32: fp32 training would keep fp32 activations.
    cfg = TrainConfig(model="qwen2.5-0.5b", init="random", method="lora", batch_size=2, max_length=1024)
    t4 = estimate(cfg, device="T4", probe=False)
    fp32 = estimate(cfg.model_copy(update={"precision": "fp32"}), device="T4", probe=False)
    assert t4.plan.fp16 and "fp16 autocast" in t4.to_json()["precision"]
    assert t4.estimate.activations < fp32.estimate.activations, "16-bit activations"
    # Full fine-tuning keeps fp32 master weights under fp16.
    real = cfg.model_copy(update={"method": "full", "model": "qwen2.5-1.5b-instruct", "init": "pretrained"})
    full = estimate(real, device="T4", probe=False)
    assert full.plan.weight_bytes == 4
