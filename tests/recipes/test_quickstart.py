"""The README's first command, as a newcomer runs it: the default quickstart must show that fine-tuning worked."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.recipe


def _lapidar(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lapidar", *args], capture_output=True, text=True, timeout=900)


def test_default_quickstart_routes_held_out_claims_better_than_majority(tmp_path):
    # The default settings, not a shortened run: the score it shows is the one this test pins.
    out = tmp_path / "qs"
    proc = _lapidar("quickstart", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "RANDOMLY INITIALISED" in text
    assert "Held-out scores" in text and "Some held-out claims" in text

    result = json.loads((out / "quickstart.json").read_text())
    before, after = result["before"]["scores"], result["after"]["scores"]
    assert result["rows"] == 60 and result["majority_rate"] == pytest.approx(0.2)
    # Random weights answer noise (no team name); 400 rows of LoRA training route most unseen claims correctly.
    assert before["accuracy"] <= 0.1
    assert after["accuracy"] >= 0.8 > result["majority_rate"] + 0.5
    assert after["macro_f1"] >= 0.75
    right = round(after["accuracy"] * 60)
    assert f"Routed correctly: {right} of 60 after training, {round(before['accuracy'] * 60)} before" in text
    assert "✓" in proc.stdout and "✗" in proc.stdout  # before answers are marked wrong, after mostly right

    # The next step it prints really works and gives the same numbers (the probe is skipped to save time).
    command = re.search(r"^  lapidar eval (\S+) --data (\S+) --compare-base$", proc.stdout, re.MULTILINE)
    assert command is not None, proc.stdout
    proc = _lapidar("eval", command[1], "--data", command[2], "--compare-base", "--probe", "none")
    assert proc.returncode == 0, proc.stderr
    scores = json.loads((out / "eval" / "eval.json").read_text())
    assert scores["model"]["scores"]["accuracy"] == pytest.approx(after["accuracy"])
    assert scores["base"]["scores"]["accuracy"] == pytest.approx(before["accuracy"])
