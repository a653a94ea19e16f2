"""End to end through the real CLI: train tiny-qwen2.5 with LoRA, check every output file, reload, generate."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import qa_rows, write_jsonl

pytestmark = pytest.mark.recipe

PAIRS = [
    ("What is the deductible for auto glass?", "The auto glass deductible is $250 (§7.3)."),
    ("How long do I have to report a theft?", "Report a theft to the police within 48 hours (§9.1)."),
    ("Is flood damage covered?", "No. Flood damage is excluded (§5.2)."),
    ("How much is rental car coverage?", "Rental cars are covered at $40 per day for 30 days (§8.4)."),
    ("Can I appeal a denied claim?", "Yes. File a written appeal within 60 days (§12.1)."),
]


def lapidar(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"lapidar {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    data = write_jsonl(root / "qa.jsonl", qa_rows(PAIRS))
    run = root / "run"
    proc = lapidar(
        "train", "--model", "tiny-qwen2.5", "--data", str(data), "--val-data", str(data), "--max-steps", "60",
        "--lr", "2e-3", "--batch-size", "5", "--eval-steps", "20", "--output", str(run), "--seed", "7",
    )  # fmt: skip
    return run, proc


def test_run_directory_has_every_file(trained):
    run, proc = trained
    for name in ("config.yaml", "metrics.jsonl", "loss.png", "summary.json", "lapidar_run.json"):
        assert (run / name).is_file(), name
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "RANDOMLY INITIALISED" in proc.stdout


def test_metrics_and_summary(trained):
    run, _ = trained
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in rows if "train_loss" in r]
    val = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in val] == [0, 20, 40, 60]
    assert all({"step", "epoch", "train_loss", "lr", "tokens_per_s"} <= r.keys() for r in train)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["stop_reason"] == "reached max_steps"
    assert summary["tokens_seen"] > 0 and summary["peak_memory_mib"] > 0 and summary["wall_time_s"] > 0
    # Pinned numbers (fp32 on CPU, seed 7): random init starts near ln(151936) = 11.93 plus init noise.
    assert summary["initial_val_loss"] == pytest.approx(12.51, abs=0.05)
    assert summary["best_val_loss"] < 2.5
    assert summary["best_val_loss"] == pytest.approx(val[-1]["val_loss"], abs=1e-6) or summary["best_step"] < 60


def test_adapter_loads_with_plain_peft(trained):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run, _ = trained
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(cfg["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, str(run / "adapter"))
    out = model(input_ids=torch.tensor([[9707, 1879]]))
    assert out.logits.shape == (1, 2, 151936)


def test_generate_returns_trained_answer_and_stops(trained):
    run, _ = trained
    for question, answer in PAIRS[:3]:
        proc = lapidar("generate", str(run), "--prompt", question)
        assert proc.stdout.strip() == answer
        assert "not at end of answer" not in proc.stderr
        assert "RANDOMLY INITIALISED" in proc.stderr


def test_config_file_reruns_the_same_run(trained, tmp_path):
    run, _ = trained
    cfg = (run / "config.yaml").read_text()
    assert "max_steps: 60" in cfg and "lr: 0.002" in cfg


def test_early_stopping_fires_and_keeps_best(tmp_path):
    # Validation questions share nothing with the training answers: memorising the training set soon makes
    # validation loss rise, and early stopping must stop the run and keep the best checkpoint.
    train = write_jsonl(tmp_path / "train.jsonl", qa_rows(PAIRS[:3]))
    val = write_jsonl(
        tmp_path / "val.jsonl",
        qa_rows([("Who wrote Hamlet?", "William Shakespeare wrote it around 1600."), ("Capital of Peru?", "Lima.")]),
    )
    run = tmp_path / "run"
    lapidar(
        "train", "--data", str(train), "--val-data", str(val), "--max-steps", "200", "--lr", "5e-3",
        "--batch-size", "3", "--eval-steps", "5", "--patience", "2", "--output", str(run),
    )  # fmt: skip
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stop_reason"].startswith("early stopping")
    assert summary["steps"] < 200
    assert summary["steps"] == summary["best_step"] + 2 * 5
    assert summary["saved_from_step"] == summary["best_step"]
    assert summary["best_val_loss"] < summary["initial_val_loss"]


def test_chat_is_multi_turn_and_streams(trained):
    run, _ = trained
    # Two turns, then a fresh conversation: the model was trained on single-turn rows, so only answers asked
    # without history are expected verbatim; the second turn must still be answered (streamed, non-empty).
    script = f"{PAIRS[0][0]}\n{PAIRS[1][0]}\n/reset\n{PAIRS[2][0]}\n/exit\n"
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "chat", str(run)], input=script, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr
    out = " ".join(proc.stdout.split())
    assert "RANDOMLY INITIALISED" in out
    turns = out.split("model> ")[1:]
    assert len(turns) == 3 and all(t.split(" you>")[0].strip() for t in turns)
    assert turns[0].startswith(PAIRS[0][1]) and turns[2].startswith(PAIRS[2][1])
    assert "(conversation cleared)" in out


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path):
    import signal
    import time

    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lapidar", "train", "--data", str(data), "--val-data", str(data), "--max-steps", "400",
         "--eval-steps", "200", "--save-steps", "200", "--output", str(run)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 600
    while not (run / "metrics.jsonl").exists() or "train_loss" not in (run / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=300)
    assert "Interrupted: checkpoint saved" in " ".join(out.split())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["interrupted"] and summary["steps"] < 400
    assert (run / "checkpoints" / f"step-{summary['steps']:06d}" / "trainer_state.pt").is_file()
