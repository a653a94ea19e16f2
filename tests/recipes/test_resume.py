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


def kill_9_after(args: list[str], run, step: int, env=None) -> None:
    """Start `lapidar train ARGS --output RUN`, SIGKILL it once checkpoint `step` is complete, check it left no summary."""
    proc = subprocess.Popen(
        cli(*args, "--output", str(run)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    deadline = time.time() + 600
    while not (run / "checkpoints" / f"step-{step:06d}" / "trainer_state.pt").exists():
        assert proc.poll() is None, "run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run / "summary.json").exists()


def metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_kill_9_then_resume_matches_uninterrupted_run(tmp_path):
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    common = ["train", "--data", str(data), "--val-data", str(data), *ARGS]

    straight = tmp_path / "straight"
    subprocess.run(cli(*common, "--output", str(straight)), check=True, capture_output=True, timeout=900)

    killed = tmp_path / "killed"
    kill_9_after(common, killed, 12)

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


@pytest.mark.slow
@pytest.mark.parametrize(("objective", "data"), [("dpo", "pairs"), ("kto", "feedback")])
def test_preference_runs_resume_after_kill_9_to_the_same_final_loss(objective, data, tmp_path):
    # One loop for every objective: dpo and kto checkpoint and resume exactly like sft.
    from tests.conftest import FIXTURES

    files = FIXTURES / "preference"
    common = ["train", "--data", str(files / f"{data}_train.jsonl"), "--val-data", str(files / f"{data}_val.jsonl"),
              "--objective", objective, "--max-steps", "20", "--lr", "2e-3", "--batch-size", "2", "--eval-steps", "5",
              "--save-steps", "2", "--seed", "3", "--log-steps", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = tmp_path / "straight"
    subprocess.run(cli(*common, "--output", str(straight)), check=True, capture_output=True, timeout=900, env=env)

    killed = tmp_path / "killed"
    kill_9_after(common, killed, 6, env)

    resumed = subprocess.run(
        cli("train", "--resume", str(killed)), capture_output=True, text=True, timeout=900, env=env
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stdout

    a, b = metrics(straight), metrics(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b], "metrics.jsonl must not repeat or miss steps"
    for ra, rb in zip(a, b, strict=True):
        for key in ("train_loss", "val_loss", "reward_margin", "val_reward_margin"):
            if key in ra:
                assert rb[key] == pytest.approx(ra[key], rel=1e-4, abs=1e-6), (ra["step"], key)
    sa = json.loads((straight / "summary.json").read_text())
    sb = json.loads((killed / "summary.json").read_text())
    assert sb["steps"] == sa["steps"] == 20 and sb["resumed_from_step"] >= 6
    assert sb["final_train_loss"] == pytest.approx(sa["final_train_loss"], rel=1e-4)
    assert sb["final_val_loss"] == pytest.approx(sa["final_val_loss"], rel=1e-4)


def test_progress_lines_reach_a_log_file(tmp_path):
    # `lapidar train ... > log.txt`: stdout is not a terminal, so the plain sink writes one line per logging interval
    # with step/total, loss, learning rate, tokens/s, elapsed time and ETA — while the run is going, not at the end.
    data = write_jsonl(tmp_path / "qa.jsonl", qa_rows(PAIRS))
    log = tmp_path / "log.txt"
    with log.open("w") as out:
        proc = subprocess.Popen(
            cli("train", "--data", str(data), "--max-steps", "12", "--log-steps", "3", "--eval-steps", "6",
                "--batch-size", "2", "--output", str(tmp_path / "run")),
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        seen_early = False
        while proc.poll() is None:
            if "step 3/12" in log.read_text() and not (tmp_path / "run" / "summary.json").exists():
                seen_early = True
            time.sleep(0.05)
    assert proc.returncode == 0, log.read_text()[-2000:]
    text = log.read_text()
    lines = [line for line in text.splitlines() if line.startswith("step ") and "/12" in line]
    assert [line.split()[1] for line in lines] == ["3/12", "6/12", "9/12", "12/12"], text[-3000:]
    for line in lines:
        assert " loss " in line and " lr " in line and "tok/s" in line and "elapsed" in line and "eta" in line
    assert seen_early, "progress must be written while the run is going"
    assert "\x1b[" not in text, "no terminal escape codes in a log file"
