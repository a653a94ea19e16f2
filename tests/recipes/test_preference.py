"""DPO and KTO end to end on tiny-qwen2.5: through the real CLI, then the held-out preference must have moved.

The fixtures in tests/fixtures/preference/ hold 12 training and 4 held-out prompts; the preferred answers share one
style ("Sure! The answer is X. I hope this helps.") and the rejected ones another ("idk lol"), with different wording
in the held-out rows, so what DPO/KTO learn shows up on prompts and answers they never saw.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import FIXTURES

pytestmark = pytest.mark.recipe

DATA = FIXTURES / "preference"
# One thread: on a shared 2-core machine two OpenMP threads that wait on each other are many times slower, and one
# thread keeps the pinned numbers independent of the core count.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def lapidar(*args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=600, env=ENV
    )
    if proc.returncode != 0:
        raise AssertionError(f"lapidar {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def train(out, data: str, *extra: str) -> tuple[dict, list[dict], str]:
    proc = lapidar(
        "train", "--model", "tiny-qwen2.5", "--data", str(DATA / f"{data}_train.jsonl"),
        "--val-data", str(DATA / f"{data}_val.jsonl"), "--lr", "2e-3", "--batch-size", "4", "--output", str(out),
        "--seed", "7", *extra,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return summary, metrics, " ".join(proc.stdout.split())  # rich wraps lines at 80 columns


@pytest.fixture(scope="module")
def dpo(tmp_path_factory):
    out = tmp_path_factory.mktemp("dpo") / "run"
    return (out, *train(out, "pairs", "--objective", "dpo", "--max-steps", "12", "--eval-steps", "6"))


@pytest.fixture(scope="module")
def kto(tmp_path_factory):
    # --objective auto: thumbs-up/down rows imply KTO.
    out = tmp_path_factory.mktemp("kto") / "run"
    return (out, *train(out, "feedback", "--objective", "auto", "--max-steps", "12", "--eval-steps", "6"))


def test_dpo_run_directory_metrics_and_summary(dpo):
    out, summary, metrics, proc = dpo
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "summary.json", "lapidar_run.json"):
        assert (out / name).is_file(), name
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "adapter" / "tokenizer.json").is_file()
    assert "reference: the base model (adapter off)" in proc
    train_rows = [r for r in metrics if "train_loss" in r]
    val = [r for r in metrics if "val_loss" in r]
    assert [r["step"] for r in val] == [0, 6, 12]
    stats = {"rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy", "logp_chosen", "logp_rejected"}
    assert all({"step", "epoch", "train_loss", "lr", "tokens_per_s", *stats} <= r.keys() for r in train_rows)
    assert all({f"val_{k}" for k in stats} <= r.keys() for r in val)
    assert summary["objective"] == "dpo" and summary["saved_weights"] == "adapter"
    assert summary["train_rows"] == 12 and summary["val_rows"] == 4 and summary["steps"] == 12
    assert summary["best_step"] == summary["saved_from_step"] == 12
    assert summary["tokens_seen"] > 0 and summary["peak_memory_mib"] > 0 and summary["precision"] == "fp32"


def test_dpo_prefers_the_chosen_style_on_held_out_pairs(dpo):
    _, summary, metrics, _ = dpo
    val = [r for r in metrics if "val_loss" in r]
    first, last = val[0], val[-1]
    # Before the first step the policy is the reference: every reward is 0 and the loss is ln 2.
    assert first["val_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert first["val_reward_margin"] == 0 and first["val_reward_accuracy"] == 0
    # After 12 steps every held-out pair ranks the chosen answer first, by a wide margin.
    assert last["val_reward_accuracy"] == 1.0
    assert last["val_reward_margin"] > 2.0 and last["val_loss"] < 0.1
    # ... because log π(chosen) rose relative to log π(rejected): margin / β in nats.
    gap = (last["val_logp_chosen"] - last["val_logp_rejected"]) - (
        first["val_logp_chosen"] - first["val_logp_rejected"]
    )
    assert gap == pytest.approx(last["val_reward_margin"] / 0.1, rel=1e-4)
    assert summary["initial_val_reward_margin"] == 0 and summary["final_val_reward_accuracy"] == 1.0
    # Pinned (fp32, one thread, seed 7).
    assert last["val_reward_margin"] == pytest.approx(PINNED["dpo_margin"], rel=0.1)


def test_kto_raises_desirable_over_undesirable_on_held_out_rows(kto):
    out, summary, metrics, proc = kto
    assert summary["objective"] == "kto" and "objective kto (chosen because" in proc
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    val = [r for r in metrics if "val_loss" in r]
    first, last = val[0], val[-1]
    # Policy = reference and KL = 0: each row costs 1 - σ(0) = 0.5.
    assert first["val_loss"] == pytest.approx(0.5, abs=1e-6) and first["val_reward_margin"] == 0
    assert all("kl" in r for r in metrics if "train_loss" in r) and "val_kl" in last
    # Log-probability of 👍 completions rose relative to 👎 ones, on prompts never trained on.
    gap = (last["val_logp_chosen"] - last["val_logp_rejected"]) - (
        first["val_logp_chosen"] - first["val_logp_rejected"]
    )
    assert gap > 10.0
    assert last["val_reward_margin"] > 1.0 and last["val_reward_accuracy"] >= 0.75
    assert last["val_loss"] < first["val_loss"] - 0.1
    assert last["val_reward_margin"] == pytest.approx(PINNED["kto_margin"], rel=0.1)


def test_full_fine_tuning_uses_a_frozen_copy_as_reference(tmp_path):
    # In process (the same `main` the CLI calls) to spare a second interpreter start-up.
    from rich.console import Console

    from lapidar.config import TrainConfig
    from lapidar.recipes.train import main

    torch.set_num_threads(1)
    out = tmp_path / "run"
    cfg = TrainConfig(
        data=str(DATA / "pairs_train.jsonl"), val_data=str(DATA / "pairs_val.jsonl"), objective="dpo",
        method="full", output=str(out), max_steps=4, eval_steps=4, lr=1e-4, batch_size=4, seed=7,
    )  # fmt: skip
    console = Console(file=io.StringIO(), width=200)
    summary, _ = main(cfg, console)
    assert "reference: a frozen copy of the initial weights" in console.file.getvalue()
    assert summary["saved_weights"] == "model" and (out / "model" / "model.safetensors").is_file()
    val = [r for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "val_loss" in r]
    assert val[0]["val_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert val[-1]["val_reward_margin"] > 0.5 and val[-1]["val_loss"] < 0.5


def test_nan_loss_names_the_step_and_suggests_a_lower_lr(tmp_path):
    from rich.console import Console

    from lapidar.config import TrainConfig
    from lapidar.errors import UserError
    from lapidar.recipes.train import load_prepared_model, setup
    from lapidar.training.loop import fit

    cfg = TrainConfig(
        data=str(DATA / "pairs_train.jsonl"), objective="dpo", output=str(tmp_path / "run"), max_steps=3, lr=0.5
    )
    torch.set_num_threads(1)
    console = Console(file=io.StringIO())
    run = setup(cfg, console)
    model = load_prepared_model(run)
    with torch.no_grad():  # a broken adapter: every log-prob it touches is NaN
        next(p for n, p in model.named_parameters() if "lora_A" in n).fill_(float("nan"))
    with pytest.raises(UserError, match=r"step 1\b.*lower --lr \(now 0.5\)"):
        fit(run, model)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stop_reason"].startswith("diverged")


PINNED = {"dpo_margin": 5.35, "kto_margin": 5.61}
