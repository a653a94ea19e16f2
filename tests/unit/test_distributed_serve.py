"""`lapidar serve RUN --engine vllm`: the vLLM command line built for a run, and the error where vLLM is missing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lapidar.errors import UserError
from lapidar.models.loading import RUN_FILE
from lapidar.server.vllm import check_vllm, vllm_command


def _run(tmp_path: Path, weights: str, new_tokens: list[str] | None = None) -> Path:
    run = tmp_path / "run"
    (run / weights).mkdir(parents=True)
    info = {"base_model": "/models/qwen2.5-7b", "weights": weights, "new_tokens": new_tokens or []}
    (run / RUN_FILE).write_text(json.dumps(info))
    if weights == "adapter":
        (run / "adapter" / "adapter_config.json").write_text(json.dumps({"r": 32}))
    return run


def test_adapter_run_serves_the_base_with_the_adapter_as_a_lora_module(tmp_path):
    run = _run(tmp_path, "adapter")
    argv = vllm_command(["vllm"], run, "claims", "127.0.0.1", 8001, None)
    assert argv[:3] == ["vllm", "serve", "/models/qwen2.5-7b"]
    assert argv[argv.index("--lora-modules") + 1] == f"claims={(run / 'adapter').resolve()}"
    assert "--enable-lora" in argv and argv[argv.index("--max-lora-rank") + 1] == "32"
    assert argv[-4:] == ["--host", "127.0.0.1", "--port", "8001"]


def test_full_run_serves_its_model_folder_with_the_key(tmp_path):
    run = _run(tmp_path, "model")
    argv = vllm_command(["vllm"], run, "claims", "0.0.0.0", 8000, "secret")
    assert argv[:3] == ["vllm", "serve", str((run / "model").resolve())]
    assert "--enable-lora" not in argv and argv[-2:] == ["--api-key", "secret"]


def test_added_tokens_need_the_merged_export(tmp_path):
    with pytest.raises(UserError, match=r"--format merged"):
        vllm_command(["vllm"], _run(tmp_path, "adapter", ["<claim>"]), "x", "127.0.0.1", 8000, None)


def test_missing_vllm_and_gpu_are_named(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError) as e:
        check_vllm(cuda=False)
    assert "needs vLLM" in str(e.value) and "a CUDA GPU" in str(e.value) and "lapidar serve RUN" in str(e.value)


def _cli(run: Path, path: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lapidar", "serve", str(run), "--engine", "vllm", "--port", "8011", *extra],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": path},
    )  # fmt: skip


def test_serve_runs_the_vllm_on_path_with_that_command_line(tmp_path):
    # A stand-in `vllm` executable (it records its argv) where a GPU machine has vLLM's own environment on PATH.
    bindir = tmp_path / "vllm-env" / "bin"
    bindir.mkdir(parents=True)
    (bindir / "vllm").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/argv\nexit 3\n')
    (bindir / "vllm").chmod(0o755)
    run = _run(tmp_path, "adapter")
    proc = _cli(run, f"{bindir}:{os.environ['PATH']}", "--model-name", "claims", "--api-key", "k3y")
    assert proc.returncode == 3, "vLLM's exit status is lapidar's"
    assert (tmp_path / "argv").read_text().split("\n")[:2] == ["serve", "/models/qwen2.5-7b"]
    assert "--api-key\nk3y" in (tmp_path / "argv").read_text() and "k3y" not in proc.stdout


def test_serve_without_vllm_fails_in_one_line(tmp_path):
    proc = _cli(_run(tmp_path, "adapter"), os.path.dirname(sys.executable))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --engine vllm needs vLLM")
