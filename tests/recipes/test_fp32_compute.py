"""A run that computes in fp32 computes in fp32, whatever dtype the checkpoint was saved in.

Qwen2.5 checkpoints are saved in bf16. On a CPU without native bf16 (`--precision auto` picks fp32 there: emulated
bf16 runs several times slower) or with `--precision fp32`, such a checkpoint used to train in pure bf16, labelled
"fp32". Now everything is held in fp32 (an exact upcast), except the frozen base weights under the fused LoRA
layers: they stay in bf16 in memory (half the bytes) and are upcast one projection at a time. So the run trains
what the same weights saved in fp32 train, to float precision.
"""

from __future__ import annotations

import json

import pytest
import torch
from rich.console import Console

from lapidar.config import TrainConfig
from lapidar.recipes import train
from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_model_dirs import save_qwen_dir
from tests.recipes.test_train_recipe import PAIRS

pytestmark = pytest.mark.recipe

SETTINGS = {"max_steps": 4, "batch_size": 2, "max_length": 96, "lr": 2e-3, "seed": 3, "log_steps": 1}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_source):
    """The same random weights saved in bf16 and, upcast (exactly), in fp32."""
    root = tmp_path_factory.mktemp("ckpt")
    bf16 = save_qwen_dir(root / "bf16", tiny_source.path, 2, 64, 4, 2, True, True, torch.bfloat16)
    fp32 = save_qwen_dir(root / "fp32", tiny_source.path, 2, 64, 4, 2, True, True, torch.bfloat16)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(str(fp32), dtype=torch.float32).save_pretrained(str(fp32))
    assert json.loads((fp32 / "config.json").read_text())["dtype"] == "float32"
    return {"bf16": bf16, "fp32": fp32}


def _losses(run) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if "train_loss" in r]


@pytest.mark.parametrize("method", ["lora", "dora", "full"])
def test_a_bf16_checkpoint_trains_in_fp32_what_its_fp32_copy_trains(method, checkpoints, tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS[:8]))
    losses = {}
    for saved, path in checkpoints.items():
        cfg = TrainConfig(
            model=str(path), data=str(data), val_fraction=0.0, precision="fp32", method=method,
            output=str(tmp_path / saved), **SETTINGS,
        )  # fmt: skip
        summary, run = train.main(cfg, Console(quiet=True))
        assert summary["precision"] == "fp32"
        losses[saved] = _losses(run)
    # Pure bf16 compute differs from fp32 by up to 2e-3 on this model; an exact upcast by float rounding only.
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=2e-6)


def test_the_frozen_lora_bases_stay_bf16_and_everything_else_is_fp32(checkpoints, tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS[:4]))
    cfg = TrainConfig(model=str(checkpoints["bf16"]), data=str(data), precision="fp32", target_modules=["attention"],
                      output=str(tmp_path / "run"), **SETTINGS)  # fmt: skip
    run = train.setup(cfg, Console(quiet=True))
    model = train.load_prepared_model(run)
    layer = model.base_model.model.model.layers[0]
    assert layer.self_attn.q_proj.base_layer.weight.dtype == torch.bfloat16  # under the fused LoRA layer
    assert layer.mlp.gate_proj.weight.dtype == torch.float32  # not targeted: a plain linear computes in fp32
    rest = [p for n, p in model.named_parameters() if ".base_layer." not in n]
    assert {p.dtype for p in rest} == {torch.float32}
    assert any("computes in fp32" in note and "bf16" in note for note in run.notes), run.notes


def test_the_estimate_counts_the_fp32_upcast_and_the_bf16_bases():
    from lapidar.models.presets import get_preset
    from lapidar.training.memory import ModelShape, Plan, estimate_memory

    shape = ModelShape.from_preset(get_preset("qwen2.5-0.5b"))
    common = {"shape": shape, "method": "lora", "device": "cpu", "batch_size": 2, "seq_len": 256}
    fp32_ckpt = estimate_memory(Plan(weight_bytes=4, bf16=False, **common))
    bf16_ckpt = estimate_memory(Plan(weight_bytes=2, bf16=False, **common))
    linear = shape.layers * shape.layer_linear_params
    # The same fp32 compute (activations, logits) over weights whose decoder linears are held in 2 bytes, not 4.
    assert bf16_ckpt.weights == pytest.approx(fp32_ckpt.weights - 2 * linear)
    assert bf16_ckpt.activations == pytest.approx(fp32_ckpt.activations)
    assert bf16_ckpt.logits == pytest.approx(fp32_ckpt.logits)
    full = estimate_memory(Plan(weight_bytes=2, bf16=False, **{**common, "method": "full"}))
    assert full.weights == pytest.approx(shape.n_params * 4)  # trained in fp32: weights, gradients, states
