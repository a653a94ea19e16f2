"""The README's first command, shortened: bundled data, tiny model, before/after table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.recipe


def test_quickstart_trains_on_bundled_data_and_compares(tmp_path):
    out = tmp_path / "qs"
    proc = subprocess.run(
        [sys.executable, "-m", "lapidar", "quickstart", "--output", str(out), "--max-steps", "12"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "Before / after on held-out questions" in text
    assert "RANDOMLY INITIALISED" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["train_rows"] == 260 and summary["val_rows"] == 40
    assert summary["best_val_loss"] < summary["initial_val_loss"] - 1.0
