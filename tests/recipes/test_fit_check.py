"""`lapidar train` refuses a run that clearly cannot fit this machine before loading any weights."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from lapidar.models.presets import get_preset
from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_train_recipe import PAIRS


def test_72b_full_finetune_is_refused_before_loading(tiny_source, tmp_path):
    # A model directory with Qwen2.5-72B's config and tokenizer but no weights: the refusal must come first.
    model_dir = tmp_path / "Qwen2.5-72B-Instruct"
    model_dir.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_source.path / name).exists():
            shutil.copy(tiny_source.path / name, model_dir / name)
    (model_dir / "config.json").write_text(json.dumps(get_preset("qwen2.5-72b-instruct").config_dict()))
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "train", "--model", str(model_dir), "--data", str(data), "--method", "full",
         "--output", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-1500:] + proc.stderr
    assert "--force" in proc.stderr and "Traceback" not in proc.stderr


def test_checkpointing_some_layers_trains_the_same_run(tmp_path):
    # --checkpoint-layers 1: the first decoder layer recomputes its activations; the losses are the same as without.
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    losses = []
    for layers in ("0", "1"):
        run = tmp_path / f"run-{layers}"
        proc = subprocess.run(
            [sys.executable, "-m", "lapidar", "train", "--model", "tiny-qwen2.5", "--data", str(data), "--max-steps",
             "12", "--lr", "2e-3", "--batch-size", "4", "--val-fraction", "0", "--log-steps", "1", "--checkpoint-layers", layers,
             "--output", str(run)],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout[-1500:] + proc.stderr
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["train_loss"] for r in rows if "train_loss" in r])
        assert "checkpoint_layers: " + layers in (run / "config.yaml").read_text()
    assert len(losses[0]) == 12 and losses[0] == losses[1]
    assert losses[0][-1] < losses[0][0]
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "estimate", "--model", "qwen2.5-0.5b", "--checkpoint-layers", "12",
         "--max-length", "1024", "--batch-size", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "checkpointing 12/24 layers" in proc.stdout
