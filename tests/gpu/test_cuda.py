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


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_training_on_cuda_learns_and_reports_cuda_memory(method, tmp_path):
    if method == "qlora" and importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes is not installed")
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    cfg = TrainConfig(
        data=str(data), val_data=str(data), method=method, max_steps=20, lr=2e-3, batch_size=5, eval_steps=10,
        output=str(tmp_path / "run"),
    )  # fmt: skip
    summary, _ = train.main(cfg, Console(quiet=True))
    assert summary["device"].startswith("cuda")
    assert summary["precision"] == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
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
