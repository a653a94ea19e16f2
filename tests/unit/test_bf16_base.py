"""Frozen decoder linear weights held in bf16 under bf16 autocast: the same losses and gradients as fp32 weights,
fewer bytes (methods.frozen_linears_to_bf16), and the memory estimate follows."""

from __future__ import annotations

import os

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors import safe_open
from safetensors.torch import save_file

from lapidar.methods import METHODS, frozen_linears_to_bf16
from lapidar.models.loading import load_model, resolve_model
from lapidar.models.presets import get_preset
from lapidar.training.hardware import release_mapped_pages
from lapidar.training.loss import causal_lm_loss
from lapidar.training.memory import ModelShape, Plan, estimate_memory, weight_bytes


def _lora_model():
    torch.manual_seed(0)
    model = get_peft_model(
        load_model(resolve_model("tiny-qwen2.5", "random")),
        LoraConfig(r=8, target_modules="all-linear", lora_dropout=0.1),
    )
    for name, p in model.named_parameters():  # B starts at zero: make the gradients of A non-trivial
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    return model


def _train(model, steps: int = 3) -> tuple[list[float], dict[str, torch.Tensor]]:
    torch.manual_seed(1)  # the same dropout masks in both runs
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(100, 5000, (2, 48), generator=g)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-2)
    losses, grads = [], {}
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, n = causal_lm_loss(model, batch)
        (loss / n).backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses, grads


def test_bf16_frozen_linears_give_bit_identical_losses_and_gradients():
    reference = _train(_lora_model())
    model = _lora_model()
    changed = frozen_linears_to_bf16(model)
    base = model.get_base_model()
    layer = base.model.layers[0]
    assert changed == sum(
        m.base_layer.weight.numel() + (m.base_layer.bias.numel() if m.base_layer.bias is not None else 0)
        for layer_ in base.model.layers
        for m in layer_.modules()
        if hasattr(m, "base_layer")
    )
    assert layer.self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16
    assert layer.self_attn.q_proj.base_layer.bias.dtype == torch.bfloat16
    assert layer.mlp.down_proj.base_layer.weight.dtype == torch.bfloat16
    # What autocast does not cast keeps its dtype, and what trains stays fp32.
    assert base.model.embed_tokens.weight.dtype == torch.float32
    assert layer.input_layernorm.weight.dtype == torch.float32
    assert base.model.norm.weight.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    losses, grads = _train(model)
    assert losses == reference[0]
    assert grads.keys() == reference[1].keys()
    for name, grad in grads.items():
        assert torch.equal(grad, reference[1][name]), name


def test_only_exact_methods_hold_the_base_in_bf16():
    allowed = {name for name, m in METHODS.items() if m.bf16_frozen_base}
    assert allowed == {"lora", "lora-plus", "rslora", "pissa", "olora"}
    # DoRA renormalises the combined weight, QLoRA's base is quantised, full/freeze/galore train the base.
    assert not {"dora", "qlora", "full", "freeze", "galore"} & allowed


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_estimate_counts_bf16_linear_weights_under_autocast(method):
    shape = ModelShape.from_preset(get_preset("qwen2.5-0.5b"))
    linear = shape.layers * shape.layer_linear_params
    plan = Plan(shape, method=method, weight_bytes=4, bf16=True, device="cpu", seq_len=256)
    fp32 = plan.with_(bf16=False)
    if method == "lora":
        assert weight_bytes(plan) == shape.n_params * 4 - 2 * linear
        # No autocast copies of the weights are saved for the backward pass either.
        assert estimate_memory(plan).activations < estimate_memory(plan.with_(method="dora")).activations
    else:
        assert weight_bytes(plan) == weight_bytes(fp32) == shape.n_params * 4


def _rss_file_mib() -> float:
    status = open("/proc/self/status").read()  # noqa: SIM115
    return int(next(line for line in status.splitlines() if line.startswith("RssFile:")).split()[1]) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="Linux only")
def test_released_file_pages_leave_the_resident_set_and_no_live_value_changes(tmp_path):
    # Three 16 MiB tensors back to back in one mmapped safetensors file, plus a small one sharing their pages.
    g = torch.Generator().manual_seed(0)
    saved = {f"w{i}": torch.randn(1024, 4096, generator=g) for i in range(3)} | {"tiny": torch.randn(3)}
    save_file(saved, tmp_path / "model.safetensors")
    with safe_open(tmp_path / "model.safetensors", framework="pt") as f:
        loaded = {k: f.get_tensor(k) for k in saved}
    before = _rss_file_mib()
    copies = {k: t.to(torch.bfloat16) for k, t in loaded.items()}  # reads every page of the file
    assert _rss_file_mib() - before > 40
    live = [loaded["w1"], loaded["tiny"]]  # still in use: must keep their values
    released = release_mapped_pages([loaded["w0"], loaded["w2"]], live)
    assert 2 * 15 * 2**20 < released <= 2 * 16 * 2**20
    assert _rss_file_mib() - before < 25
    for k, t in loaded.items():  # the dropped ones read back from the file, the live ones never moved
        assert torch.equal(t, saved[k]), k
        assert torch.equal(copies[k], saved[k].to(torch.bfloat16)), k
    # Anonymous memory is never touched.
    anon = torch.randn(1024, 4096, generator=g)
    assert release_mapped_pages([anon], []) == 0


def test_bf16_cast_of_a_mapped_checkpoint_keeps_every_value(tmp_path):
    model = load_model(resolve_model("tiny-qwen2.5", "random"))
    for p in model.parameters():
        p.requires_grad_(False)
    fp32 = {k: v.clone() for k, v in model.state_dict().items()}
    frozen_linears_to_bf16(model)
    for k, v in model.state_dict().items():
        assert torch.equal(v, fp32[k].to(v.dtype)), k
