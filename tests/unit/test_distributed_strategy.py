"""`--strategy`: what each strategy costs per GPU in the estimate, and the refusals before any data or weights load."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lapidar.config import TrainConfig
from lapidar.errors import UserError
from lapidar.training.distributed import STRATEGIES, check_strategy, launcher_strategy
from lapidar.training.estimate import estimate

STRATEGY_FILES = Path(__file__).parents[2] / "src" / "lapidar" / "resources" / "strategies"


def _peak(strategy: str, gpus: int = 8) -> float:
    cfg = TrainConfig(model="qwen2.5-7b", method="full")
    return estimate(cfg, device="A100 80GB", gpus=gpus, strategy=strategy, probe=False).estimate.total


def test_sharding_lowers_the_per_gpu_peak_in_the_order_of_the_stages():
    ddp, zero2, zero3, fsdp, offload = (_peak(s) for s in ("ddp", "zero2", "zero3", "fsdp", "zero3-offload"))
    assert ddp > zero2 > zero3 > offload
    # FSDP2 shards like ZeRO-3 but steps the weights themselves: DeepSpeed keeps an fp32 master copy (4 bytes per
    # parameter, sharded over the 8 GPUs; the GPU overhead grows with what the GPU holds).
    from lapidar.training.estimate import model_shape
    from lapidar.training.memory import GPU_SLACK

    params = model_shape("qwen2.5-7b", "pretrained")[0].n_params
    assert zero3 - fsdp == pytest.approx(params * 4 / 8 * (1 + GPU_SLACK), rel=1e-3)
    # One GPU shards nothing.
    assert _peak("zero3", gpus=1) == _peak("ddp", gpus=1)


def test_estimate_refuses_a_strategy_that_contradicts_zero():
    with pytest.raises(UserError, match="disagree"):
        estimate(TrainConfig(model="qwen2.5-7b"), device="A100 80GB", gpus=8, zero=2, strategy="zero3", probe=False)
    with pytest.raises(UserError, match="use one of ddp, fsdp"):
        estimate(TrainConfig(model="qwen2.5-7b"), device="A100 80GB", gpus=8, strategy="zero1", probe=False)


def test_estimate_cli_prints_the_strategy_in_json():
    out = subprocess.run(
        [sys.executable, "-m", "lapidar", "estimate", "--model", "qwen2.5-7b", "--method", "full",
         "--device", "A100 80GB", "--gpus", "8", "--strategy", "zero3-offload", "--json"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    report = json.loads(out)
    assert report["zero"] == 3 and report["offload"] is True


def test_zero_without_deepspeed_names_the_package_and_the_alternatives(monkeypatch):
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # as if it were not installed
    for strategy in ("zero2", "zero3", "zero3-offload"):
        with pytest.raises(UserError, match=r"DeepSpeed ZeRO, which needs the deepspeed package") as e:
            check_strategy(strategy)
        assert "pip install 'lapidar[deepspeed]'" in str(e.value) and "--strategy fsdp" in str(e.value)


def test_fsdp_runs_on_cpu_for_methods_whose_weights_can_be_sharded():
    for method in ("lora", "lora-plus", "dora", "full", "freeze"):
        check_strategy("fsdp", method)
    check_strategy("ddp", "qlora")
    for method, what in (("qlora", "4bit bitsandbytes base"), ("galore", "galore optimiser")):
        with pytest.raises(UserError, match=what) as e:
            check_strategy("zero3", method)
        assert f"--strategy ddp with --method {method}" in str(e.value)


def test_fsdp_processes_on_one_machine_are_estimated_by_their_shard():
    from rich.console import Console

    from lapidar.training.estimate import check_fits

    def peak(strategy: str, method: str) -> float:
        out = Console(file=io.StringIO(), width=300)
        cfg = TrainConfig(
            model="qwen2.5-1.5b", method=method, strategy=strategy, max_length=128, checkpoint_layers=0, force=True
        )
        check_fits(cfg, out, processes=2)
        return float(re.search(r"peak ([0-9.]+) GiB", out.file.getvalue()).group(1))

    # Full fine-tuning: weights, gradients and Adam states dominate, and each process holds half of them.
    assert peak("fsdp", "full") < 0.75 * peak("ddp", "full")
    assert peak("fsdp", "lora") < peak("ddp", "lora")


def test_train_refuses_before_reading_data(tmp_path):
    # The data file does not exist: the strategy is refused first, in one line, exit 2.
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "train", "--data", str(tmp_path / "absent.jsonl"), "--strategy", "fsdp",
         "--method", "qlora", "--nproc", "2", "--output", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: --method qlora with --strategy fsdp: a 4bit bitsandbytes base cannot be sharded" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_every_strategy_with_a_config_ships_one():
    for strategy in STRATEGIES:
        if strategy.startswith("zero"):
            config = json.loads((STRATEGY_FILES / f"{strategy}.json").read_text())
            assert config["zero_optimization"]["stage"] == int(strategy[4])
            assert ("offload_optimizer" in config["zero_optimization"]) == strategy.endswith("offload")
    assert "fsdp_version: 2" in (STRATEGY_FILES / "fsdp.yaml").read_text()


@pytest.mark.parametrize(
    ("env", "strategy"),
    [
        ({}, None),
        ({"ACCELERATE_USE_FSDP": "true"}, "fsdp"),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, "zero2"),
        ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, "zero3"),
        (
            {
                "ACCELERATE_USE_DEEPSPEED": "true",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "cpu",
                "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "none",
            },
            "zero3-offload",
        ),
    ],
)
def test_the_strategy_accelerate_launch_asked_for(env, strategy):
    assert launcher_strategy(env) == strategy


def test_a_deepspeed_config_file_decides_the_stage(tmp_path):
    shipped = STRATEGY_FILES / "zero3-offload.json"
    env = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(shipped)}
    assert launcher_strategy(env) == "zero3-offload"
    stage1 = tmp_path / "ds.json"
    stage1.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    with pytest.raises(UserError, match=r"ds.json asks for ZeRO stage 1; lapidar runs ZeRO-2, ZeRO-3"):
        launcher_strategy({**env, "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(stage1)})
    nvme = {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}
    with pytest.raises(UserError, match="with nvme offload"):
        launcher_strategy({**nvme, "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "nvme"})
    stage1.write_text("{not json")
    with pytest.raises(UserError, match="cannot read it as a DeepSpeed JSON config"):
        launcher_strategy({**env, "ACCELERATE_DEEPSPEED_CONFIG_FILE": str(stage1)})
