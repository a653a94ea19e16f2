"""Runs survive being killed: kill -9 mid-run, --resume, and the result matches an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import qa_rows, write_jsonl
from tests.recipes.test_train_recipe import PAIRS

pytestmark = pytest.mark.recipe

ARGS = ["--max-steps", "24", "--lr", "2e-3", "--batch-size", "2", "--eval-steps", "8", "--save-steps", "4",
        "--seed", "11", "--log-steps", "4"]  # fmt: skip


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "lapidar", *args]


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    common = ["train", "--data", str(data), "--val-data", str(data), *ARGS]

    straight = tmp_path / "straight"
    subprocess.run(cli(*common, "--output", str(straight)), check=True, capture_output=True, timeout=900)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(cli(*common, "--output", str(killed)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 600
    while not (killed / "checkpoints" / "step-000012" / "trainer_state.pt").exists():
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "summary.json").exists()

    resumed = subprocess.run(cli("train", "--resume", str(killed)), capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stdout

    a, b = metrics(straight), metrics(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b], "metrics.jsonl must not repeat or miss steps"
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_loss", "val_loss"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4), (ra["step"], key)
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((killed / "summary.json").read_text())
    assert sb["steps"] == sa["steps"] == 24 and sb["resumed_from_step"] >= 12
    assert sb["best_val_loss"] == pytest.approx(sa["best_val_loss"], rel=1e-4)


def test_resume_refuses_other_flags_and_missing_checkpoints(tmp_path):
    proc = subprocess.run(cli("train", "--resume", str(tmp_path), "--lr", "1"), capture_output=True, text=True)
    assert proc.returncode == 2 and "drop --lr" in proc.stderr
    proc = subprocess.run(cli("train", "--resume", str(tmp_path)), capture_output=True, text=True)
    assert proc.returncode == 2 and "not a lapidar run directory" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "config.yaml").write_text("data: x.jsonl\n")
    (tmp_path / "lapidar_run.json").write_text("{}")
    proc = subprocess.run(cli("train", "--resume", str(tmp_path)), capture_output=True, text=True)
    assert proc.returncode == 2 and "no complete checkpoint" in proc.stderr and "Traceback" not in proc.stderr


def test_nan_loss_stops_with_clear_message_and_loadable_weights(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    out = tmp_path / "run"
    proc = subprocess.run(
        cli("train", "--data", str(data), "--val-data", str(data), "--lr", "1e6", "--max-steps", "40",
            "--eval-steps", "2", "--batch-size", "5", "--output", str(out), "--max-length", "64"),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stdout[-2000:]
    assert "training diverged" in proc.stderr and "lower --lr" in proc.stderr and "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stop_reason"].startswith("diverged")
