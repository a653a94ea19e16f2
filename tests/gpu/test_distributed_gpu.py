"""Several GPUs, through the real CLI: DDP and QLoRA + DDP on every visible GPU, --strategy fsdp/zero2/zero3/
zero3-offload against DDP, and `serve --engine vllm`. Skipped without CUDA."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

pytestmark = [
    pytest.mark.recipe,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA GPUs"),
]

GPUS = torch.cuda.device_count() if torch.cuda.is_available() else 0
STEPS = ["--data", "example:claims", "--max-steps", "6", "--batch-size", "2", "--log-steps", "1", "--lr", "2e-3"]


def train(tmp_path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "train", *STEPS, "--nproc", str(max(GPUS, 1)), *args, "--output", str(run)],
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
    return proc, summary


@pytest.mark.skipif(GPUS < 1, reason="needs a GPU")
@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_ddp_on_every_gpu(tmp_path, method):
    proc, summary = train(tmp_path, "--method", method)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert summary["processes"] == max(GPUS, 1) and summary["steps"] == 6
    print(f"{method} x{GPUS}: {summary['tokens_per_s']} tok/s, peak {summary.get('peak_cuda_memory_mib')} MiB")


@pytest.mark.skipif(GPUS < 2, reason="sharding needs 2 GPUs (NCCL runs one process per GPU)")
@pytest.mark.parametrize("strategy", ["fsdp", "zero2", "zero3", "zero3-offload"])
@pytest.mark.parametrize("method", ["lora", "full"])
def test_sharded_strategies_train_what_ddp_trains(tmp_path, strategy, method):
    if strategy.startswith("zero"):
        pytest.importorskip("deepspeed")
    ddp, ddp_summary = train(tmp_path / "ddp", "--method", method, "--lora-dropout", "0")
    proc, summary = train(tmp_path / strategy, "--method", method, "--lora-dropout", "0", "--strategy", strategy)
    assert ddp.returncode == 0 and proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    losses = [json.loads(line).get("train_loss") for line in (tmp_path / strategy / "run" / "metrics.jsonl").open()]
    ddp_losses = [json.loads(line).get("train_loss") for line in (tmp_path / "ddp" / "run" / "metrics.jsonl").open()]
    first = next(x for x in losses if x is not None)
    assert first == pytest.approx(next(x for x in ddp_losses if x is not None), abs=2e-2)  # bf16 on GPUs
    print(
        f"{strategy} {method} x{GPUS}: {summary['tokens_per_s']} tok/s, peak {summary.get('peak_cuda_memory_mib')} "
        f"MiB per GPU (ddp: {ddp_summary['tokens_per_s']} tok/s, {ddp_summary.get('peak_cuda_memory_mib')} MiB)"
    )


@pytest.mark.skipif(shutil.which("vllm") is None, reason="vllm not on PATH")
def test_serve_with_vllm_answers(tmp_path):
    import time
    import urllib.request

    proc, _ = train(tmp_path, "--method", "full", "--model", os.environ.get("LAPIDAR_GPU_MODEL", "qwen2.5-0.5b"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    server = subprocess.Popen([sys.executable, "-m", "lapidar", "serve", str(tmp_path / "run"), "--engine", "vllm",
                               "--port", "8019", "--model-name", "claims"])  # fmt: skip
    try:
        deadline = time.time() + 600
        while time.time() < deadline:
            try:
                models = json.load(urllib.request.urlopen("http://127.0.0.1:8019/v1/models", timeout=5))
                break
            except OSError:
                assert server.poll() is None, "vLLM exited"
                time.sleep(5)
        assert [m["id"] for m in models["data"]] == ["claims"]
    finally:
        server.terminate()
        server.wait(timeout=60)
