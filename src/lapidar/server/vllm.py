"""`lapidar serve RUN --engine vllm`: vLLM's own OpenAI-compatible server on a run's weights.

lapidar does not wrap vLLM; it builds the command line vLLM documents (`vllm serve MODEL ...`) and runs it. A run
that trained the whole model serves its `model/` folder; an adapter run serves the base model with the adapter as a
LoRA module (`--enable-lora --lora-modules NAME=RUN/adapter`), so requests for NAME get the fine-tuned answers.
vLLM pins its own CUDA build of torch, so it usually lives in another environment: a `vllm` executable on PATH is
used first, then this interpreter's `vllm` package.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

from lapidar.errors import UserError
from lapidar.models.loading import RUN_FILE

__all__ = ["check_vllm", "vllm_command"]


def check_vllm(cuda: bool | None = None) -> list[str]:
    """The command that starts vLLM (`vllm` on PATH, else `python -m vllm.entrypoints.cli.main`); UserError naming
    what is missing where vLLM or a CUDA GPU is not there."""
    exe = shutil.which("vllm")
    launcher = [exe] if exe else None
    if launcher is None and importlib.util.find_spec("vllm") is not None:
        launcher = [sys.executable, "-m", "vllm.entrypoints.cli.main"]
    if cuda is None:
        # Without the package here, the GPU check is vLLM's own (it may run in an environment with CUDA torch).
        import torch

        cuda = torch.cuda.is_available() or exe is not None
    missing = [] if launcher else ["vLLM (no `vllm` executable on PATH, no vllm package in this Python)"]
    if not cuda:
        missing.append("a CUDA GPU (this machine has none)")
    if missing:
        raise UserError(
            f"--engine vllm needs {' and '.join(missing)}; vLLM pins its own CUDA build of torch, so install it in "
            "the GPU machine's own environment (python -m venv vllm-env && vllm-env/bin/pip install vllm) and put "
            "vllm-env/bin on PATH, or serve here with the built-in engine: lapidar serve RUN"
        )
    return launcher or []


def vllm_command(launcher: list[str], run_dir: Path, name: str, host: str, port: int, api_key: str | None) -> list[str]:
    """The argv that serves `run_dir` through vLLM as model `name` at host:port (api_key: required Bearer key)."""
    info_file = run_dir / RUN_FILE
    if not info_file.is_file():
        raise UserError(f"{run_dir}: --engine vllm serves a run directory (it has no {RUN_FILE})")
    info = json.loads(info_file.read_text())
    common = ["--host", host, "--port", str(port), *(["--api-key", api_key] if api_key else [])]
    if info.get("weights") == "model":
        return [*launcher, "serve", str((run_dir / "model").resolve()), "--served-model-name", name, *common]
    adapter = run_dir / "adapter"
    if info.get("new_tokens"):
        # The adapter's base has no rows for the new tokens; a merged folder carries them.
        raise UserError(
            f"{run_dir} added tokens ({', '.join(info['new_tokens'][:3])}...), which vLLM's LoRA modules cannot "
            f"carry; export the merged model first (lapidar export {run_dir} --format merged) and serve that folder "
            "with vllm serve"
        )
    rank = json.loads((adapter / "adapter_config.json").read_text()).get("r", 16)
    return [
        *launcher,
        "serve",
        info["base_model"],
        "--served-model-name",
        f"{name}-base",
        "--enable-lora",
        "--lora-modules",
        f"{name}={adapter.resolve()}",
        # vLLM reserves LoRA memory for this rank; it must be at least the adapter's.
        "--max-lora-rank",
        str(max(8, rank)),
        *common,
    ]
