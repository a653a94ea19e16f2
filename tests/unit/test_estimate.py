"""`lapidar estimate`: the memory model agrees with what people report for well-known setups, and its parts move
the way they should."""

from __future__ import annotations

import pytest

from lapidar.config import TrainConfig
from lapidar.errors import UserError
from lapidar.models.presets import get_preset
from lapidar.training.estimate import NO_FIT, estimate, fixes, verdict
from lapidar.training.hardware import GPUS, find_gpu, parse_memory
from lapidar.training.loss import FUSED_CHUNK
from lapidar.training.memory import GiB, ModelShape, Plan, estimate_memory, logits_bytes, lora_params


def _run(device: str, gpus: int = 1, zero: int = 0, **fields) -> str:
    return estimate(TrainConfig(**fields), device=device, gpus=gpus, zero=zero, probe=False).verdict


# ---------------------------------------------------------------- classic verdicts


def test_7b_qlora_fits_a_16gb_t4():
    # The QLoRA paper's and the usual Colab setup: 4-bit base, checkpointing, one row of 1024 tokens.
    fields = {"model": "qwen2.5-7b-instruct", "method": "qlora", "batch_size": 1, "max_length": 1024}
    assert _run("T4", gradient_checkpointing=True, **fields) == "fits"


def test_7b_full_fine_tune_does_not_fit_a_24gb_4090():
    assert _run("RTX 4090", model="qwen2.5-7b-instruct", method="full") == NO_FIT
    # Not even with the smallest batch and checkpointing: weights + gradients + AdamW states alone exceed 24 GB.
    assert (
        _run("RTX 4090", model="qwen2.5-7b-instruct", method="full", batch_size=1, max_length=512,
             gradient_checkpointing=True)
        == NO_FIT
    )  # fmt: skip


def test_72b_lora_bf16_fits_8x80gb_with_zero3():
    fields = {"model": "qwen2.5-72b-instruct", "method": "lora", "batch_size": 1, "max_length": 2048}
    assert _run("H100 80GB", gpus=8, zero=3, gradient_checkpointing=True, **fields) == "fits"


def test_72b_lora_does_not_fit_one_80gb_gpu():
    fields = {"model": "qwen2.5-72b-instruct", "method": "lora", "batch_size": 1, "max_length": 512}
    assert _run("A100 80GB", gradient_checkpointing=True, **fields) == NO_FIT


# ---------------------------------------------------------------- the model's parts


def _plan(**changes) -> Plan:
    return Plan(shape=ModelShape.from_preset(get_preset("qwen2.5-7b-instruct")), **changes)


def test_shape_counts_parameters_like_the_presets():
    for name in ("tiny-qwen2.5", "qwen2.5-0.5b", "qwen2.5-7b", "qwen2.5-72b"):
        preset = get_preset(name)
        assert ModelShape.from_preset(preset).n_params == preset.n_params


def test_lora_params_of_7b_all_linear_r16():
    # peft reports 40,370,176 trainable parameters for Qwen2.5-7B, r=16 on all seven projections.
    shape = ModelShape.from_preset(get_preset("qwen2.5-7b"))
    assert lora_params(shape, 16, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")) == (
        40_370_176
    )


def test_levers_lower_the_peak():
    base = estimate_memory(_plan(method="lora", batch_size=4, seq_len=2048)).total
    assert estimate_memory(_plan(method="lora", batch_size=4, seq_len=2048, gradient_checkpointing=True)).total < base
    assert estimate_memory(_plan(method="lora", batch_size=1, seq_len=2048, grad_accum=4)).total < base
    assert estimate_memory(_plan(method="qlora", batch_size=4, seq_len=2048)).weights < 0.6 * (
        estimate_memory(_plan(method="lora", batch_size=4, seq_len=2048)).weights
    )
    assert estimate_memory(_plan(method="lora", batch_size=4, seq_len=1024)).total < base


def test_full_fine_tune_needs_weights_gradients_and_two_adam_states():
    est = estimate_memory(_plan(method="full", batch_size=1, seq_len=256, gradient_checkpointing=True))
    n = est.trainable_params
    assert est.optimizer == pytest.approx(2 * n * 2)  # bf16 parameters: torch keeps AdamW states in bf16
    assert est.weights == pytest.approx(n * 2)
    assert est.total > 4 * n * 2


def test_zero3_shards_weights_over_gpus():
    one = estimate_memory(_plan(method="full", batch_size=1, seq_len=512, gradient_checkpointing=True))
    eight = estimate_memory(
        _plan(method="full", batch_size=1, seq_len=512, gradient_checkpointing=True, gpus=8, zero=3)
    )
    assert eight.weights < one.weights / 4
    assert eight.optimizer == pytest.approx(one.optimizer / 8)


def test_logits_memory_is_one_chunk_of_label_positions():
    # The fused loss keeps one [FUSED_CHUNK, V] fp32 buffer however long the rows are (plus bf16 copies under
    # autocast).
    short = logits_bytes(_plan(method="lora", batch_size=1, seq_len=128, bf16=False, weight_bytes=4))
    long = logits_bytes(_plan(method="lora", batch_size=8, seq_len=4096, bf16=False, weight_bytes=4))
    assert FUSED_CHUNK == 256
    assert short == 128 * 152064 * 4
    assert long == FUSED_CHUNK * 152064 * 4


def test_fixes_fit_and_say_what_to_change():
    plan = _plan(method="lora", batch_size=8, seq_len=4096, device="cuda")
    found = fixes(plan, 24 * GiB)
    assert found
    for fix in found:
        assert fix.estimate.total <= 24 * GiB
        assert fix.change.startswith("--")


def test_verdict_band():
    assert verdict(80, 100) == "fits"
    assert verdict(100, 100) == "tight"
    assert verdict(120, 100) == NO_FIT


# ---------------------------------------------------------------- devices


def test_gpu_table_and_lookup():
    for name in ("T4", "RTX 3090", "RTX 4090", "L4", "A10", "A100 40GB", "A100 80GB", "H100 80GB", "H200"):
        assert name in GPUS
    assert find_gpu("rtx4090").name == "RTX 4090"
    assert find_gpu("NVIDIA A100-80GB").name == "A100 80GB"
    assert find_gpu("h100").memory > 79 * GiB
    assert not find_gpu("T4").bf16
    with pytest.raises(UserError, match="known:"):
        find_gpu("Voodoo 5")


def test_parse_memory():
    assert parse_memory("24GB") == 24 * GiB
    assert parse_memory("80 GiB") == 80 * GiB
    assert parse_memory("16000MB") == 16000 * 2**20
    with pytest.raises(UserError):
        parse_memory("lots")


def test_a_named_preset_directory_that_is_not_here_uses_the_preset_shape():
    report = estimate(TrainConfig(model="/models/Qwen2.5-7B-Instruct", method="qlora"), device="A100 80GB", probe=False)
    assert report.plan.shape.hidden == 3584


# ---------------------------------------------------------------- the check before training


def test_check_fits_refuses_a_run_that_clearly_cannot_fit_here():
    from rich.console import Console

    from lapidar.training.estimate import check_fits

    console = Console(record=True, width=200)
    with pytest.raises(UserError, match=r"needs about .* --force"):
        check_fits(TrainConfig(model="qwen2.5-72b-instruct", method="full"), console)
    check_fits(TrainConfig(model="tiny-qwen2.5", max_length=128, batch_size=1), console)
    assert "fits" in console.export_text()


def test_estimate_command_prints_json():
    import json

    from typer.testing import CliRunner

    from lapidar.cli import app

    args = ["estimate", "--model", "qwen2.5-7b-instruct", "--method", "qlora", "--device", "T4", "--batch-size", "1"]
    result = CliRunner().invoke(app, [*args, "--max-length", "1024", "--gradient-checkpointing", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["verdict"] == "fits"
    assert set(report["breakdown_gib"]) == {
        "weights",
        "trainable parameters",
        "gradients",
        "optimizer states",
        "activations",
        "logits / loss",
        "framework overhead",
    }
    assert report["quant"] == "4bit" and report["precision"] == "fp16 autocast, loss scaling"  # T4: no bf16


def test_flops_per_token_follow_the_6n_and_4n_rules():
    from lapidar.training.memory import flops_per_token

    plan = _plan(seq_len=128, bf16=True)
    n = plan.shape.n_params
    # The input embedding is a lookup (no FLOPs), hence a little under 6N and 4N.
    assert 5.2 * n < flops_per_token(plan.with_(method="full")) < 6.2 * n  # forward 2N, backward 4N
    lora = flops_per_token(plan.with_(method="lora"))
    assert 3.5 * n < lora < 4.2 * n  # frozen weights: no weight gradients
    assert flops_per_token(plan.with_(method="lora", gradient_checkpointing=True)) > 1.2 * lora
    # Only label positions reach the lm_head.
    assert flops_per_token(plan.with_(method="lora"), label_fraction=0.5) < lora


def test_processes_on_one_cpu_machine_share_its_memory():
    # Each training process holds a whole model copy: N processes on one machine's RAM get 1/N of it each.
    import io
    import math

    from rich.console import Console

    from lapidar.training.estimate import check_fits

    cfg = TrainConfig(model="tiny-qwen2.5", method="full")
    report = estimate(cfg, probe=False, read_data=False)
    assert report.verdict != NO_FIT
    out = io.StringIO()
    check_fits(cfg, Console(file=out), processes=1)
    assert "to each of" not in out.getvalue()
    many = math.ceil(report.capacity / report.estimate.total * 1.3) + 1
    with pytest.raises(UserError, match=rf"available to each of {many} processes|has .* to each of {many} processes"):
        check_fits(cfg, Console(file=io.StringIO()), processes=many)
