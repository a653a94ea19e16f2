"""Continued pretraining on raw text: documents packed into blocks, loss on every token, held-out loss falls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.recipe

DOCS = [
    "Harbor Mutual adjusters inspect water damage within three business days of the first report.",
    "A burst pipe is sudden and accidental; slow seepage over weeks is wear and tear and is excluded.",
    "Theft claims need a police report filed within forty-eight hours of discovering the loss.",
    "Rental cars are reimbursed at forty dollars a day for at most thirty days while the car is repaired.",
    "The glass deductible is two hundred and fifty dollars unless the windshield is repaired instead of replaced.",
    "Appeals go to the claims review board in writing within sixty days of the decision letter.",
]


def test_pretrain_on_text_file_lowers_held_out_loss(tmp_path):
    train = tmp_path / "notes.txt"
    train.write_text("\n\n".join(DOCS * 3) + "\n", encoding="utf-8")
    val = tmp_path / "held_out.txt"
    val.write_text("\n\n".join(DOCS[:2]) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "train", "--data", str(train), "--val-data", str(val), "--max-steps", "25",
         "--lr", "2e-3", "--batch-size", "2", "--max-length", "64", "--eval-steps", "25", "--output", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "objective pretrain (chosen because notes.txt holds text rows)" in " ".join(proc.stdout.split())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == "pretrain"
    assert summary["best_val_loss"] < summary["initial_val_loss"] - 3.0


def test_objective_that_does_not_fit_the_data_is_refused(tmp_path):
    train = tmp_path / "notes.txt"
    train.write_text("\n\n".join(DOCS) + "\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "train", "--data", str(train), "--objective", "dpo"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--objective dpo needs preference rows" in proc.stderr and "--objective pretrain" in proc.stderr
