"""GPU-only checks: skipped without CUDA. Run them on a CUDA machine: python -m pytest tests/gpu."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from rich.console import Console

from lapidar.config import TrainConfig
from lapidar.recipes import train
from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_train_recipe import PAIRS

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("precision", ["auto", "fp16"])
@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_training_on_cuda_learns_and_reports_cuda_memory(method, precision, tmp_path):
    # auto: bf16 where the GPU has it, else fp16 with loss scaling (T4, V100); fp16 asked for on any GPU.
    if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed")
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    cfg = TrainConfig(
        data=str(data), val_data=str(data), method=method, max_steps=20, lr=2e-3, batch_size=5, eval_steps=10,
        precision=precision, output=str(tmp_path / "run"),
    )  # fmt: skip
    summary, _ = train.main(cfg, Console(quiet=True))
    assert summary["device"].startswith("cuda")
    fp16 = precision == "fp16" or not torch.cuda.is_bf16_supported()
    assert summary["precision"] == ("fp16" if fp16 else "bf16")
    assert not fp16 or summary["fp16_skipped_steps"] < 5
    assert summary["peak_cuda_memory_mib"] > 0
    assert summary["best_val_loss"] < summary["initial_val_loss"] - 3.0


@pytest.mark.parametrize("method", ["qlora", "qlora-8bit"])
def test_qlora_on_plain_transformers_directories_on_cuda(method, tmp_path, tiny_source):
    """Issue 13: QLoRA on user model directories of several shapes (the CPU version is in
    tests/recipes/test_model_dirs.py), here with bitsandbytes' CUDA kernels and the base placed on the GPU."""
    import json
    import math

    from tests.recipes.test_model_dirs import PAIRS as CLAIMS
    from tests.recipes.test_model_dirs import SHAPES, save_qwen_dir, train

    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed")
    data = write_jsonl(tmp_path / "claims.jsonl", qa_rows(CLAIMS))
    for name, *shape in SHAPES:
        model_dir = save_qwen_dir(tmp_path / name, tiny_source.path, *shape)
        out = tmp_path / f"run-{name}"
        proc = train(model_dir, data, out, method)
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        assert "Traceback" not in proc.stdout + proc.stderr
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        assert summary["device"].startswith("cuda"), name
        assert math.isfinite(summary["final_train_loss"]) and math.isfinite(summary["best_val_loss"]), name
        assert (out / "adapter" / "adapter_model.safetensors").is_file(), name


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_lora_matches_peft_on_cuda(autocast):
    # The CPU equivalence tests (tests/unit/test_fused_lora.py), on the GPU: same outputs and gradients as peft's
    # layer without dropout, and an unbiased dropout drawn from a CUDA generator.
    from peft import LoraConfig, get_peft_model
    from torch import nn

    from lapidar.methods.fused_lora import FusedLoraLinear

    outs = []
    for fused in (False, True):
        torch.manual_seed(0)
        cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["0"])
        if fused:
            cfg._register_custom_module({nn.Linear: FusedLoraLinear})
        model = get_peft_model(nn.Sequential(nn.Linear(64, 96)), cfg).cuda()
        for name, p in model.named_parameters():
            if "lora_B" in name:
                nn.init.normal_(p, std=0.3)
        x = torch.randn(4, 33, 64, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
        x.requires_grad_(True)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        with torch.autocast("cuda", dtype=dtype, enabled=autocast):
            y = model(x)
        y.float().pow(2).sum().backward()
        outs.append((y.float(), x.grad, [p.grad for p in model.parameters() if p.grad is not None]))
    tol = {"rtol": 3e-2, "atol": 3e-2} if autocast else {"rtol": 1e-4, "atol": 1e-4}
    torch.testing.assert_close(outs[1][0], outs[0][0], **tol)
    torch.testing.assert_close(outs[1][1], outs[0][1], **tol)
    for a, b in zip(outs[1][2], outs[0][2], strict=True):
        torch.testing.assert_close(a, b, **tol)
